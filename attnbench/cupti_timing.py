"""The `cupti` timing method: the device kernels' own durations, as CUPTI records them (torch.profiler).

An independent clock for the event-based method: each call runs inside a named profiler range with the
L2 flushed and the device idle before it; the durations of every kernel launched inside the range are
summed (the range's device time in torch.profiler, children included). Gaps between a call's kernels
are not counted, so for a multi-kernel call this reads slightly under the event-to-event time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

RANGE_PREFIX = "attnbench_call_"


def kernel_ms_per_call(
    fn: Callable[[], Any], calls: int, flush: Callable[[], None] | None = None
) -> list[float]:
    """Per call, the summed durations (ms) of the device kernels it launched."""
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
    per_call = [0.0] * calls
    for evt in prof.events():
        if evt.name.startswith(RANGE_PREFIX):
            per_call[int(evt.name[len(RANGE_PREFIX):])] += evt.device_time_total / 1e3  # us -> ms
    if not any(per_call):
        raise RuntimeError("the profiler attributed no device kernels to the calls (CUPTI not available?)")
    return per_call
