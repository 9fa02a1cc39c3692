"""`attnbench export RUN --format F`: a run's rows in the formats other tools read.

Formats (each written to --out, or stdout for the text ones):
- csv: one line per row, every column in the order attnbench.row lists them (the run's identity
  first, a plugin's own columns last); list and mapping cells as JSON text. Units are in the
  names and in attnbench.row (configs/row-schema.json).
- parquet: the same table as Parquet (needs pyarrow).
- github-action-benchmark: the `customSmallerIsBetter` tool's input, a JSON array of
  {name, unit, value, range, extra}, one entry per ok point (median latency in ms).
- bencher: Bencher Metric Format (BMF), {benchmark: {measure: {value, lower_value, upper_value}}},
  measure `latency` in nanoseconds (Bencher's built-in unit; bounds: the 95% interval of the
  median) and a `tflops` measure (TFLOP/s).
- pytest-benchmark: the JSON pytest-benchmark's --benchmark-json writes ({machine_info,
  commit_info, benchmarks: [{name, fullname, group, params, stats, ...}], datetime, version}),
  stats in seconds from the point's samples, so pytest-benchmark compare and its dashboards read it.

Every row carries the run's identity (run_id, gpu_name, git_commit), filled from the manifest for
runs written before rows carried it. Reads results only: no torch.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnbench import row as columns
from attnbench.row import IDENTITY_FIELDS
from attnbench.runner.results import load_run, run_identity

FORMATS = ("csv", "parquet", "github-action-benchmark", "bencher", "pytest-benchmark")
BINARY = ("parquet",)
NS_PER = {"s": 1e9, "ms": 1e6, "us": 1e3}  # nanoseconds per time unit of attnbench.row


class ExportError(ValueError):
    """Bad export input; str() is the one-line message for the user."""


def identified_rows(run_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, rows) with run_id, gpu_name and git_commit on every row (the row's own value wins)."""
    try:
        manifest, rows = load_run(run_path)
    except FileNotFoundError as err:
        raise ExportError(str(err)) from None
    except json.JSONDecodeError as err:
        raise ExportError(f"{run_path}/manifest.json: not valid JSON ({err})") from None
    ident = run_identity(manifest, run_path.name)
    out = []
    for row in rows:
        filled = {**ident, **{k: v for k, v in row.items() if not (k in IDENTITY_FIELDS and v is None)}}
        out.append(filled)
    return manifest, out


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("status") == "ok" and _num(r.get("latency_ms_p50")) is not None]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def point_name(row: dict[str, Any]) -> str:
    """A stable benchmark name: backend, then the case id (what the gate matches on), plus the
    variant where a backend wrote two of one case."""
    variant = row.get("variant")
    return f"{row['backend']}{'-' + variant if variant else ''} {row['case_id']}"


# ---- tabular ------------------------------------------------------------------------------


def frame(rows: list[dict[str, Any]]):
    """The rows as a DataFrame, columns in attnbench.row's order (identity first, then the case, the
    point, the measures; columns it does not define last); list/dict cells as JSON text (CSV and
    Parquet need one type per column, and a reader gets the lists back with json.loads)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, (list, dict, tuple))).any():
            df[col] = df[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict, tuple)) else v)
    return df[columns.column_order(list(df.columns))]


def to_csv(rows: list[dict[str, Any]], _manifest: dict[str, Any]) -> str:
    return frame(rows).to_csv(index=False)


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ExportError("--format parquet needs pyarrow: pip install pyarrow") from None
    df = frame(rows)
    # a column holding both numbers and text (rare: a field that changed type) becomes text
    for col in df.columns:
        kinds = {type(v) for v in df[col] if v is not None and v == v}
        if len(kinds - {int, float}) and len(kinds) > 1:
            df[col] = df[col].map(lambda v: None if v is None or v != v else str(v))
    df.to_parquet(path, index=False)


# ---- CI dashboards --------------------------------------------------------------------------


def _ci_half_width(row: dict[str, Any]) -> float | None:
    lo, hi = _num(row.get("latency_ms_ci_low")), _num(row.get("latency_ms_ci_high"))
    return None if lo is None or hi is None else (hi - lo) / 2


def to_github_action_benchmark(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> str:
    """customSmallerIsBetter: [{name, unit, value, range?, extra?}], value a number."""
    out = []
    for r in _ok(rows):
        entry: dict[str, Any] = {"name": point_name(r), "unit": columns.unit("latency_ms_p50"),
                                 "value": float(r["latency_ms_p50"])}
        half = _ci_half_width(r)
        if half is not None:
            entry["range"] = f"± {half:.3g}"
        extra = [f"n={r.get('n_samples')}", f"run {r['run_id']}", f"GPU {r.get('gpu_name') or 'CPU'}"]
        if r.get("git_commit"):
            extra.append(f"commit {r['git_commit']}")
        entry["extra"] = ", ".join(extra)
        out.append(entry)
    return json.dumps(out, indent=2)


def to_bencher(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> str:
    """BMF: {benchmark name: {measure slug: {value, lower_value?, upper_value?}}}."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in _ok(rows):
        ns_per = NS_PER[columns.unit("latency_ms_p50")]  # Bencher's latency is in nanoseconds
        latency: dict[str, float] = {"value": float(r["latency_ms_p50"]) * ns_per}
        lo, hi = _num(r.get("latency_ms_ci_low")), _num(r.get("latency_ms_ci_high"))
        if lo is not None and hi is not None:
            latency.update(lower_value=lo * ns_per, upper_value=hi * ns_per)
        measures = {"latency": latency}
        tflops = _num(r.get("tflops"))
        if tflops is not None:
            measures["tflops"] = {"value": tflops}
        out[point_name(r)] = measures
    return json.dumps(out, indent=2)


