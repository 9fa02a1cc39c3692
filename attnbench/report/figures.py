"""Figures: drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display).

Every figure carries a title, axis labels with units, and a footer naming the GPU and run id, so a
PNG read on its own says what it is. A figure without data is not drawn; its entry says why.
"""

from __future__ import annotations

from collections.abc import Callable
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


def draw_all(runs: list[RunData], figures_dir: Path) -> list[FigureResult]:
    """Draw every figure; each failure to find data becomes a not-drawn entry with its reason."""
    from attnbench.report import plots_memory, plots_patterns, plots_perf, plots_samples

    colors = colors_for(runs)
    results: list[FigureResult] = []
    shared: list[tuple[str, str, str, Callable]] = [
        ("latency_vs_seqlen", "Latency vs sequence length",
         "Median latency along the run's main length sweep per backend (log-log; band: p10–p90).",
         plots_perf.latency_vs_length),
        ("decode_bandwidth", "Decode bandwidth utilisation vs context length",
         "Achieved bandwidth (minimum bytes / time) as a share of the calibrated copy bandwidth.",
         plots_perf.decode_bandwidth),
    ]
    if len(runs) >= 2:
        shared.append(("samples", "Samples per point",
                       "Every timing sample of the points whose medians moved most between the first two "
                       "runs, divided by the first run's median.", plots_samples.samples_figure))
    per_run: list[tuple[str, str, str, Callable]] = [
        ("roofline", "Roofline", "Every ok point against the run's calibrated copy and matmul ceilings.",
         plots_perf.roofline),
        ("block_size_tradeoff", "Block-size trade-off",
         "Kernel time against KV-cache memory waste (1 - bytes used / bytes allocated) per block size.",
         plots_memory.block_size_tradeoff),
        ("speedup_heatmap", "Speed-up of the best paged over the best flash backend",
         "Best flash time / best paged time per batch x length (> 1: the paged side is faster).",
         plots_memory.speedup_heatmap),
        ("decode_window", "Decode time vs context, with and without a sliding window",
         "Median decode latency per backend: solid without a pattern, dashed with a window (dotted line at "
         "the window size); a kernel that skips keys outside the window stops growing there.",
         plots_patterns.decode_window),
        ("fragmentation", "KV-cache fragmentation",
         "Share of KV-cache memory per allocation policy (fragmentation study).", plots_memory.fragmentation),
    ]
    # Figures of an earlier render into the same folder would linger beside this report's: drop them.
    for key in [k for k, *_ in shared + per_run] + ["samples"]:
        for stale in figures_dir.glob(f"{key}*.png"):
            stale.unlink()
    for key, title, caption, fn in shared:
        res = FigureResult(key, title, caption, base=key)
        try:
            res.path = save(fn(runs, colors, title), figures_dir / file_name(key, None, 1))
        except NoData as exc:
            res.reason = str(exc)
        results.append(res)
    for i, run in enumerate(runs):
        for key, title, caption, fn in per_run:
            t = title if len(runs) == 1 else f"{title} — {run.run_id}"
            res = FigureResult(key if len(runs) == 1 else f"{key}_run{i + 1}", t, caption, base=key)
            try:
                res.path = save(fn([run], colors, title), figures_dir / file_name(key, i, len(runs)))
            except NoData as exc:
                res.reason = str(exc)
            results.append(res)
    return results
