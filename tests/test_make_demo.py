"""`make demo` with each exit code the sweep can give (a fake attnbench stands in for it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("sweep_code,demo_code,reported", [(0, 0, True), (1, 1, True), (2, 2, False),
                                                         (130, 130, False)])
def test_demo_writes_the_report_unless_the_sweep_was_refused_or_stopped(tmp_path, sweep_code, demo_code,
                                                                       reported):
    if shutil.which("make") is None:
        pytest.skip("no make")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tmp_path / "calls"
    fake = venv / "bin" / "attnbench"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n'
                    f'if [ "$1" = sweep ]; then exit {sweep_code}; fi\nexit 0\n')
    fake.chmod(0o755)
    (venv / "bin" / "python").symlink_to("/bin/true")
    installed = venv / ".installed"
    installed.touch()
    os.utime(installed, (2**31, 2**31))  # newer than pyproject.toml: nothing to install
    result = subprocess.run(["make", "--no-print-directory", "demo", f"VENV={venv}"], cwd=ROOT,
                            capture_output=True, text=True)
    # make itself exits 2 when a recipe fails; the recipe's own code is in its "Error N" line
    assert result.returncode == (0 if demo_code == 0 else 2), result.stdout + result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "doctor" and calls[1].startswith("sweep --out results/demo-")
    assert any(c.startswith("report --plot results/demo-") for c in calls) == reported
    if demo_code:
        assert f"Error {demo_code}" in result.stderr
