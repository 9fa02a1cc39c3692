"""Build a report: load runs, compute every table per run, merge runs side by side, draw figures,
render Markdown and HTML into the output directory."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from attnbench.report import (
    bandwidth,
    claims,
    compare,
    complexity,
    fragmentation,
    overview,
    quick_summary,
    render_html,
    render_md,
    summary,
    support,
    when_to_use,
)
from attnbench.report.document import Report
from attnbench.report.load import ReportError, RunData, load_runs
from attnbench.report.table import Table

FORMATS = ("md", "html")


def run_tables(run: RunData) -> dict[str, Table]:
    """Every table of one run, in report order (claims and summary read the earlier ones)."""
    tables: dict[str, Table] = {}
    simple: list[tuple[str, Callable[[RunData], Table]]] = [
        ("quick_summary", quick_summary.build), ("complexity", complexity.build),
        ("bandwidth", bandwidth.build), ("when_to_use", when_to_use.build),
    ]
    for key, fn in simple:
        tables[key] = fn(run)
    tables["claims"] = claims.build(run, tables)
    tables["summary"] = summary.build(run, tables)
    tables["fragmentation"] = fragmentation.build(run)
    tables["support"] = support.build(run)
    tables["not_run"] = overview.not_run_table(run)
    return tables


ORDER = ("quick_summary", "complexity", "bandwidth", "when_to_use", "summary", "claims", "fragmentation",
         "support", "not_run")


def merge(tables: list[Table], runs: list[RunData]) -> Table:
    """One table of several runs: a leading Run column, notes tagged with the run id."""
    if len(tables) == 1:
        return tables[0]
    first = tables[0]
    merged = Table(first.key, first.title, first.intro, ["Run", *first.columns])
    for table, run in zip(tables, runs, strict=True):
        tag = f"{run.run_id} ({run.gpu})"
        merged.rows += [[tag, *row] for row in table.rows]
        merged.records += [{"run": run.run_id, **rec} for rec in table.records]
        merged.notes += [f"[{run.run_id}] {n}" for n in table.notes]
        if table.empty_reason:
            merged.notes.append(f"[{run.run_id}] {table.empty_reason}")
    if not merged.rows:
        merged.empty_reason = "; ".join(sorted({t.empty_reason for t in tables if t.empty_reason}))
    return merged


def build(runs: list[RunData]) -> Report:
    per_run = [run_tables(run) for run in runs]
    tables = [overview.runs_table(runs)]
    compared = compare.build(runs)
    if compared is not None:
        tables.append(compared)
    tables += [merge([t[key] for t in per_run], runs) for key in ORDER]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Report(runs=runs, tables=tables, generated_at=stamp)


def parse_formats(text: str) -> list[str]:
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ReportError(f"--format {text!r}: allowed values are {', '.join(FORMATS)} (comma-separated)")
    return formats


def write_report(
    run_paths: list[Path], out: Path | None = None, plot: bool = False, formats: str = "md,html",
    fragmentation_path: Path | None = None, profile_paths: Sequence[Path] = (),
) -> tuple[Report, list[Path]]:
    """Load the runs, build the report and write it; returns the report and the files written."""
    kinds = parse_formats(formats)
    if not run_paths:
        raise ReportError("no run directories given")
    runs = load_runs(run_paths, fragmentation_path, profile_paths)
    out = out or (runs[0].path / "report")
    out.mkdir(parents=True, exist_ok=True)
    report = build(runs)
    written: list[Path] = []
    if plot:
        from attnbench.report.draw import draw_all  # deferred: matplotlib, ~0.7 s of CPU, only for --plot

        report.figures = draw_all(runs, out / "figures")
        report.plotted = True
        written += [f.path for f in report.figures if f.path is not None]
    if "md" in kinds:
        path = out / "report.md"
        path.write_text(render_md.render(report, out), encoding="utf-8")
        written.append(path)
    if "html" in kinds:
        path = out / "report.html"
        path.write_text(render_html.render(report), encoding="utf-8")
        written.append(path)
    return report, written
