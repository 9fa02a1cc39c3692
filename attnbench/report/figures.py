"""Figures: drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display).

Every figure carries a title, axis labels with units, and a footer naming the GPU and run id, so a
PNG read on its own says what it is. A figure without data is not drawn; its entry says why.
This module is the kit every plot module shares; draw.py draws all of a report's figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from attnbench.report.load import RunData

if TYPE_CHECKING:  # matplotlib costs ~0.7 s of CPU to import: only a report with --plot pays it
    from matplotlib.figure import Figure

DPI = 110


@dataclass
class FigureResult:
    key: str
    title: str
    caption: str
    path: Path | None = None  # the PNG written, None when not drawn
    reason: str = ""  # why not drawn
    base: str = ""  # the figure kind (key without the _runN suffix)


class NoData(Exception):
    """Raised by a plot function when the run lacks what the figure needs (message = reason)."""


def new_figure(width: float, height: float) -> Figure:
    """A figure whose constrained layout keeps the title, labels, legends placed outside the axes,
    colour bars and the footer inside the canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = Figure(figsize=(width, height), dpi=DPI)
    fig.set_layout_engine(ConstrainedLayoutEngine(h_pad=0.06))
    FigureCanvasAgg(fig)
    return fig


def colors_for(runs: list[RunData]) -> dict[str, str]:
    """One colour per backend label, stable across every figure of the report (see styles.py)."""
    from attnbench.report.styles import styles_for

    return {label: st.color for label, st in styles_for(runs).items()}


def stamp(fig: Figure, runs: list[RunData], title: str, subtitle: str = "") -> None:
    """Title (and a subtitle line) at the top, the GPU(s) and run id(s) as a footer."""
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=13.5 if not subtitle else 12.5,
                 fontweight="bold")
    footer = "   |   ".join(f"GPU: {r.gpu}   run: {r.run_id}" for r in runs)
    if any(r.manifest.get("synthetic") for r in runs):
        footer += "   |   SYNTHETIC DATA (test fixture)"
    fig.supxlabel(footer, x=0.005, ha="left", fontsize=8.5, color="#444444")


def save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def file_name(key: str, run_index: int | None, n_runs: int) -> str:
    return f"{key}.png" if run_index is None or n_runs == 1 else f"{key}_run{run_index + 1}.png"
