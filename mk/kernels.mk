# CUDA kernels (kernels/cuda/*.cu) and CPU kernels (kernels/cpu/*.cpp): included by the top-level Makefile.
#   make kernels        build the shared libraries ahead of time into ~/.cache/attnbench/{cuda,cpu}/
#                       (CUDA: for the GPU present; without one, for sm_80 and sm_90a; ARCH=sm_89 picks one)
#   make kernels-check  compile every .cpp (g++ -fopenmp) and every .cu for sm_80 and sm_90a with warnings
#                       as errors (no GPU needed). The .cu objects go into the CUDA build cache, where
#                       the build links them; sources that passed for the same key are not compiled again
#                       (make test: the tests' compile check already did them).
#                       Without nvcc it says so and passes, unless REQUIRE_NVCC=1 (.ci/run sets it: this
#                       project's CI machine has nvcc, and there a check that cannot compile must fail).
KERNELS_PY ?= $(if $(wildcard $(VENV)/bin/python),$(VENV)/bin/python,$(PYTHON))

.PHONY: kernels kernels-check

kernels:
	PYTHONPATH=. $(KERNELS_PY) -m attnbench.cpu_build build
	PYTHONPATH=. $(KERNELS_PY) -m attnbench.cuda_build build $(if $(ARCH),--arch $(ARCH))

kernels-check:
	PYTHONPATH=. $(KERNELS_PY) -m attnbench.cpu_build check
	@if [ "$(REQUIRE_NVCC)" != 1 ] && ! command -v $${ATTNBENCH_NVCC:-nvcc} >/dev/null 2>&1; then \
		echo "kernels-check: nvcc not found, CUDA compile check skipped (REQUIRE_NVCC=1 makes this an error)"; \
	else PYTHONPATH=. $(KERNELS_PY) -m attnbench.cuda_build check; fi
