"""attnbench's own CPU kernels (C++ with OpenMP, a plain C ABI). Built by attnbench.cpu_build."""
