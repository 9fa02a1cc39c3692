"""The `cupti` timing method: the device kernels' own durations, as CUPTI records them (torch.profiler).

An independent clock for the event-based method: each call runs inside a named profiler range with the
L2 flushed and the device idle before it; the durations of every kernel launched inside the range are
summed (the range's device time in torch.profiler, children included). Gaps between a call's kernels
are not counted, and kernels that overlap are counted twice; the span (first kernel's start to last
kernel's end, launches matched to calls by correlation id) is the device's wall time for the call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

RANGE_PREFIX = "attnbench_call_"


@dataclass(frozen=True)
class CallKernels:
    """One profiled call's device kernels."""

    sum_ms: float  # summed kernel durations
    span_ms: float | None  # first kernel's start to last kernel's end (None: launches not matched)
    kernels: int


def profile_calls(
    fn: Callable[[], Any], calls: int, flush: Callable[[], None] | None = None
) -> list[CallKernels]:
    """Per call: its kernels' summed durations, their span on the device and how many there were."""
    from torch.profiler import ProfilerActivity, profile, record_function

    sync = torch.cuda.synchronize
    fn()
    sync()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(calls):
            if flush is not None:
                flush()
            sync()
            with record_function(f"{RANGE_PREFIX}{i}"):
                fn()
            sync()
    sums = [0.0] * calls
    for evt in prof.events():
        if evt.name.startswith(RANGE_PREFIX):
            sums[int(evt.name[len(RANGE_PREFIX):])] = evt.device_time_total / 1e3  # us, children included
    if not any(sums):
        raise RuntimeError("the profiler attributed no device kernels to the calls (CUPTI not available?)")
    spans = _spans(prof, calls)
    return [CallKernels(sums[i], *spans.get(i, (None, 0))) for i in range(calls)]


def _spans(prof: Any, calls: int) -> dict[int, tuple[float, int]]:
    """Map each GPU kernel to the call whose range holds its launch (runtime/driver API event, matched
    by correlation id), and take first start to last end per call."""
    try:
        events = list(prof.profiler.kineto_results.events())
    except Exception:  # noqa: BLE001 - an older profiler: spans are not available
        return {}
    ranges = []
    for e in events:
        if e.name().startswith(RANGE_PREFIX):
            ranges.append((e.start_ns(), e.start_ns() + e.duration_ns(), int(e.name()[len(RANGE_PREFIX):])))
    launches = {e.correlation_id(): e.start_ns() for e in events
                if str(e.device_type()).endswith("CPU") and e.name().startswith(("cuda", "cu"))
                and "Launch" in e.name()}
    per_call: dict[int, list[tuple[int, int]]] = {}
    for e in events:
        if not str(e.device_type()).endswith("CUDA") or e.linked_correlation_id() not in launches:
            continue
        t = launches[e.linked_correlation_id()]
        for lo, hi, idx in ranges:
            if lo <= t <= hi:
                per_call.setdefault(idx, []).append((e.start_ns(), e.start_ns() + e.duration_ns()))
                break
    return {i: ((max(b for _, b in ks) - min(a for a, _ in ks)) / 1e6, len(ks)) for i, ks in per_call.items()}


def kernel_ms_per_call(
    fn: Callable[[], Any], calls: int, flush: Callable[[], None] | None = None
) -> list[float]:
    """Per call, the summed durations (ms) of the device kernels it launched."""
    return [c.sum_ms for c in profile_calls(fn, calls, flush)]
