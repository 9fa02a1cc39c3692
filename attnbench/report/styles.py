"""How a backend looks in every figure: colour by family (the comparison's side), marker and line
style by implementation, so two flash kernels in similar blues still differ in shape; and labels
written at the end of each line, so a reader need not match colours against a legend.

    family  naive: greys and browns   flash: blues and greens   paged: reds and oranges
    impl    torch: solid, circle      triton: dashed, triangle  cuda: dash-dot, square
            external: dotted, diamond
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from attnbench.report.load import RunData

FAMILY_COLORS = {
    "naive": ["#000000", "#8c564b", "#7f7f7f", "#c49c94"],
    "flash": ["#1f77b4", "#17becf", "#2ca02c", "#000080", "#9467bd", "#00a89d", "#5e9bd1", "#6a3d9a"],
    "paged": ["#d62728", "#ff7f0e", "#e377c2", "#c9a800", "#8b0000", "#b35900"],
    "other": ["#bcbd22", "#7f7f7f"],
}
IMPL_STYLE = {"torch": ("-", "o"), "triton": ("--", "^"), "cuda": ("-.", "s"), "external": (":", "D")}


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: str
    marker: str


def styles_for(runs: list[RunData]) -> dict[str, Style]:
    """One style per backend label, the same in every figure of a report."""
    info: dict[str, tuple[str, str]] = {}
    for run in runs:
        if run.df.empty:
            continue
        first = run.df.groupby("label")[["kind", "impl"]].first()
        for label, row in first.iterrows():
            info.setdefault(str(label), (str(row["kind"]), str(row["impl"])))
    out: dict[str, Style] = {}
    used: dict[str, int] = {}
    for label in sorted(info):
        kind, impl = info[label]
        palette = FAMILY_COLORS.get(kind, FAMILY_COLORS["other"])
        index = used.get(kind, 0)
        used[kind] = index + 1
        line, marker = IMPL_STYLE.get(impl, ("-", "o"))
        out[label] = Style(palette[index % len(palette)], line, marker)
    return out


def spread(
    values: list[float], min_gap: float, low: float = -math.inf, high: float = math.inf
) -> list[float]:
    """Positions as close to `values` as possible, at least `min_gap` apart, order kept, kept
    within [low, high] where the stack fits."""
    if not values:
        return []
    order = sorted(range(len(values)), key=lambda i: values[i])
    # clusters of labels that would overlap, each centred on the mean of its members' values;
    # a label with room stays where its line ends
    clusters: list[list[float]] = []  # [centre of the members' values, count]
    for i in order:
        clusters.append([values[i], 1])
        while len(clusters) > 1:
            (c1, n1), (c2, n2) = clusters[-2], clusters[-1]
            top_of_lower = c1 + (n1 - 1) * min_gap / 2
            bottom_of_upper = c2 - (n2 - 1) * min_gap / 2
            if bottom_of_upper - top_of_lower >= min_gap:
                break
            clusters[-2:] = [[(c1 * n1 + c2 * n2) / (n1 + n2), n1 + n2]]
    placed = [c - (n - 1) * min_gap / 2 + k * min_gap for c, n in clusters for k in range(int(n))]
    if placed[-1] > high:  # push the top labels down under the top, then up off the bottom
        placed[-1] = high
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - min_gap)
    if placed[0] < low:
        placed[0] = low
        for i in range(1, len(placed)):
            placed[i] = max(placed[i], placed[i - 1] + min_gap)
    out = [0.0] * len(values)
    for rank, i in enumerate(order):
        out[i] = placed[rank]
    return out


def label_ends(ax, ends: list[tuple[float, float, str, str]], log_y: bool, fontsize: float = 8.0,
               room: float = 3.2) -> None:
    """Write each line's label just right of its last point, nudged apart vertically where lines end
    close together (a thin leader joins a moved label to its point). ends: (x, y, text, colour)."""
    ends = [e for e in ends if e[1] > 0 or not log_y]
    if not ends:
        return
    x_right = max(e[0] for e in ends)
    left, _ = ax.get_xlim()
    ax.set_xlim(left, x_right * room)  # a log x axis: room for the labels right of the data
    ax.set_xticks([t for t in ax.get_xticks() if left <= t <= x_right * 1.01])  # no ticks past the data
    ax.set_xlim(left, x_right * room)
    ax.figure.draw_without_rendering()  # final limits: the gap is a share of the axis range
    low, high = ax.get_ylim()
    to = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    back = (lambda v: 10 ** v) if log_y else (lambda v: v)
    gap = (to(high) - to(low)) * 0.034 * fontsize / 8.0
    ys = spread([to(e[1]) for e in ends], gap, to(low) + gap / 2, to(high) - gap / 2)
    for (x, y, text, color), y_label in zip(ends, ys, strict=True):
        ax.annotate(text, xy=(x, y), xytext=(x_right * 1.12, back(y_label)), textcoords="data",
                    fontsize=fontsize, color=color, va="center", ha="left",
                    arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6, "alpha": 0.6,
                                "shrinkA": 0, "shrinkB": 3},
                    annotation_clip=False)
    ax.set_ylim(low, high)
