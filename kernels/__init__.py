"""attnbench's own attention kernels (Triton, CUDA and C++/OpenMP for CPUs). Free of attnbench imports."""
