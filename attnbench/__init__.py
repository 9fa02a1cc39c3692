"""attnbench: measure paged- and flash-attention kernels on your own GPU."""

__version__ = "0.1.0"
