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
    "bandwidth": ("decode_bandwidth",),
    "when_to_use": ("speedup_heatmap", "block_size_tradeoff"),
    "fragmentation": ("fragmentation",),
}


def figures_after(report: Report, table_key: str) -> list[FigureResult]:
    kinds = FIGURES_AFTER.get(table_key, ())
    return [f for kind in kinds for f in report.figures if f.base == kind]


def title_line(report: Report) -> str:
    names = ", ".join(r.label for r in report.runs)
    return f"Generated {report.generated_at} from {len(report.runs)} run(s): {names}."


def is_synthetic(report: Report) -> bool:
    return any(r.manifest.get("synthetic") for r in report.runs)
