"""The gate's two sides, read: a baseline's K runs and the current run (or `sweep --repeat M` runs
combined into one), each point's row by (case_id, backend), and whether the two can be compared.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.gate import stats as gate_stats
from attnbench.gate.judge import samples_of
from attnbench.runner.results import MANIFEST, ROWS, load_run, point_key

DEFAULT_BASELINES_DIR = Path("results") / "baselines"

Key = tuple[str, str]


class GateError(Exception):
    """The gate cannot run: a one-line message naming what is wrong (exit 2)."""


@dataclass(frozen=True)
class RunSide:
    label: str  # what the user passed (a path or a baseline name), or a run's folder
    path: Path
    manifest: dict[str, Any]
    rows: dict[Key, dict[str, Any]]
    duplicates: int  # rows whose point appeared earlier in the file (the last one is used)


@dataclass(frozen=True)
class BaselineSet:
    """The K runs of a baseline (K = 1 for a single run directory)."""

    label: str
    path: Path
    runs: list[RunSide]

    @property
    def manifest(self) -> dict[str, Any]:
        return self.runs[0].manifest

    @property
    def k(self) -> int:
        return len(self.runs)

    def keys(self) -> list[Key]:
        seen: dict[Key, None] = {}
        for run in self.runs:
            seen.update(dict.fromkeys(run.rows))
        return list(seen)


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


def read_run(path: Path, label: str, role: str) -> RunSide:
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
    return RunSide(label, path, manifest, by_key, duplicates)


def read_side(spec: str, role: str, baselines_dir: Path = DEFAULT_BASELINES_DIR) -> RunSide:
    return read_run(resolve_run(spec, baselines_dir), spec, role)


def read_current(spec: str, baselines_dir: Path = DEFAULT_BASELINES_DIR) -> RunSide:
    """The current side: one run directory, or the M runs of a `sweep --repeat M` folder combined
    point by point into its median run (combine_runs)."""
    from attnbench.gate.baselines import run_dirs

    path = resolve_run(spec, baselines_dir)
    dirs = run_dirs(path)
    if not dirs:
        return read_run(path, spec, "current")
    return combine_runs(spec, path, [read_run(d, d.name, "current") for d in dirs])


def combine_runs(label: str, path: Path, runs: list[RunSide]) -> RunSide:
    """M current runs as one side. A point absent, skipped, failed or incorrect in any run takes that
    run's row (so VANISHED and BROKEN still fire); otherwise it takes the row of its median run by
    median time (for even M the faster middle one). One slow process then cannot fail the gate
    alone: on an H200 single runs of stable decode points came out 2.6% slow with nothing changed
    (issue 19's evidence), while a real slowdown is in every run. The row also carries every run's
    median (gate_stats.CURRENT_MEDIANS), whose spread the spread rule pools with the baseline's."""
    keys = sorted({k for r in runs for k in r.rows})
    rows: dict[Key, dict[str, Any]] = {}
    for k in keys:
        per_run = [r.rows.get(k) for r in runs]
        odd = [row for row in per_run if row is None or row.get("status") != "ok"]
        if odd:
            if odd[0] is not None:  # the first odd run decides; absent there: absent from the side
                rows[k] = {**odd[0], "current_runs": len(runs)}
            continue
        # odd is empty, so no row is None; the filter says so to the type checker
        timed = sorted((row for row in per_run if row is not None), key=_median_ms)
        # every run's median goes along: the spread rule pools the current runs' spread with the
        # baseline's (gate_stats.spread_tolerance)
        rows[k] = {**timed[(len(timed) - 1) // 2], "current_runs": len(runs),
                   gate_stats.CURRENT_MEDIANS: [_median_ms(row) for row in timed],
                   gate_stats.CURRENT_CLOCKS: [row.get("sm_clock_mhz_settled") for row in timed]}
    manifest = {**runs[0].manifest, "current_runs": [str(r.path) for r in runs]}
    return RunSide(label, path, manifest, rows, sum(r.duplicates for r in runs))


def _median_ms(row: dict[str, Any]) -> float:
    samples = samples_of(row)[0]
    return float(np.median(samples)) if samples.size else float(row.get("latency_ms_p50") or math.inf)


def read_baseline(spec: str, baselines_dir: Path = DEFAULT_BASELINES_DIR) -> BaselineSet:
    """A baseline's K runs: a folder's runs/*, a folder of run directories, or one run directory."""
    from attnbench.gate.baselines import run_dirs

    path = resolve_run(spec, baselines_dir)
    dirs = run_dirs(path)
    if not dirs:
        return BaselineSet(spec, path, [read_run(path, spec, "baseline")])  # names the missing file
    return BaselineSet(spec, path, [read_run(d, d.name, "baseline") for d in dirs])


def _dtypes(side: RunSide) -> set[str]:
    return {str(r.get("dtype")) for r in side.rows.values() if r.get("dtype") is not None}


def _describe(m: dict[str, Any], what: str) -> str:
    if what == "config_hash":
        return f"{m.get('config_hash')} from {m.get('config_name')!r}"
    return repr(m.get(what))


def mismatches(baseline: BaselineSet, current: RunSide) -> list[str]:
    """Why the runs cannot be compared; empty when they can."""
    out: list[str] = []
    for what, words in (("gpu_name", "GPU model"), ("config_hash", "config hash")):
        values = {_describe(r.manifest, what) for r in baseline.runs}
        if len(values) > 1:
            out.append(f"the baseline's runs differ in {words} ({', '.join(sorted(values))})")
        b, c = _describe(baseline.manifest, what), _describe(current.manifest, what)
        if b != c:
            out.append(f"{words} differs (baseline {b}, current {c})")
    db, dc = set().union(*(_dtypes(r) for r in baseline.runs)), _dtypes(current)
    if db != dc:
        out.append(f"dtype sets differ (baseline {sorted(db)}, current {sorted(dc)})")
    if not set(baseline.keys()) & set(current.rows):
        out.append("no point (case_id, backend) in common")
    return out
