"""fragmentation.md and the two figures of the memory study, from the fragmentation.json result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnbench.memory import paper
from attnbench.memory.colors import CATEGORY_COLORS

LABELS = {
    "orca-max": "Orca (Max)",
    "orca-pow2": "Orca (Pow2)",
    "orca-oracle": "Orca (Oracle)",
    "paged": "vLLM (paged)",
}
COLORS = {  # the report's fragmentation figure uses the same colours per category
    **CATEGORY_COLORS,
    "external_other": CATEGORY_COLORS["external"],
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _pp(sim: float, ref: float | None) -> str:
    return "–" if ref is None else f"{100 * (sim - ref):+.1f} pp"


def figure_rows(rows: list[dict[str, Any]], dataset: str, block_size: int) -> list[dict[str, Any]]:
    """The rows of the Figure 2 comparison: each policy once, paged at the figure's block size."""
    out = [
        r
        for r in rows
        if r["dataset"] == dataset and (r["policy"] != "paged" or r["block_size"] == block_size)
    ]
    order = list(LABELS)
    return sorted(out, key=lambda r: order.index(r["policy"]))


def _breakdown_table(rows: list[dict[str, Any]], with_paper: bool) -> list[str]:
    if with_paper:
        lines = [
            "| policy | token states: sim / paper (diff) | reserved: sim / paper | internal: sim / paper "
            "| external + other: sim / paper | batched requests: sim / paper |",
            "|---|---|---|---|---|---|",
        ]
    else:
        lines = [
            "| policy | token states | reserved | internal | external | other | batched requests |",
            "|---|---|---|---|---|---|---|",
        ]
    for r in rows:
        name = LABELS[r["policy"]] + (f" b={r['block_size']}" if r["block_size"] else "")
        ext = r["external"] + r["other"]
        if with_paper:
            pb = r.get("paper_mean_batched_requests")
            lines.append(
                f"| {name} | {_pct(r['token_states'])} / {_pct(r['paper_token_states'])} "
                f"({_pp(r['token_states'], r['paper_token_states'])}) "
                f"| {_pct(r['reserved'])} / {_pct(r['paper_reserved'])} "
                f"| {_pct(r['internal'])} / {_pct(r['paper_internal'])} "
                f"| {_pct(ext)} / {_pct(r['paper_external_other'])} "
                f"| {r['mean_batched_requests']:.2f} / {'–' if pb is None else f'{pb:.2f}'} |"
            )
        else:
            lines.append(
                f"| {name} | {_pct(r['token_states'])} | {_pct(r['reserved'])} | {_pct(r['internal'])} "
                f"| {_pct(r['external'])} | {_pct(r['other'])} | {r['mean_batched_requests']:.2f} |"
            )
    return lines


def _batch_table(rows: list[dict[str, Any]], datasets: list[str], bs: int) -> list[str]:
    lines = [
        "| dataset | policy | batched requests: simulated | paper (Fig. 13) | simulated / paper |",
        "|---|---|---|---|---|",
    ]
    for ds in datasets:
        for r in figure_rows(rows, ds, bs):
            ref = r.get("paper_mean_batched_requests")
            ratio = "–" if not ref else f"{r['mean_batched_requests'] / ref:.2f}x"
            lines.append(
                f"| {ds} | {LABELS[r['policy']]} | {r['mean_batched_requests']:.2f} "
                f"| {'–' if ref is None else f'{ref:.2f}'} | {ratio} |"
            )
    return lines


