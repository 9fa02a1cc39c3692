# attnbench: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# With a GPU, pip's default torch (a CUDA build); without one, the CPU build pinned here.
TORCH_SPEC ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo torch || echo torch==2.13.0)
TRITON_SPEC ?= triton==3.6.0

.PHONY: install demo test lint kernels kernels-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" "$(TRITON_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

# The main job on the embedded default: the CPU study without a GPU (configs/smoke.yaml: the points,
# then the KV-cache study into the run directory), the full sweep with one, then that run's report.
# The sweep exits 1 when a point failed or was incorrect (skipped points are not failures): the
# report is still written, then the demo exits 1 too, so the failure is not hidden. Any other code
# (2 bad input, 130/143 interrupted) stops the demo at once.
demo: install
	$(BIN)/attnbench doctor
	@run=results/demo-$$(date +%Y%m%d-%H%M%S); code=0; \
	echo "$(BIN)/attnbench sweep --out $$run"; $(BIN)/attnbench sweep --out $$run || code=$$?; \
	if [ $$code -ne 0 ] && [ $$code -ne 1 ]; then exit $$code; fi; \
	echo "$(BIN)/attnbench report --plot $$run"; $(BIN)/attnbench report --plot $$run || exit $$?; \
	if [ $$code -eq 1 ]; then echo "demo: some points failed or were incorrect; see $$run/report/"; fi; \
	exit $$code

# pytest on every core (pytest-xdist), a test file to a worker in collection order: a file's tests
# run in order in one process (the CUDA build test links the objects the compile check before it
# left; tests/conftest.py puts the interpreted Triton tests first). The compile check's objects stay
# in the CUDA build cache, so kernels-check after it compiles nothing again.
test: install
	$(PY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=25
	$(MAKE) --no-print-directory kernels-check
	$(MAKE) --no-print-directory lint

lint: install
	$(BIN)/ruff check attnbench kernels tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

-include mk/kernels.mk
