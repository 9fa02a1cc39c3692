"""The windowed-cache part of fragmentation.md and its figure, from the study JSON's `window` section
(fragmentation_window.study_section): blocks held per request, requests a pool fits, memory saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def markdown_lines(window: dict[str, Any] | None) -> list[str]:
    """The '## Sliding window' section; [] when the study asked for no window."""
    if not window:
        return []
    w, bs = window["window"], window["block_size"]
    lines = [
        "", f"## Sliding window {w} tokens (paged, block size {bs})", "",
        f"Each dataset's requests decode to their end as one batch through the KV-cache manager, once "
        f"keeping every block (full) and once returning blocks wholly out of the {w}-token window "
        f"(windowed). Own peak: the most blocks a request holds at once, averaged over requests. At batch "
        "peak: the batch's most blocks held / its requests. Requests per pool: the KV capacity "
        f"({window['pool_blocks']:,} blocks) / blocks per request at the batch peak. A prompt's "
        "out-of-window blocks are freed right after its prefill (the prefill's own transient is not "
        "counted).", "",
        "| dataset | requests | longest (tokens) | own peak blocks/request full | windowed "
        "| blocks/request at batch peak full | windowed | requests per pool full | windowed "
        "| memory saved at peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, d in window["datasets"].items():
        pk, rp, own = d["peak_blocks_per_request"], d["requests_per_pool"], d["own_peak_blocks_per_request"]
        lines.append(
            f"| {ds} | {d['requests']} | {d['longest_request_tokens']} "
            f"| {own['full']:.1f} | {own['windowed']:.1f} | {pk['full']:.1f} "
            f"| {pk['windowed']:.1f} | {rp['full']:.0f} | {rp['windowed']:.0f} "
            f"| {100 * d['peak_saved']:.1f}% "
            f"({d['peak_bytes_saved_per_request'] / 2**20:.1f} MiB per request) |")
    short = [ds for ds, d in window["datasets"].items() if d["longest_request_tokens"] <= w + 1]
    if short:
        lines += ["", f"No request of {', '.join(short)} is longer than the window: nothing falls out, "
                  "so the windowed cache holds as much as the full one there."]
    return lines


def plot_window(result: dict[str, Any], path: Path) -> None:
    """Peak blocks per request and requests per pool, full vs windowed, per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = result["window"]
    names = list(window["datasets"])
    xs = range(len(names))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, ylabel in ((ax1, "peak_blocks_per_request", "KV blocks per request (batch peak)"),
                            (ax2, "requests_per_pool", "requests that fit the KV pool")):
        for shift, variant, color in ((-0.2, "full", "#888888"), (0.2, "windowed", "#1f77b4")):
            vals = [window["datasets"][ds][key][variant] for ds in names]
            bars = ax.bar([x + shift for x in xs], vals, width=0.4, color=color,
                          label=variant if variant == "full" else f"window {window['window']}")
            ax.bar_label(bars, fmt="%.1f" if key.startswith("peak") else "%.0f", fontsize=8)
        ax.set_xticks(list(xs), names)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_title(f"blocks held (block size {window['block_size']})")
    ax2.set_title(f"pool of {window['pool_blocks']:,} blocks")
    fig.suptitle(f"{result['setup']['model']}: full vs sliding-window KV cache")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
