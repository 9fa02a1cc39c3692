"""The device's time for one launch, for the tuner (kernels/triton/tuning.py) to rank tiles by.

Why not `triton.testing.do_bench`: it queues calls back to back between two events, so for a kernel
shorter than its host launch path (decode at short contexts: ~15-25 us of kernel, as much of Python
launch) it times the host, and tiles that differ by 40% on the GPU read alike. On an H200 the tuner
picked a 32-token tile for decode B16 context 512 that runs 25 us (CUPTI) where the 128-token tile
runs 15 us (scripts/gpu_timing_check.py, results/baselines/timing-check-h200/session3). Here each
sample is queued behind a spin kernel long enough for the host to queue the launch and its end event
(the harness's method, attnbench.stream_hold, written again: this package does not import the
harness, and the harness must not call into the kernels, which the A/B gate swaps per version),
after an L2 flush (a buffer of twice the L2 written then read), so tiles are ranked by the
cold-cache device time the harness will measure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import cache
from typing import Any

SAMPLES = 25
HOLD_SLACK_US = 50.0  # room for the two event records beside the launch


@cache
def _spin_cycles_per_us(device_index: int) -> float:
    """Clock cycles torch.cuda._sleep counts per microsecond on this GPU."""
    import torch

    cycles = 2_000_000
    torch.cuda._sleep(cycles // 10)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    torch.cuda._sleep(cycles)
    end.record()
    end.synchronize()
    return cycles / max(start.elapsed_time(end) * 1e3, 1e-3)


def _flush_buffer(device_index: int) -> Any:
    """Twice the L2, allocated per tuning call and freed after it (as do_bench does), so the tuner
    holds no memory while the harness measures a point's."""
    import torch

    l2 = getattr(torch.cuda.get_device_properties(device_index), "L2_cache_size", 0) or 64 << 20
    return torch.empty(2 * l2 // 4, dtype=torch.int32, device=f"cuda:{device_index}")


def held_device_ms(fn: Callable[[], Any], samples: int = SAMPLES) -> float:
    """Median device time (ms) of fn's launches, each held behind a spin, L2 flushed before it."""
    import torch

    index = torch.cuda.current_device()
    flush = _flush_buffer(index)
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    host_us = 0.0
    for _ in range(5):  # the slowest of five launches: one slow launch must not outlast the spin
        t0 = time.perf_counter()
        fn()
        host_us = max(host_us, (time.perf_counter() - t0) * 1e6)
        torch.cuda.synchronize()
    # three times the host's launch time: the spin must outlast the queueing of the sample (an
    # exposed sample or two would read high, and the median of SAMPLES keeps them out)
    hold_cycles = max(1, int((3.0 * host_us + HOLD_SLACK_US) * _spin_cycles_per_us(index)))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(samples)]
    for start, end in events:
        flush.fill_(1)
        flush.sum(dtype=torch.int64)
        torch.cuda._sleep(hold_cycles)
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events)
