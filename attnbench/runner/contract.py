"""The sweep contract, kept by every runner (run_sweep: one worker; run_multi_device: one per device).

When a runner returns, or raises, its run directory holds:
- manifest.json, written before the first point (status `running`; a resume sets `resumed_at`) and
  ended true by run_end.end_run from the rows on disk: `complete` (every planned point has a row),
  `interrupted` (Ctrl-C or SIGTERM), `failed` (an exception or a full disk, the error recorded) or
  `incomplete`; the ending is written with SIGINT and SIGTERM held off, so it is never left `running`;
- results.jsonl, one row per planned point that ran: the skipped points straight from the plan (the
  parent writes them), the measured ones as the workers send them; each row is flushed as it arrives,
  so an interrupt or a crash loses nothing;
- resumable: --resume moves a torn last line aside, keeps the rows on disk and runs only the planned
  points without one.
SweepRecord does all of this; a runner adds only where its points are measured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from attnbench.backends import get_backend
from attnbench.config.sweep_config import SweepConfig, TimingPolicy
from attnbench.point import base_row, checked, skipped
from attnbench.runner.plan import Plan
from attnbench.runner.progress import Progress
from attnbench.runner.results import RunDir, now_iso
from attnbench.runner.run_end import Terminated, end_run, signals_held


@dataclass
class SweepOutcome:
    run_dir: RunDir
    rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    terminated: bool = False  # the interrupt was SIGTERM
    notes: list[str] = field(default_factory=list)  # one-line notes for the user (torn line moved...)


def manifest_for(
    cfg: SweepConfig,
    env: dict[str, Any],
    policy: TimingPolicy,
    run_id: str,
    config_path: str | None,
    plan: Plan,
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        **env,
        "config_name": cfg.name,
        "config_path": config_path,
        "config_text": cfg.text,
        "config_hash": cfg.hash,
        "timing": asdict(policy),
        "timer": "cuda-events" if env["device"] == "cuda" else "host-perf-counter",
        "planned_points": plan.n_points,
        "backends": plan.backends,
        "unavailable_backends": plan.unavailable,
        "dtypes": sorted({pc.case.dtype for pc in plan.cases}),
        "started_at": now_iso(),
        "ended_at": None,
        "status": "running",
    }


class SweepRecord:
    """One sweep's run directory, kept to the contract above.

    Made: the manifest is written (a new run) or set back to `running` (a resume, after moving a torn
    last line aside); `done` holds the points already on disk. Then, within `recording(stop)`: emit()
    each row, write_skipped() the plan's skipped points; on leaving, however it is left, stop(failed)
    shuts the runner's workers down and the ending goes into the manifest.
    """

    def __init__(self, cfg: SweepConfig, plan: Plan, run: RunDir, device: str, env: dict[str, Any],
                 progress: Progress | None, resume: bool, config_path: str | None,
                 manifest_extra: dict[str, Any] | None, facts: dict[str, Any] | None = None) -> None:
        """facts: the runner's own manifest fields (its devices), set on a resume too; manifest_extra:
        fields a caller adds to a new run's manifest, e.g. the shard of the plan this run covers."""
        self.plan, self.run, self.device = plan, run, device
        self.policy = cfg.timing_policy(device)
        self.progress = progress or Progress()
        self.outcome = SweepOutcome(run)
        if resume:
            self.outcome.notes.extend(filter(None, [run.repair_tail()]))
        self.done = run.done_keys() if resume else set()
        if resume:
            run.update_manifest(status="running", resumed_at=now_iso(), **(facts or {}))
        else:
            run.create()
            run.write_manifest({**manifest_for(cfg, env, self.policy, run.path.name, config_path, plan),
                                **(manifest_extra or {}), **(facts or {})})

    def emit(self, row: dict[str, Any]) -> None:
        self.run.append_row(checked(row))  # strict (the tests): a column attnbench.row lacks is an error
        self.outcome.rows.append(row)
        self.progress.point_finished(row)

    def write_skipped(self) -> None:
        """The plan's skipped points not yet on disk, as rows (no worker needed)."""
        for pc in self.plan.cases:
            for name, reason in pc.skip.items():
                if (pc.case.case_id, name) not in self.done:
                    self.emit(skipped(base_row(pc.case, get_backend(name), self.device), reason))

    @contextlib.contextmanager
    def recording(self, stop: Callable[[bool], BaseException | None]) -> Iterator[None]:
        """Run the body, then end the run: Ctrl-C or SIGTERM is caught (the outcome says interrupted);
        any other exception is recorded as `failed` and raised on. stop(failed) shuts the workers down
        (failed: interrupted or an exception) and may return an error of its own (no worker left to
        measure the rest), recorded as the ending and raised after it."""
        self.progress.start(self.plan.n_points, len(self.done))
        started = time.monotonic()
        error: BaseException | None = None
        unfinished: BaseException | None = None
        try:
            yield
        except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (run_end.Terminated)
            self.outcome.interrupted = True
            self.outcome.terminated = isinstance(err, Terminated)
        except BaseException as err:  # a crash or a full disk: recorded, then raised on
            error = err
            raise
        finally:
            with signals_held():  # a second Ctrl-C must not leave the manifest `running`
                unfinished = stop(self.outcome.interrupted or error is not None)
                self.progress.stop()
                problem = end_run(self.run, self.plan, self.outcome.interrupted, error or unfinished,
                                  wall_s=round(time.monotonic() - started, 3))
                if problem:
                    self.outcome.notes.append(problem)
        if unfinished is not None:
            raise unfinished
