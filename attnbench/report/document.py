"""The report as the renderers read it: its runs, its tables in order, its figures, and which figures
follow which table. build.py fills it; render_md.py and render_html.py write it out."""

from __future__ import annotations

from dataclasses import dataclass, field

from attnbench.report.figures import FigureResult
from attnbench.report.load import RunData
from attnbench.report.table import Table


@dataclass
class Report:
    runs: list[RunData]
    tables: list[Table]
    figures: list[FigureResult] = field(default_factory=list)
    plotted: bool = False
    generated_at: str = ""

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


# Which figures follow which table in the rendered report (figure kinds, FigureResult.base).
FIGURES_AFTER = {
    "compare": ("samples",),
    "complexity": ("latency_vs_seqlen", "roofline"),
    "bandwidth": ("decode_bandwidth", "decode_window"),
    "when_to_use": ("speedup_heatmap", "block_size_tradeoff"),
    "fragmentation": ("fragmentation",),
}


def figures_after(report: Report, table_key: str) -> list[FigureResult]:
    """The figures placed after a table; after the last table also every figure whose place is not
    in this report (a new kind, or its table absent), so that no drawn figure is left out."""
    kinds = FIGURES_AFTER.get(table_key, ())
    out = [f for kind in kinds for f in report.figures if f.base == kind]
    if report.tables and table_key == report.tables[-1].key:
        placed = {k for t in report.tables for k in FIGURES_AFTER.get(t.key, ())}
        out += [f for f in report.figures if f.base not in placed]
    return out


def title_line(report: Report) -> str:
    names = ", ".join(r.label for r in report.runs)
    return f"Generated {report.generated_at} from {len(report.runs)} run(s): {names}."


def is_synthetic(report: Report) -> bool:
    return any(r.manifest.get("synthetic") for r in report.runs)
