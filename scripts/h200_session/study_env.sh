# the study's environment on the warm machine: FA4, FlashInfer (and its JIT cache), the paged impl
export PYTHONPATH=/tmp/fa4site:/tmp/fa4site/nvidia_cutlass_dsl/dsl_packages:/tmp/fisite
export PATH=/tmp/fisite/bin:$PATH FLASHINFER_WORKSPACE_BASE=/tmp/fiws
export ATTNBENCH_CUDA_PAGED_IMPL=$(cat /tmp/paged_impl 2>/dev/null || echo simt)
