"""The samples figure: each point's timing distribution in two runs, side by side.

A median and an interval say how a point moved; the samples say whether it moved as a whole or
gained a tail, a second mode or a few outliers. For the points of two runs (a report of two runs,
or the gate's baseline and current), it draws every sample divided by the first run's median, so
points of different sizes share one axis: 1.0 is the first run's median, 1.2 is 20% slower.
The points shown are the ones whose medians moved most (up to `limit`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from attnbench.report.figures import NoData, new_figure, save, stamp
from attnbench.report.load import RunData

BEFORE, AFTER = "#7f7f7f", "#d62728"


def _samples(df: pd.DataFrame) -> pd.Series:
    """(case_id, label) -> the ok row's samples (ms), for rows that kept them."""
    ok = df[df["ok"] & df["samples_ms"].map(lambda s: isinstance(s, (list, tuple)) and len(s) > 0)]
    return ok.set_index(["case_id", "label"])["samples_ms"]


def pairs(a: RunData, b: RunData, limit: int) -> list[tuple[str, list[float], list[float]]]:
    """(point name, samples in a, samples in b) for common points, the largest median moves first."""
    sa, sb = _samples(a.df), _samples(b.df)
    common = sa.index.intersection(sb.index)
    moved = []
    for key in common:
        ma, mb = float(np.median(sa[key])), float(np.median(sb[key]))
        if ma > 0 and mb > 0:
            moved.append((abs(math.log(mb / ma)), f"{key[1]}\n{key[0]}", list(sa[key]), list(sb[key])))
    moved.sort(key=lambda m: -m[0])
    return [(name, xa, xb) for _, name, xa, xb in moved[:limit]]


def samples_figure(runs: list[RunData], _colors: dict[str, str], title: str, limit: int = 16):
    if len(runs) < 2:
        raise NoData("needs two runs (the samples of each point, side by side)")
    a, b = runs[0], runs[1]
    shown = pairs(a, b, limit)
    if not shown:
        raise NoData("no point has ok rows with samples in both runs")
    fig = new_figure(12, 1.8 + 0.62 * len(shown))
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)  # vertical jitter only, so equal samples do not hide each other
    for i, (_name, xa, xb) in enumerate(shown):
        base = float(np.median(xa))
        y = len(shown) - 1 - i
        for offset, xs, color in ((0.17, xa, BEFORE), (-0.17, xb, AFTER)):
            r = np.asarray(xs, dtype=float) / base
            ax.scatter(r, y + offset + rng.uniform(-0.07, 0.07, len(r)), s=9, color=color, alpha=0.55,
                       edgecolors="none")
            q1, med, q3 = np.percentile(r, [25, 50, 75])
            ax.plot([q1, q3], [y + offset] * 2, color=color, lw=4, alpha=0.5, solid_capstyle="butt")
            ax.plot([med], [y + offset], "|", color="black", ms=11, mew=2)
        ratio = float(np.median(xb)) / base
        ax.annotate(f"{ratio - 1:+.1%}  (n={len(xa)}/{len(xb)})", xy=(1, y),
                    xycoords=("axes fraction", "data"), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels([name for name, _, _ in shown][::-1], fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8, ls=":")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7.5)
    ax.set_xlabel(f"sample / median of {a.run_id}  (1 = that run's median; > 1: slower)")
    ax.grid(True, axis="x", which="both", alpha=0.25)
    ax.scatter([], [], color=BEFORE, label=f"{a.run_id} ({a.gpu})")
    ax.scatter([], [], color=AFTER, label=f"{b.run_id} ({b.gpu})")
    ax.plot([], [], "|", color="black", ms=9, mew=2, label="median; bar: 25th-75th percentile")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08 - 0.6 / len(shown)), ncol=3, fontsize=8.5,
              frameon=False)
    stamp(fig, runs[:2], title,
          f"the {len(shown)} points whose medians moved most; right: change of the median")
    return fig


def gate_figure(baseline: Path, current: Path, out: Path, limit: int = 16) -> Path:
    """The samples figure for the gate's two runs, written to `out` (PNG)."""
    from attnbench.report.load import load_one

    runs = [load_one(baseline), load_one(current)]
    title = f"Samples per point: {runs[0].run_id} vs {runs[1].run_id}"
    return save(samples_figure(runs, {}, title, limit), out)
