"""The only place that times anything.

On a GPU a sample is the device's time for the work: the L2 flushed (a buffer of twice its size
written, then read) outside the window, the stream held by a spin kernel until the sample's start
event, launches and end event are queued (attnbench.stream_hold), so no host launch cost enters the
interval between the two events. The host's own cost per eager call is measured separately
(`call_ms_p50`) and a point whose host call is slower than its device time is `launch_bound`.
Compute-bound points first run until the SM clock has settled and then take a fixed number of
samples (attnbench.thermal); others sample in rounds until the 95% confidence interval of the median
is within the target, or a sample or time cap is hit; a short point (median below
TimingPolicy.short_point_ms) samples for at least short_min_time_s, so its median spans the drift of
a second rather than one moment's. A backend whose call waits for the device (a host sync inside it)
cannot be held: it falls back to unheld events, and the row says so (`timing_method`,
`timing_fallback`). CUDA-graph replay and CUPTI kernel durations (attnbench.cupti_timing) are
alternative methods. On a CPU the same loop times with the host's performance counter.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from attnbench import cpu_memory
from attnbench.config.sweep_config import TimingPolicy
from attnbench.cupti_timing import kernel_ms_per_call
from attnbench.stream_hold import FLUSH_KIND, L2Flusher, StreamHold
from attnbench.thermal import energy_per_call, settle

ROUND = 10  # samples per round between stop checks
# A row keeps at most this many samples (an even stride of them beyond it, in the order taken): a
# short point samples for a second (TimingPolicy.short_min_time_s), tens of thousands of samples that
# would make results.jsonl tens of MB. The statistics use every sample.
KEPT_SAMPLES = 2000
HOST_CALLS = 20  # eager calls timed on the host for call_ms
CUPTI_CALLS = 50  # profiled calls for the cupti method


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
            "samples_ms": [round(x, 6) for x in kept_samples(self.samples_ms)],
            "stop_reason": self.stop_reason,
            "warmup_calls": self.warmup_calls,
            "timer": self.timer,
            **self.extra,
            **self.launch_bound_fields(statistics.median(s)),
        }

    def launch_bound_fields(self, device_ms: float) -> dict[str, Any]:
        """launch_bound: an eager loop of this call is paced by the host, not the device."""
        call = self.extra.get("call_ms_p50")
        return {"launch_bound": None if call is None else call > device_ms}


def kept_samples(samples: list[float], keep: int = KEPT_SAMPLES) -> list[float]:
    """At most `keep` samples in the order taken: all of them, or every k-th (k = ceil(n / keep))."""
    if len(samples) <= keep:
        return list(samples)
    return samples[:: math.ceil(len(samples) / keep)]


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


def time_callable(
    fn: Callable[[], Any] | list[Callable[[], Any]] | tuple[Callable[[], Any], ...],
    device: torch.device,
    policy: TimingPolicy,
    compute_bound: bool = False,
    nvml_index: int | None = None,
) -> Timing:
    """Time fn on its device. compute_bound: use the thermal protocol (NVML index for its clock).
    fn may be several callables doing the same work on copies of the inputs: GPU samples rotate over
    them (held events only; the host clock and CUPTI time the first)."""
    if device.type != "cuda":
        return _time_host(fn[0] if isinstance(fn, (list, tuple)) else fn, policy)
    if policy.method == "cupti":
        return _time_cupti(fn[0] if isinstance(fn, (list, tuple)) else fn, device, policy)
    return _time_cuda(fn, device, policy, compute_bound, nvml_index)


def _stop(
    samples: list[float], started: float, policy: TimingPolicy, fixed: int | None = None, short: bool = False,
) -> str | None:
    """Why sampling stops now, or None. short: the point is short (is_short), so it samples for at
    least short_min_time_s and its time and sample caps rise to meet that."""
    n = len(samples)
    min_time_s, max_time_s, max_samples = policy.min_time_s, policy.max_time_s, policy.max_samples
    if short:
        min_time_s = max(min_time_s, policy.short_min_time_s)
        max_time_s = max(max_time_s, 1.5 * policy.short_min_time_s)  # room to meet the CI after the floor
        max_samples = max(max_samples, policy.short_max_samples)
    if fixed is not None and n >= fixed:
        return "fixed-samples"
    if n >= max_samples:
        return "max-samples"
    elapsed = time.perf_counter() - started
    if elapsed > max_time_s:
        return "time-cap"
    # rel_ci_halfwidth sorts every sample: evaluated only once the time floor is met
    if (fixed is None and n >= policy.min_samples and elapsed >= min_time_s
            and rel_ci_halfwidth(samples) <= policy.target_rel_ci):
        return "ci-target"
    return None


def is_short(samples: list[float], policy: TimingPolicy) -> bool | None:
    """Whether a point is short (median below short_point_ms), decided once min_samples are in; None
    before that."""
    if len(samples) < policy.min_samples:
        return None
    return policy.short_point_ms > 0 and statistics.median(samples) < policy.short_point_ms


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


def host_call_ms(fn: Callable[[], Any], sync: Callable[[], None], calls: int = HOST_CALLS) -> list[float]:
    """The host's wall time inside each eager call (launch path; a host sync inside fn counts too)."""
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
        sync()
    return out


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
            return Timing(samples, reason, warm, "host-perf-counter", {"timing_method": "host-perf-counter"})


