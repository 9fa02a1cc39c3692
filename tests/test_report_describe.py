"""The report's built-in backend table (used where backends are not loaded: a report never imports
torch) covers every backend the project ships, with the registry's family and implementation."""

from __future__ import annotations

from attnbench.backends import all_backends
from attnbench.report.describe import BUILTIN


def test_every_shipped_backend_is_described_alike():
    shipped = all_backends()
    missing = sorted(set(shipped) - set(BUILTIN))
    assert not missing, f"add to attnbench/report/describe.py BUILTIN: {missing}"
    for name, backend in shipped.items():
        assert (BUILTIN[name].family, BUILTIN[name].impl) == (backend.family, backend.impl), name
