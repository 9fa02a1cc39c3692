"""Where points run: in a child process (the sweep's default, for fault isolation) or in-process.

The child builds each case's inputs, runs its backends one by one and sends a row per point. The
parent waits with a per-point time limit: a point that hangs, kills the process or poisons the CUDA
context becomes a `failed` row with its reason, and a fresh child takes over the remaining points.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from attnbench.case import Case
from attnbench.config import TimingPolicy
from attnbench.results import now_iso

Row = dict[str, Any]

# The CPUs a worker process may run on, "0,1,2,...": --devices gives each worker its own share, so
# one worker's CPU-heavy work (a torch.compile, a reference, a pool built in Python) cannot slow
# the kernel launches another worker is timing, nor OpenMP threads of two workers fight for cores.
CPUS_ENV = "ATTNBENCH_CPUS"


def pin_to_cpus(value: str | None) -> None:
    """Restrict this process (and what it starts later) to the CPUs listed in value, if any."""
    cpus = {int(c) for c in (value or "").split(",") if c.strip().isdigit()}
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


@dataclass
class Task:
    case: Case
    backends: list[str]


class CaseRunner:
    """Runs tasks in the current process; keeps the last contiguous inputs for paged variants."""

    def __init__(self, device: str, policy: TimingPolicy, calibration: dict[str, Any] | None) -> None:
        import torch

        from attnbench.calibrate import calibrate

        self.device = torch.device(device if device == "cpu" else f"cuda:{torch.cuda.current_device()}")
        if os.environ.get(CPUS_ENV) and hasattr(os, "sched_getaffinity"):
            # a pinned worker (see _child_main): one torch thread per CPU it may use
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.policy = policy
        self.calibration = calibration if calibration is not None else calibrate(self.device)
        self._base = None

    def run(self, task: Task, on_start: Callable[[str], None]) -> Iterator[Row]:
        from attnbench.backends import get_backend
        from attnbench.inputs import build_inputs
        from attnbench.point import base_row, cuda_poisoned, describe_error, failed, run_point

        built = time.perf_counter()
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
            # seconds to build this case's inputs: tensors, reference and, for a paged case, its
            # pool (a paged variant reuses its contiguous case's tensors and reference when this
            # worker just built them); with point_wall_s it shows where a worker's time went
            inputs_s = round(time.perf_counter() - built, 4)
        except Exception as err:  # noqa: BLE001 - every point of the case fails with the reason
            self._base = None
            reason = "inputs: " + describe_error(err)
            for name in task.backends:
                yield failed(base_row(task.case, get_backend(name), self.device.type), reason)
            if cuda_poisoned(err):
                raise
            return
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


# ---- the child process ---------------------------------------------------------------------


def _child_main(
    conn, device: str, policy: TimingPolicy, calibration: dict[str, Any] | None, env: dict[str, str]
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    os.environ.update(env)
    try:
        pin_to_cpus(os.environ.get(CPUS_ENV))  # before torch starts its threads
        runner = CaseRunner(device, policy, calibration)
        conn.send(("ready", runner.calibration))
    except Exception as err:  # noqa: BLE001
        conn.send(("fatal", f"worker start: {type(err).__name__}: {err}"))
        return
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            return
        task = Task(Case.from_json(msg[1]), msg[2])
        try:
            for row in runner.run(task, lambda name: conn.send(("start", name))):
                conn.send(("row", row))
        except Exception as err:  # noqa: BLE001 - context poisoned: report and exit for a fresh child
            conn.send(("poisoned", f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"))
            return
        conn.send(("done",))


class ProcessExecutor:
    """Runs tasks in a child process, replacing it after a hang, a crash or a poisoned context."""

    def __init__(self, device: str, policy: TimingPolicy, env: dict[str, str] | None = None) -> None:
        self.device = device
        self.policy = policy
        self.env = env or {}
        self.calibration: dict[str, Any] | None = None
        self.start_s: float | None = None  # the last start: imports, CUDA context, calibration
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None

    def start(self) -> dict[str, Any]:
        began = time.monotonic()
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(
            target=_child_main,
            args=(child, self.device, self.policy, self.calibration, self.env),
            daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent
        msg = self._recv(timeout=600)
        if msg is None or msg[0] != "ready":
            detail = msg[1] if msg else "no answer"
            self.close()
            raise RuntimeError(f"worker process did not start: {detail}")
        self.calibration = msg[1]
        self.start_s = round(time.monotonic() - began, 3)
        return self.calibration

    def _recv(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._conn.poll(min(0.5, max(0.0, deadline - time.monotonic()))):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    return ("died", f"worker process died (exit code {self._exitcode()})")
            if not self._proc.is_alive():
                if self._conn.poll(0):
                    continue
                return ("died", f"worker process died (exit code {self._exitcode()})")
        return None

    def _exitcode(self):
        self._proc.join(timeout=1)
        return self._proc.exitcode

    def run(
        self, task: Task, on_start: Callable[[str], None], make_failed: Callable[[str, str], Row]
    ) -> Iterator[Row]:
        remaining = list(task.backends)
        while remaining:
            if self._proc is None or not self._proc.is_alive():
                self.start()
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
        yield from self._runner.run(task, on_start)

    def close(self) -> None:
        self._runner = None
