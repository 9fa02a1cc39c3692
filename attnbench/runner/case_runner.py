"""Running tasks in the current process: a case's inputs built once, then each of its backends' points.

The worker child (attnbench.runner.child) runs one CaseRunner; so does an in-process sweep
(--no-isolate, worker.LocalExecutor).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.runner.cpus import CPUS_ENV
from attnbench.runner.results import now_iso

if TYPE_CHECKING:
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
        import torch  # here and below, deferred: only a process that runs points loads torch and the backends

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
