"""attnbench's own attention kernels (Triton and CUDA). Free of attnbench imports."""
