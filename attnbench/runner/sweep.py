"""The sweep runner: plan -> worker -> rows appended to the run directory, with progress.

Skipped points are written by the parent straight from the plan; measured points come from the
executor. Every row is flushed as it arrives, so Ctrl-C or a crash loses nothing, and --resume
skips the points already on disk.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.backends import get_backend
from attnbench.config import SweepConfig, TimingPolicy
from attnbench.point import base_row, checked, failed, skipped
from attnbench.runner.plan import Plan
from attnbench.runner.progress import Progress  # noqa: F401 - re-exported: the runner's hooks
from attnbench.runner.results import RunDir, now_iso, point_key
from attnbench.runner.run_end import Terminated, end_run, signals_held
from attnbench.runner.worker import LocalExecutor, ProcessExecutor, Task


class ResumeError(ValueError):
    """--resume on a run that is not a run of this config."""


@dataclass
class SweepOutcome:
    run_dir: RunDir
    rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    terminated: bool = False  # the interrupt was SIGTERM
    resumed_points: int = 0
    notes: list[str] = field(default_factory=list)  # one-line notes for the user (torn line moved...)


def manifest_for(
    cfg: SweepConfig,
    env: dict[str, Any],
    policy: TimingPolicy,
    run_id: str,
    config_path: str | None,
    plan: Plan,
) -> dict[str, Any]:
    from dataclasses import asdict

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


def check_resume(run: RunDir, cfg: SweepConfig, plan: Plan | None = None) -> None:
    """Raise ResumeError unless run is a run of this config (and of this plan's backends: rows of
    other backends would not count toward this plan, nor this plan's points be all measured)."""
    if not run.manifest_path.exists():
        raise ResumeError(f"{run.path}: nothing to resume (no manifest.json)")
    manifest = run.read_manifest()
    if manifest.get("config_hash") != cfg.hash:
        raise ResumeError(
            f"{run.path}: was run with config {manifest.get('config_name')!r} "
            f"(hash {manifest.get('config_hash')}), "
            f"not this one (hash {cfg.hash}); resume needs the same config"
        )
    before = manifest.get("backends")
    if plan is not None and isinstance(before, list) and before != plan.backends:
        raise ResumeError(
            f"{run.path}: was run with backends {','.join(before)}, not {','.join(plan.backends)}; "
            f"resume with --backends {','.join(before)} (or without --backends if it had none)"
        )


def run_sweep(
    cfg: SweepConfig,
    plan: Plan,
    run: RunDir,
    device: str,
    env: dict[str, Any],
    progress: Progress | None = None,
    isolate: bool = True,
    resume: bool = False,
    config_path: str | None = None,
    executor_env: dict[str, str] | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> SweepOutcome:
    progress = progress or Progress()
    policy = cfg.timing_policy(device)
    outcome = SweepOutcome(run)
    if resume:
        outcome.notes.extend(filter(None, [run.repair_tail()]))
    done = run.done_keys() if resume else set()
    if resume:
        run.update_manifest(status="running", resumed_at=now_iso())
    else:
        run.create()
        # manifest_extra: fields a caller adds, e.g. the shard of the plan this run covers
        run.write_manifest(
            {**manifest_for(cfg, env, policy, run.path.name, config_path, plan), **(manifest_extra or {})}
        )
    outcome.resumed_points = len(done)
    executor = ProcessExecutor(device, policy, executor_env) if isolate else LocalExecutor(device, policy)
    todo = [(pc, [b for b in pc.run if (pc.case.case_id, b) not in done]) for pc in plan.cases]
    progress.start(plan.n_points, len(done))
    started = time.monotonic()

    def emit(row: dict[str, Any]) -> None:
        run.append_row(checked(row))
        outcome.rows.append(row)
        progress.point_finished(row)

    error: BaseException | None = None
    try:
        for pc, _ in todo:
            for name, reason in pc.skip.items():
                if (pc.case.case_id, name) not in done:
                    emit(skipped(base_row(pc.case, get_backend(name), device), reason))
        if any(names for _, names in todo):
            calibration = executor.start()
            run.update_manifest(calibration=calibration, worker_start_s=executor.start_s,
                                worker_start_phases=executor.start_phases)
        for pc, names in todo:
            if not names:
                continue
            case = pc.case
            make_failed: Callable[[str, str], dict[str, Any]] = lambda name, reason, case=case: failed(
                base_row(case, get_backend(name), device), reason
            )
            on_start = lambda name, case=case: progress.point_started(case.case_id, name)
            for row in executor.run(Task(case, names), on_start, make_failed):
                emit(row)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (run_end.Terminated)
        outcome.interrupted = True
        outcome.terminated = isinstance(sys.exc_info()[1], Terminated)
    except BaseException as err:  # a crash or a full disk: recorded, then raised on
        error = err
        raise
    finally:
        with signals_held():  # a second Ctrl-C must not leave the manifest `running`
            executor.close()
            progress.stop()
            problem = end_run(run, plan, outcome.interrupted, error,
                              wall_s=round(time.monotonic() - started, 3))
            if problem:
                outcome.notes.append(problem)
    return outcome


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per backend: counts by status and the best figures of its ok points."""
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = by.setdefault(
            r["backend"],
            {
                "backend": r["backend"],
                "ok": 0,
                "skipped": 0,
                "failed": 0,
                "incorrect": 0,
                "best_tflops": None,
                "best_gbps": None,
                "reasons": {},
            },
        )
        s[r["status"]] += 1
        if r["status"] == "ok":
            s["best_tflops"] = max(s["best_tflops"] or 0.0, r["tflops"])
            s["best_gbps"] = max(s["best_gbps"] or 0.0, r["hbm_gbps"])
        elif r.get("reason"):
            key = r["reason"][:90]
            s["reasons"][key] = s["reasons"].get(key, 0) + 1
    return list(by.values())


def keys_of(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {point_key(r) for r in rows}


def default_out(results_dir: Path, run_id: str) -> Path:
    return results_dir / run_id
