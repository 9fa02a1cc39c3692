"""Where points run: in a child process (the sweep's default, for fault isolation) or in-process.

The child (attnbench.runner.child) builds each case's inputs, runs its backends one by one and sends a row
per point. The parent waits with a per-point time limit: a point that hangs, kills the process or
poisons the CUDA context becomes a `failed` row with its reason, and a fresh child takes over the
remaining points.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from attnbench.config.sweep_config import TimingPolicy
from attnbench.runner import child as children
from attnbench.runner.case_runner import CaseRunner, Row, Task

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess


def died_reason(exitcode: int | None) -> str:
    """Why a worker process ended, in words: a negative exit code is the signal that killed it."""
    if exitcode is None or exitcode >= 0:
        return f"worker process died (exit code {exitcode})"
    import signal

    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    why = {
        "SIGKILL": "killed by SIGKILL: most often the kernel's out-of-memory killer (see dmesg), "
                   "or a user",
        "SIGSEGV": "crashed: segmentation fault (SIGSEGV)",
        "SIGBUS": "crashed: bus error (SIGBUS)",
        "SIGABRT": "aborted (SIGABRT: an assertion or abort() in native code)",
        "SIGFPE": "crashed: arithmetic error (SIGFPE)",
    }.get(name, f"killed by {name}")
    return f"worker process died: {why}"


def recv_from_child(conn: Any, proc: Any, timeout: float) -> Any:
    """The child's next message; ("died", why) when it ended first (a message it sent before dying
    is still read); None when nothing came within timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.poll(min(0.5, max(0.0, deadline - time.monotonic()))):
            try:
                return conn.recv()
            except (EOFError, OSError):
                break
        if not proc.is_alive() and not conn.poll(0):
            break
    else:
        return None
    proc.join(timeout=1)
    return ("died", died_reason(proc.exitcode))


def stop_process(proc: Any, conn: Any | None) -> None:
    """End a child process: with its pipe, ask it to stop (("stop",)) and give it 5 s; then kill it
    if it is still alive. A child already gone, or None, is left as it is."""
    if proc is None or not proc.is_alive():
        return
    if conn is not None:
        try:
            conn.send(("stop",))
            proc.join(timeout=5)
        except OSError:  # the child closed its end (BrokenPipeError is an OSError)
            pass
    if proc.is_alive():
        proc.kill()
        proc.join(timeout=5)


class ProcessExecutor:
    """Runs tasks in a child process, replacing it after a hang, a crash or a poisoned context."""

    def __init__(self, device: str, policy: TimingPolicy, env: dict[str, str] | None = None) -> None:
        self.device = device
        self.policy = policy
        self.env = env or {}
        self.calibration: dict[str, Any] | None = None
        self.start_s: float | None = None  # the last start: imports, CUDA context, calibration
        self.start_phases: dict[str, float] = {}
        self._proc: BaseProcess | None = None
        self._conn: Connection | None = None

    def start(self) -> dict[str, Any]:
        """Configure a child (one spawned ahead of time when there is one) and wait until it has
        its device and calibration; start_s is how long this waited, start_phases where the
        child's own start went (attnbench.runner.child.start_phases)."""
        began = time.monotonic()
        c = children.take() or children.spawn()
        self._proc, self._conn = c.proc, c.conn
        c.conn.send(("configure", self.device, self.policy, self.calibration, self.env))
        msg = self._recv(timeout=600)
        if msg is None or msg[0] != "ready":
            detail = msg[1] if msg else "no answer"
            self.close()
            raise RuntimeError(f"worker process did not start: {detail}")
        self.calibration = msg[1]
        self.start_s = round(time.monotonic() - began, 3)
        self.start_phases = children.start_phases(c.spawned_at, msg[2])
        return self.calibration

    def _recv(self, timeout: float):
        assert self._conn is not None and self._proc is not None, "start() connects a child first"
        return recv_from_child(self._conn, self._proc, timeout)

    def run(
        self, task: Task, on_start: Callable[[str], None], make_failed: Callable[[str, str], Row]
    ) -> Iterator[Row]:
        remaining = list(task.backends)
        while remaining:
            if self._proc is None or not self._proc.is_alive():
                self.start()
            assert self._conn is not None  # start() connected the child
            self._conn.send(("task", task.case.to_json(), remaining))
            current: str | None = None
            while True:
                # Building inputs and the reference gets the same limit as a point.
                msg = self._recv(self.policy.point_timeout_s)
                if msg is None:
                    victim = current or remaining[0]
                    yield make_failed(
                        victim, f"timed out after {self.policy.point_timeout_s:g} s (worker replaced)"
                    )
                    remaining.remove(victim)
                    self.kill()
                    break
                kind = msg[0]
                if kind == "start":
                    current = msg[1]
                    on_start(current)
                elif kind == "row":
                    yield msg[1]
                    if msg[1]["backend"] in remaining:
                        remaining.remove(msg[1]["backend"])
                    current = None
                elif kind == "done":
                    return
                elif kind in ("died", "poisoned", "fatal"):
                    if not remaining:
                        self.kill()
                        return
                    victim = current or remaining[0]
                    yield make_failed(victim, f"{msg[1]} (worker replaced)")
                    remaining.remove(victim)
                    self.kill()
                    break

    def kill(self) -> None:
        stop_process(self._proc, None)
        self._proc = None

    def close(self) -> None:
        stop_process(self._proc, self._conn)
        self._proc = None


class LocalExecutor:
    """Runs tasks in this process (attnbench run, tests): same rows, no isolation."""

    def __init__(self, device: str, policy: TimingPolicy) -> None:
        self.device = device
        self.policy = policy
        self.calibration: dict[str, Any] | None = None
        self.start_s: float | None = None  # as ProcessExecutor's
        self.start_phases: dict[str, float] = {}
        self._runner: CaseRunner | None = None

    def start(self) -> dict[str, Any]:
        began = time.monotonic()
        self._runner = CaseRunner(self.device, self.policy, self.calibration)
        self.calibration = self._runner.calibration
        self.start_s = round(time.monotonic() - began, 3)
        return self.calibration

    def run(
        self, task: Task, on_start: Callable[[str], None], make_failed: Callable[[str, str], Row]
    ) -> Iterator[Row]:
        if self._runner is None:
            self.start()
        assert self._runner is not None  # start() made it
        yield from self._runner.run(task, on_start)

    def close(self) -> None:
        self._runner = None


def executor_for(device: str, policy: TimingPolicy, isolate: bool, timeout_s: float | None = None):
    """The executor of `attnbench run`: a child process with a per-point time limit (a segfault
    or a hang becomes a failed row), or in-process without isolation. timeout_s overrides the
    policy's point_timeout_s."""
    if timeout_s is not None:
        from dataclasses import replace

        policy = replace(policy, point_timeout_s=timeout_s)
    return ProcessExecutor(device, policy) if isolate else LocalExecutor(device, policy)
