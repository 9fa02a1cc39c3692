"""The PyTorch profiler over a few timed calls: kernels launched, their share of the time, launch gaps.

Each call runs inside record_function("attnbench_call_<i>") and ends with a synchronize, so every
kernel belongs to exactly one call: the one whose window holds the kernel's launch (matched through
the trace's correlation ids). On a GPU the work is the device's kernels, copies and memsets; on a
CPU it is the top-level operators inside the call. The Chrome trace is saved per point and the
summary is computed from it, so what the row says can be checked in chrome://tracing or Perfetto.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attnbench.profile.ncu import short_name

CALL_PREFIX = "attnbench_call_"
GPU_WORK = ("kernel", "gpu_memcpy", "gpu_memset")
LAUNCH = ("cuda_runtime", "cuda_driver")
TOP_KERNELS = 20  # kernels listed per row (by total time); the trace has all of them


def record(fn: Callable[[], Any], device_type: str, calls: int, trace_path: Path,
           before_call: Callable[[], None] | None = None) -> None:
    """Run fn `calls` times under the profiler and save the Chrome trace.

    before_call (e.g. an L2 flush) runs outside the call windows, so its kernels are not counted.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    cuda = device_type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for i in range(calls):
            if before_call is not None:
                before_call()
            sync()
            with record_function(f"{CALL_PREFIX}{i}"):
                fn()
                sync()
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace_path))


def _complete(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("ph") == "X" and isinstance(e.get("ts"), (int, float))]


def _end(e: dict[str, Any]) -> float:
    return float(e["ts"]) + float(e.get("dur") or 0.0)


def _top_level(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operators not nested inside another one (their times do not double count)."""
    top, end = [], float("-inf")
    for e in sorted(ops, key=lambda e: (e["ts"], -(e.get("dur") or 0.0))):
        if e["ts"] >= end:
            top.append(e)
            end = _end(e)
    return top


def _calls_and_work(events: list[dict[str, Any]], device_type: str):
    windows = sorted((e for e in events if e.get("cat") == "user_annotation"
                      and str(e.get("name", "")).startswith(CALL_PREFIX)), key=lambda e: e["ts"])
    work: list[list[dict[str, Any]]] = [[] for _ in windows]

    def window_of(ts: float) -> int | None:
        for i, w in enumerate(windows):
            if w["ts"] <= ts <= _end(w):
                return i
        return None

    if device_type == "cuda":
        launches = {e.get("args", {}).get("correlation"): e["ts"] for e in events if e.get("cat") in LAUNCH}
        for e in events:
            if e.get("cat") in GPU_WORK:
                ts = launches.get(e.get("args", {}).get("correlation"), e["ts"])
                i = window_of(ts)
                if i is not None:
                    work[i].append(e)
    else:
        for i, w in enumerate(windows):
            inside = [e for e in events if e.get("cat") == "cpu_op" and e.get("tid") == w.get("tid")
                      and w["ts"] <= e["ts"] and _end(e) <= _end(w)]
            work[i] = _top_level(inside)
    return windows, work


def _call_stats(window: dict[str, Any], work: list[dict[str, Any]], device_type: str) -> dict[str, Any]:
    """Span (us), busy time (us, union of the work intervals) and the gaps between work items (us)."""
    work = sorted(work, key=lambda e: e["ts"])
    if not work:
        return {"span_us": float(window.get("dur") or 0.0), "busy_us": 0.0, "gaps_us": []}
    gaps, busy = [], 0.0
    start, end = work[0]["ts"], _end(work[0])
    cur_start, cur_end = start, end
    for e in work[1:]:
        if e["ts"] > cur_end:
            gaps.append(e["ts"] - cur_end)
            busy += cur_end - cur_start
            cur_start = e["ts"]
        cur_end = max(cur_end, _end(e))
        end = max(end, _end(e))
    busy += cur_end - cur_start
    # GPU: from the first kernel's start to the last one's end; CPU: the whole call window.
    span = end - start if device_type == "cuda" else float(window.get("dur") or 0.0)
    return {"span_us": span, "busy_us": busy, "gaps_us": gaps}


def summarize_trace(trace: dict[str, Any] | str | Path, device_type: str) -> dict[str, Any]:
    """Row fields (torch_*) of one point's trace."""
    data: dict[str, Any] = trace if isinstance(trace, dict) else json.loads(Path(trace).read_text())
    events = _complete(data.get("traceEvents", []))
    windows, work = _calls_and_work(events, device_type)
    if not windows:
        raise ValueError(f"the trace has no {CALL_PREFIX}* call windows")
    stats = [_call_stats(w, k, device_type) for w, k in zip(windows, work, strict=True)]
    n = len(windows)
    table: dict[str, dict[str, Any]] = {}
    for items in work:
        for e in items:
            name = short_name(str(e.get("name", "?")))
            t = table.setdefault(name, {"name": name, "launches": 0, "total_us": 0.0})
            t["launches"] += 1
            t["total_us"] += float(e.get("dur") or 0.0)
    total = sum(t["total_us"] for t in table.values())
    kernels = sorted(table.values(), key=lambda t: -t["total_us"])
    for t in kernels:
        t["per_call"] = t["launches"] / n
        t["mean_us"] = t["total_us"] / t["launches"]
        t["share"] = t["total_us"] / total if total else None
    gaps = [g for s in stats for g in s["gaps_us"]]
    span = sum(s["span_us"] for s in stats)
    busy = sum(s["busy_us"] for s in stats)
    return {
        "torch_calls": n,
        "torch_work": "gpu kernels" if device_type == "cuda" else "cpu operators",
        "torch_kernels_per_call": sum(len(k) for k in work) / n,
        "torch_distinct_kernels": len(kernels),
        "torch_busy_ms_per_call": busy / n / 1e3,
        "torch_span_ms": [s["span_us"] / 1e3 for s in stats],
        "torch_gap_us_mean": sum(gaps) / len(gaps) if gaps else 0.0,
        "torch_gap_us_max": max(gaps) if gaps else 0.0,
        "torch_idle_share": (span - busy) / span if span > 0 else None,
        "torch_main_kernel": kernels[0]["name"] if kernels else None,
        "torch_kernels": kernels[:TOP_KERNELS],
    }