def _graph_of(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        fn()  # one call on the side stream before capture, as torch advises
    torch.cuda.current_stream(device).wait_stream(stream)
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    torch.cuda.synchronize(device)
    return graph.replay


def _time_cuda(
    fn: Callable[[], Any] | list[Callable[[], Any]] | tuple[Callable[[], Any], ...], device: torch.device,
    policy: TimingPolicy, compute_bound: bool, nvml_index: int | None,
) -> Timing:
    sync = torch.cuda.synchronize
    fns = list(fn) if isinstance(fn, (list, tuple)) else [fn]
    # The first callable warms up for warmup_ms (clocks, lazy set-up); the copies run the same kernels
    # and only need their own first calls: warmup_ms each cost six copies 0.15 s a point, ~90 s of a
    # 668-point study.
    warm = _warmup(fns[0], policy, sync)
    copy_policy = replace(policy, warmup_ms=0.0)
    warm += sum(_warmup(f, copy_policy, sync) for f in fns[1:])
    calls = sorted(host_call_ms(fns[0], sync))
    extra: dict[str, Any] = {
        "cuda_graph": policy.cuda_graph,
        "call_ms_p50": statistics.median(calls),
        "call_ms_p90": quantile(calls, 0.9),
        "input_copies": len(fns),
    }
    targets = [_graph_of(f, device) for f in fns] if policy.cuda_graph else fns
    flush = L2Flusher(device) if policy.l2_flush else None
    extra["l2_flush"] = flush is not None
    if flush is not None:
        extra["l2_flush_kind"] = FLUSH_KIND
    target_calls = sorted(host_call_ms(targets[0], sync)) if policy.cuda_graph else calls
    sampler = _HeldSampler(targets, flush, device, quantile(target_calls, 0.9) if policy.hold else None)
    fixed = None
    if compute_bound and policy.thermal:
        # Settle under the very loop that samples (flush, hold, call): back-to-back calls run hotter
        # than held samples, so a clock settled that way drifts back up while the samples are taken.
        extra.update(settle(sampler.round, nvml_index or 0, policy.thermal_max_s).fields())
        fixed = min(policy.thermal_samples, policy.max_samples)
    samples: list[float] = []
    short: bool | None = False if fixed is not None else None  # compute-bound points take a fixed count
    started = time.perf_counter()
    while True:
        samples += sampler.round()
        if sampler.fell_back:
            extra["timing_fallback"] = sampler.fell_back
            samples, sampler.fell_back = [], ""
            started = time.perf_counter()
            continue
        if short is None:
            short = is_short(samples, policy)
        reason = _stop(samples, started, policy, fixed, bool(short))
        if reason:
            samples = samples[:fixed] if fixed is not None else samples  # rounds overshoot the count
            hold = sampler.hold
            method = ("cuda-graph" if policy.cuda_graph else "cuda-events") + ("-held" if hold else "")
            extra.update(timing_method=method, exposed_samples=sampler.exposed,
                         hold_us=round(hold.hold_us, 1) if hold else None, short_point=bool(short),
                         sample_span_s=round(time.perf_counter() - started, 4))
            if fixed is not None:
                extra["energy_j_per_call"] = energy_per_call(fns[0], sync, nvml_index or 0)
            return Timing(samples, reason, warm, "cuda-events", extra)


class _HeldSampler:
    """Rounds of ROUND samples: each sample flushes the L2, holds the stream (when a hold is used),
    then times one call between events. Calls rotate over the targets (copies of the inputs at other
    addresses: a launch-bound kernel's time depends on where its inputs lie by a few percent, and the
    rotation averages that out, so the median moves less from one process to the next)."""

    def __init__(
        self, targets: list[Callable[[], Any]], flush: L2Flusher | None, device: torch.device,
        host_p90_ms: float | None,
    ) -> None:
        self.targets = targets
        self.flush = flush
        self.hold = StreamHold(device, host_p90_ms) if host_p90_ms is not None else None
        self.host_p90_us = (host_p90_ms or 0.0) * 1e3
        self.exposed = 0
        self.fell_back = ""  # set (once) when the hold is given up; the caller restarts its samples
        self._next = 0

    def round(self) -> list[float]:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(ROUND)]
        held = []
        for start, end in events:
            target = self.targets[self._next % len(self.targets)]
            self._next += 1
            if self.flush is not None:
                self.flush()
            if self.hold is not None:
                self.hold.hold()
            start.record()
            target()
            end.record()
            held.append(self.hold is None or not self.hold.was_exposed())
        torch.cuda.synchronize()
        out = []
        for (start, end), ok in zip(events, held, strict=True):
            if ok:
                out.append(start.elapsed_time(end))
            else:
                self.exposed += 1
        # An exposed sample: the spin ended before the host had queued it. A hold of 20x the host's slow
        # call that still cannot cover it means the call waits for the device (a sync inside it).
        hold = self.hold
        if hold is not None and not all(held) and (
            not hold.lengthen() or hold.hold_us > 20 * self.host_p90_us + 1000
        ):
            self.fell_back = (
                f"cannot hold the stream: {self.exposed} samples exposed with a {hold.hold_us:.0f} us hold "
                "(the call waits for the device); timed with unheld events, host launch included"
            )
            self.hold = None
        return out


def _time_cupti(fn: Callable[[], Any], device: torch.device, policy: TimingPolicy) -> Timing:
    sync = torch.cuda.synchronize
    warm = _warmup(fn, policy, sync)
    calls = sorted(host_call_ms(fn, sync))
    flush = L2Flusher(device) if policy.l2_flush else None
    n = max(policy.min_samples, min(policy.max_samples, CUPTI_CALLS))
    samples = kernel_ms_per_call(fn, n, flush)
    extra = {"timing_method": "cupti", "l2_flush": flush is not None, "cuda_graph": False,
             "call_ms_p50": statistics.median(calls), "call_ms_p90": quantile(calls, 0.9)}
    return Timing(samples, "fixed-samples", warm, "cupti", extra)


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
