"""Profiling: where each backend's time and bytes go, per kernel.

`attnbench profile` runs every (case, backend) point's timed call in a child process
(attnbench.profile.target) under Nsight Compute (ncu.py) or the PyTorch profiler (torchprof.py),
and writes a run directory like a sweep's (runner.py), whose rows carry the per-kernel figures and
their sums (dram_read_bytes, dram_write_bytes, ...) beside the model's min_hbm_bytes. rows.py merges
such rows into a sweep's rows by point.
"""
