"""Markdown rendering: one section per table, figures linked from figures/ beside report.md.

Text is escaped for Markdown: '|' would split a table cell, a newline would end the row, and '<'
would let text from configs or results open an HTML tag in renderers that allow inline HTML.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnbench.report.document import Report, figures_after, is_synthetic, title_line
from attnbench.report.figures import FigureResult
from attnbench.report.table import Table


def esc(text: object) -> str:
    s = str(text).replace("<", "&lt;")
    return s.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table_md(table: Table) -> list[str]:
    lines = [f"## {esc(table.title)}", "", esc(table.intro), ""]
    if table.rows:
        lines.append("| " + " | ".join(esc(c) for c in table.columns) + " |")
        lines.append("|" + "|".join("---" for _ in table.columns) + "|")
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in table.rows]
        lines.append("")
    else:
        lines += [f"_{esc(table.empty_reason or 'no rows')}_", ""]
    if table.notes:
        lines += [f"- {esc(n)}" for n in table.notes]
        lines.append("")
    return lines


def figure_md(fig: FigureResult, out_dir: Path) -> list[str]:
    if fig.path is None:
        return [f"**Figure: {esc(fig.title)}** — not drawn ({esc(fig.reason)}).", ""]
    rel = Path(os.path.relpath(fig.path, out_dir)).as_posix()
    return [f"**Figure: {esc(fig.title)}.** {esc(fig.caption)}", "", f"![{esc(fig.title)}]({rel})", ""]


def render(report: Report, out_dir: Path) -> str:
    lines = ["# attnbench report: PagedAttention vs FlashAttention, measured", ""]
    lines += [esc(title_line(report)), ""]
    if is_synthetic(report):
        lines += ["> **Synthetic data.** At least one run is a test fixture generated from a latency model; "
                  "its numbers were not measured on any GPU.", ""]
    if not report.plotted:
        lines += ["_Figures not drawn (run `attnbench report --plot` to draw them)._", ""]
    for table in report.tables:
        lines += table_md(table)
        for fig in figures_after(report, table.key):
            lines += figure_md(fig, out_dir)
    return "\n".join(lines).rstrip() + "\n"
