"""The only place that times anything.

On a GPU: CUDA events around each sample, the L2 flushed before each sample by writing a buffer
twice the L2's size (cold cache), warm-up first, then samples in rounds until the 95% confidence
interval of the median is within the target, or a sample or time cap is hit; the stop reason is
kept with the raw samples. Optional CUDA-graph mode times graph replays of the callable.
On a CPU the same loop times with the host's performance counter.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench import cpu_memory
from attnbench.config import TimingPolicy

ROUND = 10  # samples per round between stop checks


@dataclass
class Timing:
    samples_ms: list[float]
    stop_reason: str
    warmup_calls: int
    timer: str
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        s = sorted(self.samples_ms)
        lo, hi = median_ci(s)
        return {
            "latency_ms_p50": statistics.median(s),
            "latency_ms_p10": quantile(s, 0.10),
            "latency_ms_p90": quantile(s, 0.90),
            "latency_ms_mean": statistics.fmean(s),
            "latency_ms_min": s[0],
            "latency_ms_ci_low": lo,
            "latency_ms_ci_high": hi,
            "n_samples": len(s),
            "samples_ms": [round(x, 6) for x in self.samples_ms],
            "stop_reason": self.stop_reason,
            "warmup_calls": self.warmup_calls,
            "timer": self.timer,
            **self.extra,
        }


def quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_ci(sorted_values: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% CI of the median from order statistics.

    The number of samples below the median is Binomial(n, 1/2); its normal approximation puts the
    interval's ranks at n/2 -+ z * sqrt(n) / 2.
    """
    n = len(sorted_values)
    if n < 3:
        return sorted_values[0], sorted_values[-1]
    half = z * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return sorted_values[lo], sorted_values[hi]


def rel_ci_halfwidth(samples: list[float]) -> float:
    s = sorted(samples)
    lo, hi = median_ci(s)
    med = statistics.median(s)
    return (hi - lo) / 2 / med if med > 0 else math.inf


class L2Flusher:
    """Writes a buffer of twice the L2's size so every sample starts with a cold L2."""

    def __init__(self, device: torch.device) -> None:
        props = torch.cuda.get_device_properties(device)
        l2 = getattr(props, "L2_cache_size", 0) or 64 << 20
        self.buffer = torch.empty(2 * l2, dtype=torch.int8, device=device)

    def __call__(self) -> None:
        self.buffer.fill_(1)


def time_callable(fn: Callable[[], Any], device: torch.device, policy: TimingPolicy) -> Timing:
    if device.type == "cuda":
        return _time_cuda(fn, device, policy)
    return _time_host(fn, policy)


def _stop(samples: list[float], started: float, policy: TimingPolicy) -> str | None:
    n = len(samples)
    if n >= policy.max_samples:
        return "max-samples"
    if time.perf_counter() - started > policy.max_time_s:
        return "time-cap"
    if n >= policy.min_samples and rel_ci_halfwidth(samples) <= policy.target_rel_ci:
        return "ci-target"
    return None


def _warmup(fn: Callable[[], Any], policy: TimingPolicy, sync: Callable[[], None]) -> int:
    calls = 0
    start = time.perf_counter()
    while calls < policy.min_warmup_calls or (time.perf_counter() - start) * 1e3 < policy.warmup_ms:
        fn()
        sync()
        calls += 1
        if calls >= 1000:
            break
    return calls


def _time_host(fn: Callable[[], Any], policy: TimingPolicy) -> Timing:
    warm = _warmup(fn, policy, lambda: None)
    samples: list[float] = []
    started = time.perf_counter()
    while True:
        for _ in range(ROUND if policy.min_samples >= ROUND else 1):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
        reason = _stop(samples, started, policy)
        if reason:
            return Timing(samples, reason, warm, "host-perf-counter")


def _time_cuda(fn: Callable[[], Any], device: torch.device, policy: TimingPolicy) -> Timing:
    sync = torch.cuda.synchronize
    warm = _warmup(fn, policy, sync)
    target = fn
    extra: dict[str, Any] = {"cuda_graph": False}
    if policy.cuda_graph:
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            fn()  # one call on the side stream before capture, as torch advises
        torch.cuda.current_stream(device).wait_stream(stream)
        with torch.cuda.graph(graph):
            fn()
        target = graph.replay
        extra["cuda_graph"] = True
        target()
        sync()
    flush = L2Flusher(device) if policy.l2_flush else None
    extra["l2_flush"] = flush is not None
    samples: list[float] = []
    started = time.perf_counter()
    while True:
        events = [
            (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(ROUND)
        ]
        for start, end in events:
            if flush is not None:
                flush()
            start.record()
            target()
            end.record()
        sync()
        samples.extend(start.elapsed_time(end) for start, end in events)
        reason = _stop(samples, started, policy)
        if reason:
            return Timing(samples, reason, warm, "cuda-events", extra)


def measure_memory(fn: Callable[[], Any], device: torch.device) -> tuple[Any, dict[str, int | None]]:
    """Run fn once and return its output with peak and working memory.

    peak_mem_bytes: the allocator's peak during the call above what was allocated before it.
    working_mem_bytes: that peak minus the output's bytes, i.e. scratch (O(N^2) scores for naive,
    O(N) for flash). CPU: from the profiler's allocation events (attnbench.cpu_memory).
    """
    if device.type != "cuda":
        out, peak, working = cpu_memory.measure(fn)
        return out, {"peak_mem_bytes": peak, "working_mem_bytes": working}
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    out_bytes = _tensor_bytes(out)
    return out, {"peak_mem_bytes": peak, "working_mem_bytes": max(0, peak - out_bytes)}


def _tensor_bytes(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel() * out.element_size()
    if isinstance(out, (list, tuple)):
        return sum(_tensor_bytes(o) for o in out)
    return 0
