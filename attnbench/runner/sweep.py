"""The sweep runner: plan -> worker -> rows appended to the run directory, with progress.

What the run directory holds when it returns (the sweep contract) is stated, and kept, once in
attnbench.runner.contract; run_multi_device keeps the same one with a worker per device.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.config.sweep_config import SweepConfig
from attnbench.point import base_row, failed
from attnbench.runner.contract import SweepOutcome, SweepRecord, manifest_for  # noqa: F401 - re-exported
from attnbench.runner.plan import Plan
from attnbench.runner.progress import Progress
from attnbench.runner.results import RunDir
from attnbench.runner.worker import LocalExecutor, ProcessExecutor, Task


class ResumeError(ValueError):
    """--resume on a run that is not a run of this config."""


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
    """The sweep (attnbench.runner.contract's contract) with one worker: a child process (isolate) or
    this process."""
    record = SweepRecord(cfg, plan, run, device, env, progress, resume, config_path, manifest_extra)
    policy = record.policy
    executor = ProcessExecutor(device, policy, executor_env) if isolate else LocalExecutor(device, policy)
    todo = [(pc, [b for b in pc.run if (pc.case.case_id, b) not in record.done]) for pc in plan.cases]

    def stop(failed: bool) -> None:
        executor.close()

    with record.recording(stop):
        record.write_skipped()
        if any(names for _, names in todo):
            calibration = executor.start()
            run.update_manifest(calibration=calibration, worker_start_s=executor.start_s,
                                worker_start_phases=executor.start_phases)
        for pc, names in todo:
            if names:
                _measure_case(pc.case, names, executor, record)
    return record.outcome


def _measure_case(case: Case, names: list[str], executor: LocalExecutor | ProcessExecutor,
                  record: SweepRecord) -> None:
    """One case's backends through the executor, each row emitted as it comes."""
    make_failed: Callable[[str, str], dict[str, Any]] = lambda name, reason: failed(
        base_row(case, get_backend(name), record.device), reason
    )
    on_start = lambda name: record.progress.point_started(case.case_id, name)
    for row in executor.run(Task(case, names), on_start, make_failed):
        record.emit(row)


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


def default_out(results_dir: Path, run_id: str) -> Path:
    return results_dir / run_id
