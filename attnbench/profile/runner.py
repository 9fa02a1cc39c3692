"""The profile runner: each point in its own child process under the chosen tool, a row per point.

Rows are a sweep's rows (the case columns, backend, status with reason, the model's flops and
min_hbm_bytes) plus the tool's fields. Their latency columns hold the profiler's own time, and the
row's `timer` says which: ncu-kernel-time (the sum of the call's kernel durations as ncu measured
them: one call, caches flushed, no launch gaps) or torch-profiler-*-span (first kernel start to last
kernel end per call). Merge with a sweep (rows.py) for the sweep's timings.

Files per point in the run directory: points/<point>.json (the child's result), logs/<point>.log
(the child's and ncu's output), ncu/<point>.ncu-rep and ncu/<point>.csv, traces/<point>.json.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import metrics
from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.measure import Timing
from attnbench.point import base_row, checked
from attnbench.profile import ncu as ncu_mod
from attnbench.profile import target
from attnbench.profile.proc import run_group
from attnbench.runner.results import RunDir, now_iso

Row = dict[str, Any]


@dataclass
class Point:
    case: Case
    backend: str


@dataclass
class Setup:
    tool: str  # ncu | torch
    device: str  # cuda | cpu
    calls: int = 5  # torch: profiled calls per point
    timeout_s: float = 600.0  # per point, the child's start and input build included
    ncu: str | None = None
    metrics: list[str] = field(default_factory=list)


def point_name(case: Case, backend: str) -> str:
    """A file name for the point: the case id and backend with anything unusual replaced by '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{case.case_id}__{backend}").strip("_")


