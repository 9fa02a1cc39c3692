"""Performance figures: latency vs length, decode bandwidth utilisation vs context, roofline."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from attnbench.report.figures import NoData, new_figure, stamp
from attnbench.report.fit import loglog_fit, upper_fit
from attnbench.report.load import RunData
from attnbench.report.select import length_series
from attnbench.report.styles import IMPL_STYLE, label_ends, styles_for
from attnbench.report.table import num

PHASE_AXIS = {"prefill": "sequence length N (tokens)", "decode": "context length (tokens)"}


def _tokens(x: float, _pos: int) -> str:
    return f"{x / 1024:g}K" if x >= 1024 else f"{x:g}"


def _plain(y: float, _pos: int) -> str:
    return f"{y:g}"


def _log_axes(ax, xlabel: str, ylabel: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    low, high = ax.get_ylim()
    if high / low < 30:  # under ~1.5 decades the minor ticks are the only labels: print them plainly
        ax.yaxis.set_minor_formatter(FuncFormatter(_plain))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _legend_below(ax, ncol: int = 2, title: str | None = None) -> None:
    """The axes' legend under its x label (constrained layout makes room for it)."""
    if ax.get_legend_handles_labels()[1]:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=ncol, fontsize=8.5, frameon=False,
                  title=title, title_fontsize=8.5)


def _run_marker(run_index: int) -> dict:
    """The first run's markers are filled, a second run's hollow (line style is the implementation)."""
    return {} if run_index == 0 else {"markerfacecolor": "white", "alpha": 0.75}


def _run_legend(ax, runs: list[RunData]) -> None:
    """Legend entries for the encodings: implementation by line style and marker, and with several
    runs, which run has filled and which hollow markers."""
    for impl, (line, marker) in IMPL_STYLE.items():
        ax.plot([], [], line, marker=marker, color="#555555", lw=1.2, ms=4.5, label=f"impl: {impl}")
    if len(runs) > 1:
        for ri, run in enumerate(runs[:2]):
            ax.plot([], [], marker="o", color="black", ls="none", label=f"run {run.run_id} ({run.gpu})",
                    **_run_marker(ri))


