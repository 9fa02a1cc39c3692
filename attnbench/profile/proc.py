"""Run a child command in its own process group, so a timeout or Ctrl-C ends the whole tree (ncu and
the Python process it profiles), and return its exit code and output."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group this call started, nothing else


def run_group(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(exit code, stdout + stderr); the exit code is None when the command ran past timeout_s."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out or ""
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        return None, out or ""
    except KeyboardInterrupt:
        _kill_group(proc)
        proc.communicate()
        raise