def _stats_s(row: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's stats block, in seconds, from the row's samples (else its summary)."""
    samples = [s / 1e3 for s in row.get("samples_ms") or [] if _num(s) is not None]
    if not samples:  # no raw samples kept: the summary the row has
        p50 = float(row["latency_ms_p50"]) / 1e3
        samples = [p50]
    data = sorted(samples)
    n = len(data)
    quart = statistics.quantiles(data, n=4, method="inclusive") if n > 1 else [data[0]] * 3
    q1, median, q3 = quart[0], statistics.median(data), quart[2]
    iqr = q3 - q1
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    lo_fence, hi_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    iqr_out = sum(1 for x in data if x < lo_fence or x > hi_fence)
    sd_out = sum(1 for x in data if abs(x - mean) > stddev) if stddev else 0
    inside = [x for x in data if lo_fence <= x <= hi_fence] or data
    return {
        "min": data[0], "max": data[-1], "mean": mean, "stddev": stddev, "rounds": n, "median": median,
        "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out, "stddev_outliers": sd_out,
        "outliers": f"{sd_out};{iqr_out}", "ld15iqr": inside[0], "hd15iqr": inside[-1],
        "ops": 1.0 / mean if mean > 0 else 0.0, "total": sum(data), "iterations": 1,
        "data": samples,
    }


def to_pytest_benchmark(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> str:
    benches = []
    for r in _ok(rows):
        params = {k: r.get(k) for k in ("phase", "batch", "seqlen_mix", "num_q_heads", "num_kv_heads",
                                        "head_dim", "dtype", "causal", "block_size", "kv_layout")}
        benches.append({
            "group": r.get("workload"),
            "name": point_name(r),
            "fullname": f"attnbench::{r.get('workload')}::{point_name(r)}",
            "params": params,
            "param": r["case_id"],
            "extra_info": {k: r.get(k) for k in ("run_id", "gpu_name", "git_commit", "tflops", "hbm_gbps",
                                                  "bw_util", "n_samples", "timer", "stop_reason")},
            "options": {"disable_gc": False, "timer": r.get("timer") or manifest.get("timer"),
                        "min_rounds": None, "max_time": None, "min_time": None, "warmup": True},
            "stats": _stats_s(r),
        })
    doc = {
        "machine_info": {"node": manifest.get("host"), "processor": manifest.get("gpu_name") or "CPU",
                         "machine": manifest.get("platform"), "python_version": manifest.get("python"),
                         "cpu": {"count": manifest.get("cpu_count")}, "gpu": manifest.get("gpu_name"),
                         "torch": manifest.get("torch"), "cuda": manifest.get("cuda")},
        "commit_info": {"id": manifest.get("git_commit"), "time": manifest.get("started_at"),
                        "dirty": None, "project": "attnbench", "branch": None},
        "benchmarks": benches,
        "datetime": manifest.get("ended_at") or manifest.get("started_at"),
        "version": "attnbench-" + str(manifest.get("attnbench_version")),
    }
    return json.dumps(doc, indent=2)


TEXT_WRITERS: dict[str, Callable[[list[dict[str, Any]], dict[str, Any]], str]] = {
    "csv": to_csv,
    "github-action-benchmark": to_github_action_benchmark,
    "bencher": to_bencher,
    "pytest-benchmark": to_pytest_benchmark,
}


def export(run_path: Path, fmt: str, out: Path | None) -> str | None:
    """Write the run in `fmt` to `out`; without `out` return the text (binary formats need out)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: allowed values are {', '.join(FORMATS)}")
    if fmt in BINARY and out is None:
        raise ExportError(f"--format {fmt} is binary: give --out FILE")
    if not run_path.is_dir():
        raise ExportError(f"{run_path}: not a run directory (a folder with manifest.json)")
    manifest, rows = identified_rows(run_path)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        assert out is not None, "parquet is binary: a missing out was refused above"
        write_parquet(rows, out)
        return None
    text = TEXT_WRITERS[fmt](rows, manifest)
    if out is None:
        return text
    out.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return None


def run_command(run: Path, fmt: str, out: Path | None) -> int:
    """The CLI's `export`: 0 on success, 2 with one line on bad input."""
    from attnbench.console import err, fail

    try:
        text = export(run, fmt, out)
    except ExportError as exc:
        from rich.markup import escape

        fail(escape(str(exc)))
    if text is not None:
        import sys

        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        err.print(f"wrote {out}", highlight=False)
    return 0