def _block_table(rows: list[dict[str, Any]], datasets: list[str]) -> list[str]:
    head = (
        "| block size | "
        + " | ".join(f"{ds} token states | {ds} waste in blocks | {ds} batched" for ds in datasets)
        + " |"
    )
    lines = [head, "|---|" + "---|" * (3 * len(datasets))]
    sizes = sorted({r["block_size"] for r in rows if r["policy"] == "paged"})
    for bs in sizes:
        cells = []
        for ds in datasets:
            r = next(
                (x for x in rows if x["dataset"] == ds and x["policy"] == "paged" and x["block_size"] == bs),
                None,
            )
            if r is None:
                cells += ["–"] * 3
            else:
                cells += [
                    _pct(r["token_states"]),
                    _pct(r["reserved"] + r["internal"] + r["external"]),
                    f"{r['mean_batched_requests']:.1f}",
                ]
        lines.append(f"| {bs} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(result: dict[str, Any], figures: list[str] | None = None) -> str:
    s = result["setup"]
    rows = result["rows"]
    bs = s["paged_block_size"]
    datasets = list(s["datasets"])
    load = s["loads"][0]
    out = [
        f"# KV-cache memory study: {result['config_name']}",
        "",
        f"Reproduces the memory study of {paper.CITATION}: Figure 2 (where KV-cache memory goes under "
        "each allocation policy), Figure 13 (mean batched requests) and a block-size study, by simulating "
        "the paper's serving setup. Primary load: **" + load + "**.",
        "",
        "## Setup",
        "",
        "| item | value |",
        "|---|---|",
        f"| model / GPU | {s['model']} / {s['gpu']} |",
        f"| KV bytes per token | {s['bytes_per_token']:,} (2 x {s['num_layers']} layers x "
        f"{s['hidden_size']} x "
        f"{s['dtype_bytes']} B) |",
        f"| KV capacity | {s['kv_memory_gib']} GiB = {s['kv_capacity_tokens']:,} token slots "
        "(paper Table 1: 15.7K) |",
        f"| max sequence length | {s['max_seq_len']} |",
    ]
    if s.get("iteration_time"):
        from attnbench.memory.iteration_time import describe

        out.append(f"| iteration time | {describe(s['iteration_time'])} |")
    for ds, d in s["datasets"].items():
        out.append(
            f"| {ds} | {d['num_requests']} requests; mean input/output sampled {d['sampled_mean_input']:.1f}"
            f"/{d['sampled_mean_output']:.1f}, published {d['published_mean_input']}/"
            f"{d['published_mean_output']}; paper-rate {d['request_rate']} req/s |"
        )
    out += [
        "",
        "## Definitions",
        "",
        "Each category is a fraction of the whole KV capacity, averaged over time; the five add up to 1. "
        "**token states**: slots holding KV of tokens processed so far. **reserved**: allocated slots the "
        "request fills later. **internal**: allocated slots it never fills (over-reservation; for paged, "
        "the last block past the final length). **external**: memory lost to the allocator's shape (buddy "
        "rounding of a reservation to a power of two; the paged pool's remainder under one block) plus free "
        "memory while the next request is refused although enough is free in total. **other**: remaining "
        "free memory. The paper shows external fragmentation and others as one bar.",
        "",
        f"## Figure 2: {paper.FIGURE2_DATASET}, simulated vs paper",
        "",
    ]
    out += _breakdown_table(figure_rows(rows, paper.FIGURE2_DATASET, bs), with_paper=True)
    for ds in datasets:
        if ds != paper.FIGURE2_DATASET:
            out += ["", f"## Breakdown on {ds} (no paper figure)", ""]
            out += _breakdown_table(figure_rows(rows, ds, bs), with_paper=False)
    out += ["", "## Figure 13: mean batched requests", ""] + _batch_table(rows, datasets, bs)
    out += [
        "",
        f"## Block size (paged, {load})",
        "",
        "Waste in blocks = reserved + internal + external (free memory excluded). The paper's block-size "
        f"study (Fig. 18b) measures latency, not memory: {paper.FIGURE18B_TEXT}.",
        "",
    ]
    out += _block_table(rows, datasets)
    for other_load, other_rows in result.get("rows_by_load", {}).items():
        out += ["", f"## Load {other_load}", ""]
        for ds in datasets:
            out += [f"{ds}:", ""] + _breakdown_table(figure_rows(other_rows, ds, bs), with_paper=True) + [""]
        out += [f"Mean batched requests at {other_load} against the paper's Fig. 13:", ""]
        out += _batch_table(other_rows, datasets, bs) + [""]
    from attnbench.memory.window_render import markdown_lines

    out += markdown_lines(result.get("window"))
    if result.get("gpu"):
        out += ["", "## PyTorch caching allocator (GPU)", ""] + gpu_lines(result["gpu"])
    if figures:
        out += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    out += ["", "## Notes", ""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(out) + "\n"


def gpu_lines(gpu: dict[str, Any]) -> list[str]:
    if gpu.get("skipped"):
        return [f"Skipped: {gpu['skipped']}"]
    lines = [
        f"Device: {gpu.get('device')}; trace: {gpu.get('dataset')}, {gpu.get('events')} events per policy.",
        "",
        "| policy | mean reserved GiB | mean allocated GiB | peak reserved GiB | peak inactive split GiB "
        "| alloc retries | OOMs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in gpu["rows"]:
        lines.append(
            f"| {r['policy']} | {r['mean_reserved_gib']:.2f} | {r['mean_allocated_gib']:.2f} "
            f"| {r['peak_reserved_gib']:.2f} | {r['peak_inactive_split_gib']:.2f} "
            f"| {r['num_alloc_retries']} | {r['num_ooms']} |"
        )
    return lines


def plot_breakdown(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["setup"]
    datasets = list(s["datasets"])
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.8), squeeze=False)
    cats = ("token_states", "reserved", "internal", "external", "other")
    for ax, ds in zip(axes[0], datasets, strict=True):
        rows = figure_rows(result["rows"], ds, s["paged_block_size"])
        x = 0.0
        ticks, names = [], []
        for r in rows:
            bars = [("sim", {c: r[c] for c in cats})]
            if ds == paper.FIGURE2_DATASET:
                ref = paper.FIGURE2[r["policy"]]
                rest = 1 - sum(v or 0 for v in ref.values())
                bars.insert(
                    0,
                    (
                        "paper",
                        {
                            "token_states": ref["token_states"],
                            "reserved": ref["reserved"] or 0,
                            "internal": ref["internal"] or 0,
                            "external_other": (ref["external_other"] or 0) + max(rest, 0),
                        },
                    ),
                )
            for label, vals in bars:
                bottom = 0.0
                for c, v in vals.items():
                    ax.bar(
                        x,
                        100 * v,
                        bottom=100 * bottom,
                        color=COLORS[c],
                        width=0.8,
                        hatch="//" if label == "paper" else None,
                        edgecolor="white",
                    )
                    bottom += v
                ax.text(x, 101, label, ha="center", fontsize=7)
                x += 1
            ticks.append(x - (len(bars) + 1) / 2)
            names.append(LABELS[r["policy"]])
            x += 0.6
        ax.set_xticks(ticks, names, fontsize=8)
        ax.set_ylim(0, 108)
        ax.set_ylabel("% of KV-cache memory (time average)")
        ax.set_title(f"{ds}" + (" (paper bars hatched)" if ds == paper.FIGURE2_DATASET else " (simulated)"))
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[c]) for c in cats]
    fig.legend(
        handles,
        [
            "token states",
            "reserved",
            "internal frag.",
            "external frag. (paper: ext. + others)",
            "other (free)",
        ],
        loc="lower center",
        ncol=5,
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_block_size(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for ds in result["setup"]["datasets"]:
        rows = sorted(
            (r for r in result["rows"] if r["dataset"] == ds and r["policy"] == "paged"),
            key=lambda r: r["block_size"],
        )
        xs = [r["block_size"] for r in rows]
        ax1.plot(
            xs, [100 * (1 - r["token_states"]) for r in rows], marker="o", label=f"{ds}: not token states"
        )
        ax1.plot(
            xs,
            [100 * (r["reserved"] + r["internal"] + r["external"]) for r in rows],
            marker="s",
            ls="--",
            label=f"{ds}: waste inside blocks",
        )
        ax2.plot(xs, [r["mean_batched_requests"] for r in rows], marker="o", label=ds)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("block size (tokens)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("% of KV-cache memory")
    ax1.set_title("memory waste vs block size (paged)")
    ax2.set_ylabel("mean batched requests")
    ax2.set_title("batch size vs block size (paged)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
