"""A reader that leaves the pipe early (`| head`) must not turn the gate's verdict into exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from attnbench.pipe_safe import PipeSafeStdout

ROOT = Path(__file__).resolve().parent.parent


class _ClosedPipe:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise ValueError("no descriptor")

    def isatty(self) -> bool:
        return False


def test_writes_after_a_broken_pipe_are_dropped() -> None:
    stream = _ClosedPipe()
    out = PipeSafeStdout(stream)
    assert out.write("first line\n") == len("first line\n")
    out.write("second\n")
    out.flush()
    assert out.broken and stream.writes == 1 and not out.isatty()


def test_gate_into_a_closed_pipe_keeps_its_exit_code() -> None:
    base = "results/baselines/ci-gate-h100"
    script = (f"set -o pipefail; {sys.executable} -m attnbench gate --baseline {base} --current {base} "
              "| true; echo \"exit=${PIPESTATUS[0]}\"")
    res = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "exit=0" in res.stdout, res.stdout + res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
