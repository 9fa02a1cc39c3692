"""The regression gate: match a current run with a baseline point by point and give each a verdict.

A point is (case_id, backend) (results.point_key). For each point with samples on both sides,
gate_stats gives the ratio of median times current/baseline and a confidence interval for the ratio
from the raw samples. With threshold t:
  SLOW     the whole interval lies above 1 + t (slower by more than t, and by more than the noise),
  FAST     the whole interval lies below 1 / (1 + t) (the same margin on a log scale),
  SAME     otherwise,
  UNKNOWN  a side has no samples (status not ok, or samples_ms empty), or too few samples for the
           corrected confidence level to bound the ratio.
The confidence level is Bonferroni-corrected over the points compared: with family alpha a and m
points, each interval is at 1 - a/m, so the chance that any interval misses its true ratio (and so
of any false SLOW or FAST, the threshold aside) is at most a.

Runs are comparable when their manifests name the same GPU model and config hash and their rows
the same dtypes; otherwise the gate refuses (exit 2) unless forced. Exit codes: 0 nothing SLOW,
1 something SLOW, 2 the runs cannot be compared (or a run cannot be read; --force cannot help there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnbench import gate_stats
from attnbench.results import MANIFEST, ROWS, load_run, point_key

VERDICTS = ("SLOW", "FAST", "SAME", "UNKNOWN")
EXIT_OK, EXIT_SLOW, EXIT_INCOMPARABLE = 0, 1, 2
DEFAULT_BASELINES_DIR = Path("results") / "baselines"

Key = tuple[str, str]


class GateError(Exception):
    """The gate cannot run: a one-line message naming what is wrong (exit 2)."""


@dataclass(frozen=True)
class RunSide:
    label: str  # what the user passed (a path or a baseline name)
    path: Path
    manifest: dict[str, Any]
    rows: dict[Key, dict[str, Any]]
    duplicates: int  # rows whose point appeared earlier in the file (the last one is used)


@dataclass(frozen=True)
class PointResult:
    case_id: str
    backend: str
    verdict: str
    baseline_ms: float | None  # median of the samples (or the row's p50 when there are none)
    current_ms: float | None
    ratio: float | None  # ratio of medians, current / baseline
    low: float | None  # interval for the ratio; None when unbounded or not computed
    high: float | None
    hodges_lehmann: float | None
    n_baseline: int
    n_current: int
    note: str = ""

    @property
    def key(self) -> Key:
        return self.case_id, self.backend


@dataclass
class GateResult:
    baseline: RunSide
    current: RunSide
    threshold: float
    family_alpha: float
    point_alpha: float
    points: list[PointResult]
    new: list[Key]
    vanished: list[Key]
    mismatches: list[str] = field(default_factory=list)
    forced: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def slow_limit(self) -> float:
        return 1.0 + self.threshold

    @property
    def fast_limit(self) -> float:
        return 1.0 / (1.0 + self.threshold)

    @property
    def n_tested(self) -> int:
        return sum(1 for p in self.points if p.n_baseline and p.n_current)

    def count(self, verdict: str) -> int:
        return sum(1 for p in self.points if p.verdict == verdict)

    @property
    def exit_code(self) -> int:
        return EXIT_SLOW if self.count("SLOW") else EXIT_OK


# ---- reading runs ----------------------------------------------------------------------------
def resolve_run(spec: str, baselines_dir: Path = DEFAULT_BASELINES_DIR) -> Path:
    """A run directory from a path or from the name of a baseline under baselines_dir."""
    as_path = Path(spec)
    if as_path.is_dir():
        return as_path
    named = baselines_dir / spec
    if named.is_dir():
        return named
    known = sorted(p.name for p in baselines_dir.iterdir() if p.is_dir()) if baselines_dir.is_dir() else []
    have = f" (baselines there: {', '.join(known)})" if known else ""
    raise GateError(f"{spec!r} is neither a run directory nor a baseline under {baselines_dir}{have}")


def read_side(spec: str, role: str, baselines_dir: Path = DEFAULT_BASELINES_DIR) -> RunSide:
    path = resolve_run(spec, baselines_dir)
    for name in (MANIFEST, ROWS):
        if not (path / name).is_file():
            raise GateError(f"{role} run {path}: no {name} (a run directory holds {MANIFEST} and {ROWS})")
    try:
        manifest, rows = load_run(path)
    except ValueError as e:  # a manifest that is not JSON
        raise GateError(f"{role} run {path}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise GateError(f"{role} run {path}: {MANIFEST} is not a JSON object")
    by_key: dict[Key, dict[str, Any]] = {}
    duplicates = 0
    for row in rows:
        try:
            key = point_key(row)
        except (KeyError, TypeError):
            continue  # not a point row
        duplicates += key in by_key
        by_key[key] = row  # a resumed sweep may rewrite a point: the last row wins
    return RunSide(spec, path, manifest, by_key, duplicates)


def _dtypes(side: RunSide) -> set[str]:
    return {str(r.get("dtype")) for r in side.rows.values() if r.get("dtype") is not None}


def mismatches(baseline: RunSide, current: RunSide) -> list[str]:
    """Why the two runs cannot be compared; empty when they can."""
    out: list[str] = []
    mb, mc = baseline.manifest, current.manifest
    if mb.get("gpu_name") != mc.get("gpu_name"):
        out.append(f"GPU model differs (baseline {mb.get('gpu_name')!r}, current {mc.get('gpu_name')!r})")
    if mb.get("config_hash") != mc.get("config_hash"):
        out.append(
            f"config hash differs (baseline {mb.get('config_hash')} from {mb.get('config_name')!r}, "
            f"current {mc.get('config_hash')} from {mc.get('config_name')!r})"
        )
    db, dc = _dtypes(baseline), _dtypes(current)
    if db != dc:
        out.append(f"dtype sets differ (baseline {sorted(db)}, current {sorted(dc)})")
    if not set(baseline.rows) & set(current.rows):
        out.append("no point (case_id, backend) in common")
    return out


# ---- one point -------------------------------------------------------------------------------
def _samples(row: dict[str, Any]) -> tuple[np.ndarray, str]:
    """Clean samples of a row, or an empty array and why there are none."""
    status = row.get("status")
    if status != "ok":
        reason = row.get("reason") or ""
        return gate_stats.clean_samples([]), f"status {status}" + (f": {reason}" if reason else "")
    samples = gate_stats.clean_samples(row.get("samples_ms") or [])
    return samples, "" if samples.size else "no samples_ms"


def _median_or_p50(samples: np.ndarray, row: dict[str, Any]) -> float | None:
    if samples.size:
        return float(np.median(samples))
    p50 = row.get("latency_ms_p50")
    return float(p50) if isinstance(p50, (int, float)) else None


def judge(
    brow: dict[str, Any], crow: dict[str, Any], threshold: float, point_alpha: float
) -> PointResult:
    case_id, backend = point_key(crow)
    bs, bwhy = _samples(brow)
    cs, cwhy = _samples(crow)
    notes = [f"{side} throttled" for side, r in (("baseline", brow), ("current", crow)) if r.get("throttled")]
    if None not in (brow.get("variant"), crow.get("variant")) and brow["variant"] != crow["variant"]:
        # a backend that picks its kernel variant picked another one this time
        notes.append(f"variant {brow.get('variant')} -> {crow.get('variant')}")
    base = dict(
        case_id=case_id,
        backend=backend,
        baseline_ms=_median_or_p50(bs, brow),
        current_ms=_median_or_p50(cs, crow),
        n_baseline=int(bs.size),
        n_current=int(cs.size),
    )
    if not bs.size or not cs.size:
        if bwhy == cwhy:
            lacking = [f"no samples in either run ({bwhy})"]
        else:
            sides = (("baseline", bwhy), ("current", cwhy))
            lacking = [f"{side} lacks samples ({why})" for side, why in sides if why]
        return PointResult(
            verdict="UNKNOWN",
            ratio=None,
            low=None,
            high=None,
            hodges_lehmann=None,
            note="; ".join(lacking + notes),
            **base,
        )
    iv = gate_stats.ratio_interval(bs, cs, point_alpha)
    if not iv.bounded:
        verdict = "UNKNOWN"
        level = f"{iv.confidence * 100:.6g}%"
        notes.insert(0, f"too few samples ({bs.size} vs {cs.size}) to bound the ratio at {level}")
    elif iv.low > 1.0 + threshold:
        verdict = "SLOW"
    elif iv.high < 1.0 / (1.0 + threshold):
        verdict = "FAST"
    else:
        verdict = "SAME"
    return PointResult(
        verdict=verdict,
        ratio=iv.ratio_of_medians,
        low=iv.low,
        high=iv.high,
        hodges_lehmann=iv.hodges_lehmann,
        note="; ".join(notes),
        **base,
    )


# ---- the whole gate --------------------------------------------------------------------------
def check_parameters(threshold: float, alpha: float) -> None:
    if not 0.0 <= threshold < 10.0:
        raise GateError(f"--threshold {threshold} must lie in [0, 10) (a fraction: 0.05 means 5%)")
    if not 0.0 < alpha < 1.0:
        raise GateError(f"--alpha {alpha} must lie in (0, 1)")


def compare(
    baseline: str,
    current: str,
    threshold: float = 0.05,
    alpha: float = 0.05,
    force: bool = False,
    baselines_dir: Path = DEFAULT_BASELINES_DIR,
) -> GateResult:
    """Gate `current` against `baseline`; raises GateError when they cannot be compared (unless forced)."""
    check_parameters(threshold, alpha)
    b = read_side(baseline, "baseline", baselines_dir)
    c = read_side(current, "current", baselines_dir)
    problems = mismatches(b, c)
    if problems and not force:
        raise GateError("runs cannot be compared: " + "; ".join(problems) + " (--force gates anyway)")
    common = [k for k in c.rows if k in b.rows]
    n_tested = sum(1 for k in common if _samples(b.rows[k])[0].size and _samples(c.rows[k])[0].size)
    point_alpha = gate_stats.bonferroni_alpha(alpha, n_tested)
    points = [judge(b.rows[k], c.rows[k], threshold, point_alpha) for k in common]
    warnings = []
    for side, role in ((b, "baseline"), (c, "current")):
        status = side.manifest.get("status")
        if status not in (None, "complete"):
            warnings.append(f"{role} run {side.path} is {status!r}, not complete")
        if side.duplicates:
            warnings.append(f"{role} run {side.path}: {side.duplicates} repeated point(s); the last row wins")
    return GateResult(
        baseline=b,
        current=c,
        threshold=threshold,
        family_alpha=alpha,
        point_alpha=point_alpha,
        points=points,
        new=sorted(k for k in c.rows if k not in b.rows),
        vanished=sorted(k for k in b.rows if k not in c.rows),
        mismatches=problems,
        forced=bool(problems) and force,
        warnings=warnings,
    )


def run_gate(
    baseline: str,
    current: str,
    threshold: float = 0.05,
    alpha: float = 0.05,
    junit: Path | None = None,
    summary: Path | None = None,
    force: bool = False,
    baselines_dir: Path = DEFAULT_BASELINES_DIR,
    console: Any = None,
    err_console: Any = None,
) -> int:
    """The `attnbench gate` command: compare, print, write the outputs; returns the exit code."""
    from rich.markup import escape

    from attnbench import gate_output
    from attnbench.console import err, out

    console = console or out
    err_console = err_console or err
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY") or None
    try:
        result = compare(baseline, current, threshold, alpha, force, baselines_dir)
    except GateError as e:
        err_console.print(f"[red]gate:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        try:
            gate_output.write_error_outputs(str(e), junit, summary, step_summary)
        except OSError as w:
            err_console.print(f"[red]gate:[/red] cannot write an output: {escape(str(w))}", highlight=False)
        return EXIT_INCOMPARABLE
    gate_output.print_result(result, console)
    try:
        gate_output.write_outputs(result, junit, summary, step_summary)
    except OSError as e:
        err_console.print(f"[red]gate:[/red] cannot write an output: {escape(str(e))}", highlight=False)
        return EXIT_INCOMPARABLE
    return result.exit_code
