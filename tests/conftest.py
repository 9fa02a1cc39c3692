"""Shared test setup: CPU-only by default; GPU tests carry the `gpu` marker and skip without CUDA."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# Child worker processes (spawn) find the test plugins through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
# Every row a writer emits is held to attnbench.row: an undefined column or a mistyped value raises.
os.environ.setdefault("ATTNBENCH_STRICT_ROWS", "1")  # attnbench.row.STRICT_ENV


# The fixtures of the tests that run Triton kernels through the interpreter (tests/test_patterns.py,
# test_mutants.py, test_triton_kernels.py).
INTERPRETER_FIXTURES = {"interpret", "_interpret"}


def _runs_interpreted_triton(item) -> bool:
    """A test that runs Triton through the interpreter, or one of the tests that rerun those in a fresh
    process when triton was imported compiled earlier in this one (each must come after its module's)."""
    return bool(INTERPRETER_FIXTURES & set(getattr(item, "fixturenames", ()))) or item.name.endswith(
        "_in_fresh_process"
    )


def pytest_collection_modifyitems(config, items):
    # Once a test imports triton compiled (torch.compile, the AOT compile), the interpreter cannot run
    # in that process any more, and the interpreted tests fall back to a fresh process each (a new
    # torch + triton import and collection). Running them first lets them run here; make test's
    # `--dist loadfile --no-loadscope-reorder` hands their files to the workers first, each file whole
    # and in order, so a fallback test still comes after its module's tests, in their process, for
    # any order in which running here fails.
    interpreted = [item for item in items if _runs_interpreted_triton(item)]
    items[:] = interpreted + [item for item in items if not _runs_interpreted_triton(item)]

    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_environ():
    """Each test gets the environment it started with back: CLI tests run commands in this process
    (typer's CliRunner), and a command that sets a variable for its own run (`run --device cpu` sets
    TRITON_INTERPRET=1) must not change what later tests see."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)
