"""Where points run: in a child process (the sweep's default, for fault isolation) or in-process.

The child (attnbench.runner.child) builds each case's inputs, runs its backends one by one and sends a row
per point. The parent waits with a per-point time limit: a point that hangs, kills the process or
poisons the CUDA context becomes a `failed` row with its reason, and a fresh child takes over the
remaining points.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attnbench.case import Case
from attnbench.config import TimingPolicy
from attnbench.runner import child as children
from attnbench.runner.child import CPUS_ENV
from attnbench.runner.results import now_iso

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from attnbench.inputs import Inputs

Row = dict[str, Any]

@dataclass
class Task:
    case: Case
    backends: list[str]


class CaseRunner:
    """Runs tasks in the current process; keeps the last contiguous inputs for paged variants and
    the last case's inputs for more of its backends."""

    def __init__(self, device: str, policy: TimingPolicy, calibration: dict[str, Any] | None) -> None:
        import torch

        from attnbench.calibrate import calibrate

        self.device = torch.device(device if device == "cpu" else f"cuda:{torch.cuda.current_device()}")
        if os.environ.get(CPUS_ENV) and hasattr(os, "sched_getaffinity"):
            # a pinned worker (attnbench.runner.child): one torch thread per CPU it may use
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.policy = policy
        self.calibration = calibration if calibration is not None else calibrate(self.device)
        self._base: Inputs | None = None  # the last contiguous case's inputs: its paged variants reuse them
        self._last: Inputs | None = None  # the last case's inputs, whatever its kind

    def run(self, task: Task, on_start: Callable[[str], None]) -> Iterator[Row]:
        from attnbench.backends import get_backend
        from attnbench.inputs import build_inputs
        from attnbench.point import base_row, cuda_poisoned, describe_error, failed

        built = time.perf_counter()
        if self._last is not None and self._last.case == task.case:
            # the same case again (--devices hands a case's backends out in parts): reuse all of
            # it, paged pool included
            yield from self._run_points(task, self._last, 0.0, on_start)
            return
        self._last = None
        try:
            base = (
                self._base
                if self._base is not None and self._base.case == task.case.without_paging()
                else None
            )
            if base is None and self._base is not None:
                # A new group: release the previous group's tensors before building its own, so
                # two long-context groups need not fit in memory at once.
                self._base = None
                _release(self.device)
            inputs = build_inputs(task.case, self.device, base=base)
            if not task.case.paged:
                self._base = inputs
            self._last = inputs
            # seconds to build this case's inputs: tensors, reference and, for a paged case, its
            # pool (a paged variant reuses its contiguous case's tensors and reference when this
            # worker just built them); with point_wall_s it shows where a worker's time went
            inputs_s = round(time.perf_counter() - built, 4)
        except Exception as err:  # noqa: BLE001 - every point of the case fails with the reason
            self._base = self._last = None
            reason = "inputs: " + describe_error(err)
            for name in task.backends:
                yield failed(base_row(task.case, get_backend(name), self.device.type), reason)
            if cuda_poisoned(err):
                raise
            return
        yield from self._run_points(task, inputs, inputs_s, on_start)

    def _run_points(self, task: Task, inputs, inputs_s: float,
                    on_start: Callable[[str], None]) -> Iterator[Row]:
        from attnbench.backends import get_backend
        from attnbench.point import run_point

        for name in task.backends:
            on_start(name)
            began = time.perf_counter()
            row = run_point(task.case, get_backend(name), inputs, self.policy, self.calibration)
            # point_wall_s: the whole point (first call and check, any compile or tuning, warm-up
            # and timing), not its latency
            row.update(point_wall_s=round(time.perf_counter() - began, 4), case_inputs_s=inputs_s,
                       finished_at=now_iso("milliseconds"))
            inputs_s = 0.0  # charged to the case's first point only
            yield row
            _release(self.device)


def _release(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


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
        conn, proc = self._conn, self._proc
        assert conn is not None and proc is not None, "start() connects a child before anything is read"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if conn.poll(min(0.5, max(0.0, deadline - time.monotonic()))):
                try:
                    return conn.recv()
                except (EOFError, OSError):
                    return ("died", died_reason(self._exitcode()))
            if not proc.is_alive():
                if conn.poll(0):
                    continue
                return ("died", died_reason(self._exitcode()))
        return None

    def _exitcode(self):
        assert self._proc is not None, "only a started child has an exit code"
        self._proc.join(timeout=1)
        return self._proc.exitcode

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
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)
        self._proc = None

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            assert self._conn is not None  # start() set it with _proc
            try:
                self._conn.send(("stop",))
                self._proc.join(timeout=5)
            except (OSError, BrokenPipeError):
                pass
        self.kill()


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
