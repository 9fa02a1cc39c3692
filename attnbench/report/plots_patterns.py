"""Pattern figure: decode time vs context length with and without a sliding window, per backend.

A window of w keys caps what each decode query reads, so a windowed backend's time should stop growing
with context once the context passes w; a backend that masks instead of skipping keeps growing. Rows:
ok decode rows of equal-length cases; the series are the shapes (batch, heads, head dim, dtype) that ran
at 2 or more contexts both without a pattern and with one window size (and nothing else).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from attnbench.report.figures import NoData, new_figure, stamp
from attnbench.report.load import RunData
from attnbench.report.styles import styles_for

SHAPE = ["batch", "num_q_heads", "num_kv_heads", "head_dim", "dtype", "block_size", "kv_layout"]


def shape_keys(rows: pd.DataFrame) -> pd.Series:
    """One string per row naming its SHAPE (str() of each value: a missing block size is 'None' or
    'nan' alike, never a float left in the join)."""
    return rows[SHAPE].apply(lambda r: "|".join(map(str, r)), axis=1)


def window_series(ok: pd.DataFrame) -> tuple[pd.DataFrame, int] | None:
    """The decode rows of the shape with the most (label, context) points both full and at one window."""
    rows = ok[(ok["phase"] == "decode") & ok["lengths_equal"]]
    if rows.empty or "pattern" not in rows.columns:
        return None
    full = rows[rows["pattern"] == "none"]
    win = rows[rows["window"].notna() & (rows["pattern"] == rows["window"].map(
        lambda w: f"window{int(w)}" if pd.notna(w) else ""))]
    best: tuple[int, pd.DataFrame, int] | None = None
    for (w,), g in win.groupby(["window"]):
        keys = shape_keys(g)
        for key in keys.unique():
            gw = g[keys == key]
            fk = shape_keys(full)
            gf = full[(fk == key) & full["label"].isin(gw["label"])]
            if gw["n_len"].nunique() < 2 or gf["n_len"].nunique() < 2:
                continue
            points = len(gw) + len(gf)
            if best is None or points > best[0]:
                best = (points, pd.concat([gf, gw]), int(w))
    return None if best is None else (best[1], best[2])


def decode_window(runs: list[RunData], _colors: dict[str, str], title: str) -> Figure:
    found = window_series(runs[0].ok)
    if found is None:
        raise NoData("no decode shape ran at 2 or more contexts both without a pattern and with a window")
    rows, window = found
    styles = styles_for(runs)
    fig = new_figure(8.4, 6.4)
    ax = fig.add_subplot(1, 1, 1)
    for label, g in rows.groupby("label"):
        st = styles[str(label)]
        for windowed, part in g.groupby(g["window"].notna()):
            part = part.sort_values("n_len").drop_duplicates("n_len")
            ax.plot(part["n_len"], part["latency_ms_p50"], "--" if windowed else "-", marker=st.marker,
                    color=st.color, lw=1.6, ms=4.5,
                    label=f"{label} ({'window ' + str(window) if windowed else 'full'})")
    ax.axvline(window, color="#888888", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("median latency (ms)")
    ax.grid(True, which="both", alpha=0.25)
    r = rows.iloc[0]
    ax.set_title(f"decode: batch {r['batch']:.0f}, heads {r['num_q_heads']:.0f}/{r['num_kv_heads']:.0f}, "
                 f"d{r['head_dim']:.0f}, {r['dtype']}; solid full, dashed window {window}", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=8, frameon=False)
    stamp(fig, runs, title)
    return fig
