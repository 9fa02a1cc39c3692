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


def pytest_collection_modifyitems(config, items):
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
