"""Performance figures: latency vs length, decode bandwidth utilisation vs context, roofline."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from attnbench.report.figures import KIND_MARKER, RUN_STYLE, NoData, new_figure, stamp
from attnbench.report.fit import loglog_fit, upper_fit
from attnbench.report.load import RunData
from attnbench.report.select import length_series
from attnbench.report.table import num

PHASE_AXIS = {"prefill": "sequence length N (tokens)", "decode": "context length (tokens)"}
PHASE_MARKER = {"prefill": "o", "decode": "^", "mixed": "s"}


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


def _run_legend(ax, runs: list[RunData]) -> None:
    """With several runs, one legend entry per run naming its line style."""
    if len(runs) > 1:
        for ri, run in enumerate(runs):
            ax.plot([], [], RUN_STYLE[ri % len(RUN_STYLE)], color="black", lw=1.6,
                    label=f"line style: run {run.run_id} ({run.gpu})")


def latency_vs_length(runs: list[RunData], colors: dict[str, str], title: str) -> Figure:
    phases = [p for p in ("prefill", "decode") if any(length_series(r.ok, p) for r in runs)]
    if not phases:
        raise NoData("no sweep with ok rows at 2 or more equal lengths in any run")
    n_labels = max(len(length_series(r.ok, p)) for r in runs for p in phases)
    fig = new_figure(6.8 * len(phases) + 0.6, 6.4 + 0.2 * -(-(n_labels + len(runs)) // 2))
    axes = [fig.add_subplot(1, len(phases), i + 1) for i in range(len(phases))]
    for ax, phase in zip(axes, phases, strict=True):
        fitted, seen = False, set()
        for ri, run in enumerate(runs):
            for label, rows in length_series(run.ok, phase).items():
                n, y = rows["n_len"].to_numpy(), rows["latency_ms_p50"].to_numpy()
                fit = upper_fit(list(n), list(y)) or loglog_fit(list(n), list(y))
                # Several runs: colour = backend (named once), line style = run (see _run_legend).
                name = None if label in seen else label
                seen.add(label)
                if fit is not None and len(runs) == 1:
                    name += f"  (∝N^{fit.exponent:.2f})"
                    fitted = True
                kind = str(rows["kind"].iloc[0])
                ax.plot(n, y, RUN_STYLE[ri % len(RUN_STYLE)], marker=KIND_MARKER.get(kind, "o"), ms=4.5,
                        lw=1.6, color=colors.get(label), label=name)
                lo, hi = rows["latency_ms_p10"].to_numpy(), rows["latency_ms_p90"].to_numpy()
                if np.isfinite(lo).all() and np.isfinite(hi).all():
                    ax.fill_between(n, lo, hi, color=colors.get(label), alpha=0.15, lw=0)
        _log_axes(ax, PHASE_AXIS[phase], "median latency (ms)")
        first = next(iter(length_series(runs[0].ok, phase).values()), None)
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
    for ri, run, ser in series:
        copy = run.calibration("copy_gbps")
        for label, rows in ser.items():
            y = rows["hbm_gbps"].to_numpy()
            y = 100.0 * y / copy if calibrated else y
            name = None if label in seen else label
            seen.add(label)
            ax.plot(rows["n_len"], y, RUN_STYLE[ri % len(RUN_STYLE)],
                    marker=KIND_MARKER.get(str(rows["kind"].iloc[0])), ms=4.5, lw=1.6,
                    color=colors.get(label), label=name)
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
    _run_legend(ax, runs)
    _legend_below(ax, ncol=4)
    stamp(fig, runs, title)
    return fig


def roofline(runs: list[RunData], colors: dict[str, str], title: str) -> Figure:
    run = runs[0]
    copy, mm = run.calibration("copy_gbps"), run.calibration("matmul_tflops")
    if not copy or not mm:
        raise NoData("the manifest has no calibrated copy bandwidth and matmul rate")
    ok = run.ok[run.ok["flops"].notna() & run.ok["min_hbm_bytes"].notna() & run.ok["tflops"].notna()]
    if ok.empty:
        raise NoData("no ok rows with FLOPs, bytes and TFLOP/s")
    labels = sorted(ok["label"].unique())
    fig = new_figure(11, 7.2 + 0.2 * -(-len(labels) // 4))
    ax = fig.add_subplot(1, 1, 1)
    ai = ok["flops"] / ok["min_hbm_bytes"]
    x = np.logspace(np.log10(max(ai.min() / 2, 1e-2)), np.log10(ai.max() * 2), 200)
    ax.plot(x, np.minimum(mm, x * copy / 1e3), color="black", lw=2,
            label=f"calibrated ceiling ({num(copy)} GB/s, {num(mm)} TFLOP/s)")
    sheet_bw, sheet_tf = run.calibration("datasheet_copy_gbps"), run.calibration("datasheet_tflops_bf16")
    if sheet_bw and sheet_tf:
        ax.plot(x, np.minimum(sheet_tf, x * sheet_bw / 1e3), color="grey", lw=1.2, ls="--",
                label=f"datasheet ({num(sheet_bw)} GB/s, {num(sheet_tf)} TFLOP/s)")
    for label in labels:
        g = ok[ok["label"] == label]
        for phase, gp in g.groupby("phase"):
            ax.scatter(gp["flops"] / gp["min_hbm_bytes"], gp["tflops"], s=22, alpha=0.8,
                       marker=PHASE_MARKER.get(str(phase), "o"), color=colors.get(label), edgecolors="none")
        ax.scatter([], [], marker="o", color=colors.get(label), label=label)
    for phase, marker in PHASE_MARKER.items():
        if (ok["phase"] == phase).any():
            ax.scatter([], [], marker=marker, color="white", edgecolors="black", label=f"marker: {phase}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.set_xlabel("arithmetic intensity (FLOP per minimum HBM byte)")
    ax.set_ylabel("achieved TFLOP/s")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.1)
    _legend_below(ax, ncol=4)
    stamp(fig, runs, title)
    return fig
