"""Memory-side figures: block-size trade-off, paged-vs-flash speed-up heatmap, fragmentation bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from attnbench.report import fragmentation as frag
from attnbench.report.figures import NoData, new_figure, stamp
from attnbench.report.select import describe_case, paired
from attnbench.report.styles import label_ends, styles_for
from attnbench.report.table import geomean


def _sweep_problem(paged: pd.DataFrame) -> str:
    """The problem with the most block sizes run by paged kernels; mixed lengths win ties (their
    waste depends on the block size, equal lengths often waste nothing)."""
    stats = paged.groupby("problem").agg(sizes=("block_size", "nunique"), equal=("lengths_equal", "all"))
    stats = stats[stats["sizes"] >= 2]
    if stats.empty:
        raise NoData("no case ran a paged kernel at two or more block sizes")
    return str(stats.sort_values(["sizes", "equal"], ascending=[False, True]).index[0])


def block_size_tradeoff(runs, colors: dict[str, str], title: str) -> Figure:
    run = runs[0]
    paged = run.ok[run.ok["paged"] & (run.ok["kind"] == "paged")]
    if paged.empty:
        raise NoData("no ok paged rows")
    rows = paged[paged["problem"] == _sweep_problem(paged)].copy()
    rows["waste"] = 1.0 - rows["kv_bytes_used"] / rows["kv_bytes_allocated"]
    # Contexts that are multiples of every block size run waste nothing: nothing to trade against.
    no_waste = bool(rows["waste"].notna().any() and rows["waste"].max() < 1e-9)
    has_waste = bool(rows["waste"].notna().any()) and not no_waste
    # Without waste to trade against, one panel: an empty second one would be half a blank figure.
    fig = new_figure(13 if has_waste else 10, 6.4)
    ax_t = fig.add_subplot(1, 2 if has_waste else 1, 1)
    ax_w = fig.add_subplot(1, 2, 2) if has_waste else None
    styles = styles_for(runs)
    ends: list[tuple[float, float, str, str]] = []
    for label, g in rows.groupby("label"):
        st = styles[label]
        for layout, filled in (("shuffled", True), ("contiguous", False)):
            gl = g[g["kv_layout"] == layout].sort_values("block_size")
            if not gl.empty:
                ax_t.plot(gl["block_size"], gl["latency_ms_p50"], "-" if filled else ":", marker=st.marker,
                          ms=6, lw=1.6, color=st.color, label=label if filled else None,
                          markerfacecolor=st.color if filled else "white")
        last = g[g["kv_layout"] == "shuffled"].sort_values("block_size")
        if not last.empty:
            ends.append((float(last["block_size"].iloc[-1]), float(last["latency_ms_p50"].iloc[-1]), label,
                         st.color))
        gs = g[g["kv_layout"] == "shuffled"].sort_values("block_size")
        gs = gs if not gs.empty else g.sort_values("block_size")
        if ax_w is not None and gs["waste"].notna().any():
            ax_w.plot(100 * gs["waste"], gs["latency_ms_p50"], "-", marker=st.marker, ms=5, lw=1.6,
                      color=st.color, label=label)
    # The waste depends on the block size only (same case, same allocator): one marker line per size.
    per_size = rows.groupby("block_size")["waste"].median().dropna()
    if ax_w is not None:
        for bs, waste in per_size.items():
            ax_w.axvline(100 * waste, color="#999999", lw=0.8, ls=":")
            ax_w.annotate(f"bs {bs:.0f}", (100 * waste, 1.0), xycoords=("data", "axes fraction"),
                          textcoords="offset points", xytext=(2, -12), fontsize=8, color="#444444")
    ax_t.set_xscale("log", base=2)
    ax_t.set_xticks(sorted(rows["block_size"].unique()))
    ax_t.set_xticklabels([f"{b:.0f}" for b in sorted(rows["block_size"].unique())])
    ax_t.set_xlabel("block size (tokens per KV block)")
    ax_t.set_ylabel("median kernel time (ms)")
    ax_t.set_title("kernel time vs block size (filled, solid: shuffled blocks; hollow, dotted: contiguous)",
                   fontsize=10)
    ax_t.grid(True, alpha=0.35)
    ax_t.legend(fontsize=7.5, loc="best")
    label_ends(ax_t, ends, log_y=False, room=1.9)
    note = ""
    if no_waste:
        note = "no KV memory waste at any block size: every context is a multiple of every block size"
    elif not has_waste:
        note = "KV memory waste not measured: rows carry no kv_bytes_allocated / kv_bytes_used"
    if note:
        ax_t.annotate(note + " (the fragmentation study shows the memory side)", (0.5, 0.985),
                      xycoords="axes fraction", ha="center", va="top", fontsize=8.5, color="#444444")
    if ax_w is not None:
        ax_w.set_xlabel("KV-cache memory waste (% of allocated bytes holding no token)")
        ax_w.set_ylabel("median kernel time (ms)")
        ax_w.set_title("trade-off: kernel time vs KV memory waste (shuffled blocks)", fontsize=10)
        ax_w.grid(True, alpha=0.35)
        ax_w.margins(x=0.08)
        ax_w.legend(fontsize=7.5, loc="best")
    stamp(fig, runs, title, "case: " + describe_case(rows.iloc[0]))
    return fig


SHAPE = ["num_q_heads", "num_kv_heads", "head_dim", "dtype", "causal"]
MIN_AXIS = 2  # a heatmap needs at least two batch sizes and two lengths


def _grid(pairs: pd.DataFrame) -> pd.DataFrame | None:
    """batch x length table of flash time / paged time for the head/dtype shape with the most cells
    (geometric mean where a cell holds several cases); None when no shape spans 2 x 2."""
    pairs = pairs[~(pairs["prefix_len"] > 0)]  # prefix sharing is another problem: its own class
    if "pattern" in pairs.columns:  # a window or soft-cap case is another workload than full attention
        pairs = pairs[pairs["pattern"].fillna("none").isin(["none", ""])]
    if pairs.empty:
        return None
    pairs = pairs.assign(speedup=pairs["lat_b"] / pairs["lat_a"],
                         _shape=pairs[SHAPE].astype(str).agg("|".join, axis=1))
    cells = pairs.groupby("_shape").apply(lambda g: g[["batch", "n_len"]].drop_duplicates().shape[0])
    best = pairs[pairs["_shape"] == cells.idxmax()]
    if best["batch"].nunique() < MIN_AXIS or best["n_len"].nunique() < MIN_AXIS:
        return None
    cell = best.groupby(["batch", "n_len"])["speedup"].apply(lambda v: geomean(list(v)))
    return cell.unstack("n_len").sort_index(ascending=False)


def _shape_text(pairs: pd.DataFrame) -> str:
    r = pairs.iloc[0]
    return f"heads {r['num_q_heads']:.0f}/{r['num_kv_heads']:.0f}, d{r['head_dim']:.0f}, {r['dtype']}"


def speedup_heatmap(runs, _colors: dict[str, str], title: str) -> Figure:
    run = runs[0]
    ok = run.ok[run.ok["lengths_equal"]]
    grids, shapes = {}, {}
    for phase in ("prefill", "decode"):
        pairs = paired(ok[ok["phase"] == phase], "paged", "flash")
        grid = _grid(pairs) if not pairs.empty else None
        if grid is not None:
            grids[phase] = grid
            shapes[phase] = _shape_text(pairs)
    if not grids:
        raise NoData("no head/dtype shape with both a paged and a flash row over at least 2 batch sizes "
                     "x 2 lengths")
    values = np.concatenate([np.log2(g.to_numpy(dtype=float)).ravel() for g in grids.values()])
    # At least +-25% on the scale, so a few percent does not look like a landslide.
    span = max(float(np.log2(1.25)), float(np.nanmax(np.abs(values))) * 1.05)
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    widths = [max(3, g.shape[1]) for g in grids.values()]
    fig = new_figure(min(17, 2.6 + 1.3 * sum(widths)), 6.4)
    axes = [fig.add_subplot(1, len(grids), i + 1) for i in range(len(grids))]
    image = None
    for ax, (phase, g) in zip(axes, grids.items(), strict=True):
        data = g.to_numpy(dtype=float)
        ax.set_facecolor("#d9d9d9")  # cells without a measurement
        image = ax.imshow(np.ma.masked_invalid(np.log2(data)), cmap="RdBu", norm=norm, aspect="auto")
        ax.set_xticks(range(g.shape[1]))
        ax.set_xticklabels([f"{int(n):,}" for n in g.columns], rotation=30)
        ax.set_yticks(range(g.shape[0]))
        ax.set_yticklabels([f"{int(b)}" for b in g.index])
        ax.set_xlabel("sequence length N (tokens)" if phase == "prefill" else "context length (tokens)")
        ax.set_ylabel("batch (sequences)")
        ax.set_title(f"{phase}: {shapes[phase]}", fontsize=11)
        for (i, j), v in np.ndenumerate(data):
            if np.isfinite(v):
                dark = abs(np.log2(v)) > 0.6 * span
                ax.text(j, i, f"{v:.2f}x", ha="center", va="center", fontsize=9.5,
                        color="white" if dark else "black")
            else:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=8, color="#666666")
    assert image is not None, "grids is not empty (checked above): every grid drew an image"
    bar = fig.colorbar(image, ax=axes, shrink=0.95, pad=0.02)
    nice = [t for t in (0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0) if abs(np.log2(t)) <= span]
    bar.set_ticks([float(np.log2(t)) for t in nice])
    bar.set_ticklabels([f"{t:g}x" for t in nice])
    bar.set_label("best flash time / best paged time   (> 1, blue: paged faster)")
    stamp(fig, runs, title, "paged: fastest paged-KV row (shuffled blocks, best block size)\n"
          "flash: fastest flash row on contiguous KV")
    return fig


SEGMENTS = (("token_states", "token states"), ("reserved", "reserved"),
            ("internal", "internal fragmentation"), ("external", "external fragmentation"),
            ("other", "other"))


def fragmentation(runs, _colors: dict[str, str], title: str) -> Figure:
    run = runs[0]
    if run.fragmentation is None:
        raise NoData("no fragmentation.json in the run directory and no --fragmentation")
    table = frag.build(run)
    if not table.records:
        raise NoData("the fragmentation study has no rows")
    recs = table.records
    fig = new_figure(12, 1.6 + 0.5 * len(recs))
    ax = fig.add_subplot(1, 1, 1)
    names = [f"{r['dataset']} / {r['policy']}" + (f" (bs {r['block_size']})" if r["block_size"] else "")
             for r in recs]
    y = np.arange(len(recs))[::-1]
    left = np.zeros(len(recs))
    from attnbench.memory.colors import CATEGORY_COLORS

    for key, name in SEGMENTS:
        color = CATEGORY_COLORS[key]  # the study's own figures use the same colours
        vals = np.nan_to_num(np.array([100 * r[key] for r in recs], dtype=float))
        ax.barh(y, vals, left=left, color=color, label=name, edgecolor="white", height=0.7)
        for yi, lft, v in zip(y, left, vals, strict=True):
            if v >= 6:
                ax.text(lft + v / 2, yi, f"{v:.0f}%", ha="center", va="center", fontsize=8)
        left += vals
    for yi, r in zip(y, recs, strict=True):
        ax.text(101, yi, f"{r['mean_batched_requests']:.1f} req", va="center", fontsize=8.5)
        if np.isfinite(r["paper_token_states"]):
            ax.plot([100 * r["paper_token_states"]] * 2, [yi - 0.38, yi + 0.38], color="black", lw=2)
    ax.plot([], [], color="black", lw=2, label="paper: token states")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_ylim(-0.6, len(recs) - 0.4)
    ax.set_xlabel("share of KV-cache memory (%)   [right: mean batched requests]")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.07, 1.0), frameon=False)
    stamp(fig, runs, title)
    return fig
