"""The memory section's windowed-cache lines: full vs sliding-window KV cache, from the study JSON's
`window` section (fragmentation_window.study_section). Absent or null: the study asked for no window."""

from __future__ import annotations

from typing import Any

from attnbench.report.table import num


def window_notes(study: dict[str, Any]) -> list[str]:
    """One note per dataset: blocks per request and requests per pool, full vs windowed, memory saved."""
    window = study.get("window")
    if not isinstance(window, dict) or not isinstance(window.get("datasets"), dict):
        return []
    parts = []
    for ds, d in window["datasets"].items():
        try:
            pk, rp = d["peak_blocks_per_request"], d["requests_per_pool"]
            own = d["own_peak_blocks_per_request"]
            parts.append(f"{ds}: {num(own['full'])} -> {num(own['windowed'])} blocks per request at its "
                         f"own peak, {num(pk['full'])} -> {num(pk['windowed'])} at the batch peak, "
                         f"{rp['full']:.0f} -> {rp['windowed']:.0f} requests per pool, "
                         f"{100 * float(d['peak_saved']):.1f}% of the peak memory saved")
        except (KeyError, TypeError, ValueError):
            parts.append(f"{ds}: the window entry is incomplete")
    return [f"Sliding window {window.get('window')} tokens (paged, block size {window.get('block_size')}, "
            f"pool {window.get('pool_blocks')} blocks; blocks out of the window freed), full -> windowed: "
            + "; ".join(parts) + "."]