def child_env(device: str) -> dict[str, str]:
    """The child's environment: this tree importable; Triton interpreted on a CPU."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
    if device == "cpu":
        env.setdefault("TRITON_INTERPRET", "1")
    return env


def timer_name(tool: str, device: str) -> str:
    """What the rows' latency columns hold (see the module's docstring)."""
    if tool == "ncu":
        return "ncu-kernel-time"
    return f"torch-profiler-{'gpu' if device == 'cuda' else 'cpu'}-span"


def _tail(text: str, n: int = 300) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("==PROF==")]
    return " ".join(lines[-1].split())[:n] if lines else ""


def _timing(samples_ms: list[float], warmup: int, timer: str, case: Case) -> Row:
    fields = Timing(samples_ms, "profiled-calls", warmup, timer).summary()
    if fields["latency_ms_p50"] > 0:
        fields.update(metrics.achieved(case, fields["latency_ms_p50"]))
    return fields


class Runner:
    """Profiles points one by one; after an error no retry can fix (no counter access), the
    remaining points are recorded failed with that reason instead of being tried."""

    def __init__(self, run: RunDir, setup: Setup) -> None:
        self.run = run
        self.setup = setup
        self.fatal: str | None = None
        self.optional_dropped = False

    def profile(self, point: Point) -> Row:
        s = self.setup
        backend = get_backend(point.backend)
        row = base_row(point.case, backend, s.device)
        row["profile_tool"] = s.tool
        if self.fatal:
            return {**row, "status": "failed", "reason": f"not profiled: {self.fatal}"}
        name = point_name(point.case, point.backend)
        result_path = self.run.path / "points" / f"{name}.json"
        result_path.parent.mkdir(parents=True, exist_ok=True)
        result_path.unlink(missing_ok=True)
        trace = self.run.path / "traces" / f"{name}.json" if s.tool == "torch" else None
        argv = target.argv_for(point.case.to_json(), point.backend, s.tool, result_path, s.device, s.calls,
                               trace)
        if s.tool == "ncu":
            return self._ncu(point, row, name, argv, result_path)
        code, output = run_group(argv, s.timeout_s, child_env(s.device))
        self._log(name, output)
        child = self._child(result_path, code, output, "")
        row = self._child_fields(row, child)
        if child["status"] != "ok":
            return row
        summary = child.get("torch") or {}
        row.update({k: v for k, v in summary.items() if k != "torch_span_ms"})
        row["torch_trace"] = str(trace.relative_to(self.run.path)) if trace else None
        spans = summary.get("torch_span_ms") or []
        row.update(_timing(spans, child.get("warmup_calls", 0), timer_name(s.tool, s.device), point.case))
        return row

    # ---- ncu ----------------------------------------------------------------------------------

    def _ncu(self, point: Point, row: Row, name: str, argv: list[str], result_path: Path) -> Row:
        s = self.setup
        export = self.run.path / "ncu" / name
        res = ncu_mod.run(s.ncu or "ncu", s.metrics, export, argv, s.timeout_s, child_env(s.device))
        if ncu_mod.is_metric_error(res.errors) and not self.optional_dropped:
            # A chip that lists a metric ncu then refuses: retry with the core metrics only.
            self.optional_dropped = True
            s.metrics = list(ncu_mod.CORE_METRICS)
            result_path.unlink(missing_ok=True)
            res = ncu_mod.run(s.ncu or "ncu", s.metrics, export, argv, s.timeout_s, child_env(s.device))
        self._log(name, res.output)
        if res.csv_text:
            (self.run.path / "ncu" / f"{name}.csv").write_text(res.csv_text)
        if ncu_mod.is_fatal(res.errors):
            self.fatal = "ncu: " + "; ".join(res.errors)[:300]
            return {**row, "status": "failed", "reason": self.fatal}
        reason = "ncu: " + "; ".join(res.errors)[:400] if res.errors else ""
        child = self._child(result_path, res.returncode, res.output, reason)
        row = self._child_fields(row, child)
        if child["status"] != "ok":
            return row
        try:
            kernels = ncu_mod.parse_csv(res.csv_text)
        except (ValueError, IndexError) as err:
            return {**row, "status": "failed", "reason": f"ncu CSV: {err}"}
        if res.errors:
            # A kernel ncu could not profile: the sums would be partial, so only the kernels it did.
            return {**row, "status": "failed", "reason": reason, "ncu_kernels": kernels}
        if not kernels:
            warn = "; ".join(ncu_mod.messages(res.output, "WARNING"))[:200]
            why = "ncu profiled no kernel in the timed call's range" + (f" ({warn})" if warn else "")
            return {**row, "status": "failed", "reason": why}
        row.update(ncu_mod.summarize(kernels, point.case))
        row["ncu_report"] = str(res.report.relative_to(self.run.path)) if res.report else None
        ms = row["ncu_duration_ms"]
        if ms:
            row.update(_timing([ms], child.get("warmup_calls", 0), timer_name("ncu", s.device), point.case))
        return row

    # ---- shared -------------------------------------------------------------------------------

    def _log(self, name: str, output: str) -> None:
        path = self.run.path / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(output)

    def _child(self, result_path: Path, code: int | None, output: str, tool_reason: str) -> Row:
        """The child's result, or a failed one saying why there is none."""
        if result_path.exists():
            try:
                return json.loads(result_path.read_text())
            except json.JSONDecodeError:
                pass
        if code is None:
            why = f"timed out after {self.setup.timeout_s:g} s"
        else:
            why = tool_reason or f"profiled process exited {code} without a result: {_tail(output)}"
        return {"status": "failed", "reason": why}

    @staticmethod
    def _child_fields(row: Row, child: Row) -> Row:
        row.update(child.get("paged_stats") or {})
        row.update(child.get("info") or {})
        for key, value in child.items():
            if key.startswith("rel_err"):  # the correctness check's fields (attnbench.reference)
                row[key] = value
        row["status"] = child["status"]
        row["reason"] = child.get("reason", "")
        return row


def run_profile(points: list[Point], skip_rows: list[Row], run: RunDir, manifest: Row, setup: Setup,
                on_row: Callable[[Row, int, int], None] | None = None,
                transform: Callable[[Row], Row] | None = None) -> list[Row]:
    """Write the manifest, then a row per skipped and per profiled point, flushed as each ends."""
    run.create()
    run.write_manifest(manifest)
    runner = Runner(run, setup)
    rows: list[Row] = []
    total = len(skip_rows) + len(points)
    status = "complete"

    def emit(row: Row) -> None:
        row = checked(transform(row) if transform else row)
        run.append_row(row)
        rows.append(row)
        if on_row:
            on_row(row, len(rows), total)

    try:
        for row in skip_rows:
            emit(row)
        for p in points:
            emit(runner.profile(p))
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        run.update_manifest(ended_at=now_iso(), status=status, rows_written=len(rows),
                            ncu_metrics_used=setup.metrics if setup.tool == "ncu" else None)
    return rows