def latency_vs_length(runs: list[RunData], colors: dict[str, str], title: str) -> Figure:
    # each run's sweep of each phase, found once: the search costs more than drawing its lines
    sweeps = {(ri, p): length_series(r.ok, p) for ri, r in enumerate(runs) for p in ("prefill", "decode")}
    phases = [p for p in ("prefill", "decode") if any(sweeps[ri, p] for ri in range(len(runs)))]
    if not phases:
        raise NoData("no sweep with ok rows at 2 or more equal lengths in any run")
    n_labels = max(len(sweeps[ri, p]) for ri in range(len(runs)) for p in phases)
    fig = new_figure(7.6 * len(phases) + 0.6, 6.8 + 0.2 * -(-(n_labels + len(runs)) // 2))
    axes = [fig.add_subplot(1, len(phases), i + 1) for i in range(len(phases))]
    styles = styles_for(runs)
    for ax, phase in zip(axes, phases, strict=True):
        fitted, seen, ends = False, set(), []
        for ri in range(len(runs)):
            for label, rows in sweeps[ri, phase].items():
                n, y = rows["n_len"].to_numpy(), rows["latency_ms_p50"].to_numpy()
                fit = upper_fit(list(n), list(y)) or loglog_fit(list(n), list(y))
                # Several runs: colour = backend (named once), line style = run (see _run_legend).
                name = None if label in seen else label
                seen.add(label)
                if fit is not None and len(runs) == 1:
                    assert name is not None, "one run: every label is new (a sweep's labels are its keys)"
                    name += f"  (∝N^{fit.exponent:.2f})"
                    fitted = True
                st = styles[label]
                ax.plot(n, y, st.linestyle, marker=st.marker, ms=4.5, lw=1.6, color=st.color, label=name,
                        **_run_marker(ri))
                lo, hi = rows["latency_ms_p10"].to_numpy(), rows["latency_ms_p90"].to_numpy()
                if np.isfinite(lo).all() and np.isfinite(hi).all():
                    ax.fill_between(n, lo, hi, color=st.color, alpha=0.08, lw=0)
                if ri == 0:
                    ends.append((float(n[-1]), float(y[-1]), label, st.color))
        _log_axes(ax, PHASE_AXIS[phase], "median latency (ms)")
        label_ends(ax, ends, log_y=True)
        first = next(iter(sweeps[0, phase].values()), None)
        sub = phase
        if first is not None:
            r = first.iloc[0]
            sub += (f": batch {r['batch']:.0f}, heads {r['num_q_heads']:.0f}/{r['num_kv_heads']:.0f}, "
                    f"d{r['head_dim']:.0f}, {r['dtype']}")
        ax.set_title(sub, fontsize=10.5)
        _run_legend(ax, runs)
        _legend_below(ax, title="∝N^b: exponent of the upper-half log-log fit" if fitted else None)
    stamp(fig, runs, title)
    return fig


def decode_bandwidth(runs: list[RunData], colors: dict[str, str], title: str) -> Figure:
    series = [(ri, run, length_series(run.ok, "decode")) for ri, run in enumerate(runs)]
    if not any(s for _, _, s in series):
        raise NoData("no decode sweep with ok rows at 2 or more equal context lengths")
    calibrated = all(run.calibration("copy_gbps") for _, run, _ in series)
    n_labels = max(len(s) for _, _, s in series)
    fig = new_figure(11, 6.4 + 0.2 * -(-(n_labels + len(runs)) // 4))
    ax = fig.add_subplot(1, 1, 1)
    seen: set[str] = set()
    styles = styles_for(runs)
    ends: list[tuple[float, float, str, str]] = []
    for ri, run, ser in series:
        copy = run.calibration("copy_gbps")
        for label, rows in ser.items():
            y = rows["hbm_gbps"].to_numpy()
            y = 100.0 * y / copy if calibrated else y
            name = None if label in seen else label
            seen.add(label)
            st = styles[label]
            ax.plot(rows["n_len"], y, st.linestyle, marker=st.marker, ms=4.5, lw=1.6, color=st.color,
                    label=name, **_run_marker(ri))
            if ri == 0:
                ends.append((float(rows["n_len"].iloc[-1]), float(y[-1]), label, st.color))
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(_tokens))
    ax.set_xlabel(PHASE_AXIS["decode"])
    ax.grid(True, alpha=0.35)
    if calibrated:
        ax.axhline(100, color="black", lw=1.2, ls="--")
        copies = ", ".join(dict.fromkeys(f"{run.calibration('copy_gbps'):,.0f} GB/s" for run in runs))
        ax.text(ax.get_xlim()[0], 101, f" calibrated copy bandwidth = 100% ({copies})", fontsize=8.5,
                va="bottom")
        ax.set_ylabel("achieved bandwidth (% of calibrated copy)")
        ax.set_ylim(0, 110)
    else:
        ax.set_ylabel("achieved bandwidth (GB/s; no calibrated ceiling in the manifest)")
        ax.set_ylim(bottom=0)
    r = next(iter(series[0][2].values())).iloc[0] if series[0][2] else None
    if r is not None:
        ax.set_title(f"decode: batch {r['batch']:.0f}, heads {r['num_q_heads']:.0f}/{r['num_kv_heads']:.0f}, "
                     f"d{r['head_dim']:.0f}, {r['dtype']}", fontsize=10.5)
    label_ends(ax, ends, log_y=False)
    _run_legend(ax, runs)
    _legend_below(ax, ncol=4)
    stamp(fig, runs, title)
    return fig


def roofline(runs: list[RunData], colors: dict[str, str], title: str) -> Figure:
    """The calibrated roofline for prefill and mixed points; decode points (which share one
    arithmetic intensity per shape and would stack into a smear) in a panel of their own, one
    column per backend, as a share of the roofline at each point's own intensity."""
    run = runs[0]
    copy, mm = run.calibration("copy_gbps"), run.calibration("matmul_tflops")
    if not copy or not mm:
        raise NoData("the manifest has no calibrated copy bandwidth and matmul rate")
    ok = run.ok[run.ok["flops"].notna() & run.ok["min_hbm_bytes"].notna() & run.ok["tflops"].notna()]
    if ok.empty:
        raise NoData("no ok rows with FLOPs, bytes and TFLOP/s")
    ok = ok.assign(ai=ok["flops"] / ok["min_hbm_bytes"])
    # the calibrated roof at a point's intensity, TFLOP/s: min(matmul rate, AI * copy GB/s / 1e3)
    ok = ok.assign(roof_share=ok["tflops"] / np.minimum(mm, ok["ai"] * copy / 1e3))
    styles = styles_for(runs)
    labels = sorted(ok["label"].unique())
    main, dec = ok[ok["phase"] != "decode"], ok[ok["phase"] == "decode"]
    panels = int(not main.empty) + int(not dec.empty)
    fig = new_figure(7.2 * panels + 0.6, 7.2 + 0.2 * -(-len(labels) // 4))
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    if not main.empty:
        ax = axes[0]
        x = np.logspace(np.log10(max(main["ai"].min() / 3, 1e-2)), np.log10(main["ai"].max() * 3), 200)
        ax.plot(x, np.minimum(mm, x * copy / 1e3), color="black", lw=2,
                label=f"calibrated ceiling ({num(copy)} GB/s, {num(mm)} TFLOP/s)")
        sheet_bw, sheet_tf = run.calibration("datasheet_copy_gbps"), run.calibration("datasheet_tflops_bf16")
        if sheet_bw and sheet_tf:
            ax.plot(x, np.minimum(sheet_tf, x * sheet_bw / 1e3), color="grey", lw=1.2, ls="--",
                    label=f"datasheet ({num(sheet_bw)} GB/s, {num(sheet_tf)} TFLOP/s)")
        for label in labels:
            gl = main[main["label"] == label]
            if not gl.empty:
                st = styles[label]
                ax.scatter(gl["ai"], gl["tflops"], s=26, alpha=0.85, marker=st.marker, color=st.color,
                           edgecolors="none", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10))
        ax.set_xlabel("arithmetic intensity (FLOP per minimum HBM byte)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.set_title("prefill and mixed", fontsize=10)
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", alpha=0.1)
        for impl, (_line, marker) in IMPL_STYLE.items():
            ax.scatter([], [], marker=marker, color="#555555", label=f"marker: {impl}")
        _legend_below(ax, ncol=3)
    if not dec.empty:
        ax = axes[-1]
        order = dec.groupby("label")["roof_share"].median().sort_values(ascending=False).index
        for i, label in enumerate(order):
            gl = dec[dec["label"] == label]
            st = styles[label]
            ax.scatter(np.full(len(gl), i), 100 * gl["roof_share"], s=26, alpha=0.8, marker=st.marker,
                       color=st.color, edgecolors="none")
            ax.plot([i - 0.3, i + 0.3], [100 * gl["roof_share"].median()] * 2, color=st.color, lw=2)
        ax.axhline(100, color="black", lw=1.5)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels(order, rotation=55, ha="right", fontsize=8.5)
        ax.set_ylabel("achieved / calibrated roof at the point's intensity (%)")
        ax.set_ylim(0, max(105, 100 * dec["roof_share"].max() * 1.05))
        ais = ", ".join(sorted({f"{v:.2g}" for v in dec["ai"]}))
        ax.set_title(f"decode (intensity {ais} FLOP/B: memory-bound): every point, bar = median", fontsize=10)
        ax.grid(True, axis="y", alpha=0.35)
    stamp(fig, runs, title)
    return fig
