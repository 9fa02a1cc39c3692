# session 5, call 6 (carry .fib): FlashInfer installed under /tmp/fisite
export PYTHONPATH=/tmp/fa4site:/tmp/fa4site/nvidia_cutlass_dsl/dsl_packages
source .fib/install.sh
