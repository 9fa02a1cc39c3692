"""The GPU timing method on a simulated device: held samples are device time, host cost is its own figure.

A fake stream (FakeGpu) stands in for CUDA: the host has a virtual clock that a call's launch cost
advances; every queued item (kernel, spin, event) starts on the device when both the device is free
and the host has queued it. That is exactly the model under which an unheld event pair times the host's
launch path and a held one does not, so the tests can check the method's logic without a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

from attnbench import measure, stream_hold
from attnbench.config.sweep_config import TimingPolicy, parse_config
from attnbench.thermal import is_compute_bound


@dataclass
class FakeGpu:
    host_us: float = 0.0
    device_free_us: float = 0.0
    log: list[str] = field(default_factory=list)

    def enqueue(self, duration_us: float) -> float:
        """Queue work; returns the device time at which it ends."""
        start = max(self.device_free_us, self.host_us)
        self.device_free_us = start + duration_us
        return self.device_free_us

    def sync(self, *_: object) -> None:
        self.host_us = max(self.host_us, self.device_free_us)


def install(monkeypatch, gpu: FakeGpu) -> None:
    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            self.t: float | None = None

        def record(self, *_: object) -> None:
            self.t = gpu.enqueue(0.0)

        def query(self) -> bool:
            return self.t is not None and self.t <= gpu.host_us

        def synchronize(self) -> None:
            gpu.sync()

        def elapsed_time(self, other: Event) -> float:
            assert self.t is not None and other.t is not None
            return (other.t - self.t) / 1e3

    class Clock:  # measure's `time` module: perf_counter reads the virtual host clock
        @staticmethod
        def perf_counter() -> float:
            gpu.host_us += 0.01  # reading a clock is not free
            return gpu.host_us / 1e6

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", gpu.sync)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: gpu.enqueue(cycles / 1000.0))
    monkeypatch.setattr(stream_hold, "spin_cycles_per_us", lambda device: 1000.0)
    monkeypatch.setattr(measure, "time", Clock)


def call(gpu: FakeGpu, launch_us: float, kernel_us: float, host_sync: bool = False):
    def fn() -> None:
        gpu.host_us += launch_us  # the host's launch path
        gpu.enqueue(kernel_us)
        if host_sync:
            gpu.sync()  # e.g. a .item() inside the call

    return fn


POLICY = TimingPolicy(l2_flush=False, warmup_ms=1.0, min_warmup_calls=2, min_samples=10, max_samples=40)
CUDA = torch.device("cuda", 0)


def test_held_samples_are_device_time_when_the_host_is_slower(monkeypatch) -> None:
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    t = measure.time_callable(call(gpu, launch_us=50.0, kernel_us=10.0), CUDA, POLICY).summary()
    assert t["timing_method"] == "cuda-events-held"
    assert t["latency_ms_p50"] == pytest.approx(0.010, rel=1e-6)  # the kernel alone
    assert t["call_ms_p50"] == pytest.approx(0.050, rel=0.01)  # the host's cost, its own figure
    assert t["launch_bound"] is True and t["exposed_samples"] == 0


def test_unheld_events_time_the_host_launch(monkeypatch) -> None:
    """Without the hold the same call reads as its launch cost: the bug the hold fixes."""
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    policy = TimingPolicy(**{**POLICY.__dict__, "hold": False})
    t = measure.time_callable(call(gpu, launch_us=50.0, kernel_us=10.0), CUDA, policy).summary()
    assert t["timing_method"] == "cuda-events"
    assert t["latency_ms_p50"] > 0.045


def test_device_bound_call_is_not_launch_bound(monkeypatch) -> None:
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    t = measure.time_callable(call(gpu, launch_us=5.0, kernel_us=300.0), CUDA, POLICY).summary()
    assert t["latency_ms_p50"] == pytest.approx(0.300, rel=1e-6)
    assert t["launch_bound"] is False


def test_a_call_that_waits_for_the_device_falls_back_with_the_reason(monkeypatch) -> None:
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    t = measure.time_callable(call(gpu, 20.0, 10.0, host_sync=True), CUDA, POLICY).summary()
    assert t["timing_method"] == "cuda-events"
    assert "waits for the device" in t["timing_fallback"]
    assert t["n_samples"] >= POLICY.min_samples and t["exposed_samples"] > 0


def test_hold_grows_after_an_exposed_sample(monkeypatch) -> None:
    """A host hiccup longer than the hold exposes a sample: it is dropped, and the hold doubles."""
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    holds = {"n": 0}
    spin = torch.cuda._sleep

    def counted_spin(cycles: int) -> None:
        holds["n"] += 1
        spin(cycles)

    monkeypatch.setattr(torch.cuda, "_sleep", counted_spin)

    def fn() -> None:
        gpu.host_us += 600.0 if holds["n"] == 1 else 10.0  # the first held sample's launch is slow
        gpu.enqueue(20.0)

    t = measure.time_callable(fn, CUDA, POLICY).summary()
    assert t["timing_method"] == "cuda-events-held"
    assert t["exposed_samples"] >= 1 and t["hold_us"] > 50.0
    assert t["latency_ms_p50"] == pytest.approx(0.020, rel=1e-6)


def test_compute_bound_points_take_a_fixed_count_after_settling(monkeypatch) -> None:
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    monkeypatch.setattr(measure, "settle", lambda *a, **k: _Settled())
    policy = TimingPolicy(**{**POLICY.__dict__, "thermal_samples": 25})
    t = measure.time_callable(call(gpu, 5.0, 100.0), CUDA, policy, compute_bound=True).summary()
    assert t["stop_reason"] == "fixed-samples" and t["n_samples"] == 25
    assert t["sm_clock_mhz_settled"] == 1755.0


class _Settled:
    def fields(self) -> dict[str, object]:
        return {"thermal_settled": True, "sm_clock_mhz_settled": 1755.0, "energy_j_per_call": 0.5}


def test_compute_bound_is_intensity_above_the_ridge() -> None:
    cal = {"matmul_tflops": 780.0, "copy_gbps": 4200.0}  # ridge ~186 FLOP/byte
    assert is_compute_bound(1e12, 1e9, cal)  # 1000 FLOP/byte: prefill
    assert not is_compute_bound(1e9, 1e9, cal)  # 1 FLOP/byte: decode
    assert not is_compute_bound(1e12, 1e9, {})  # no calibration (CPU): never


def test_cpu_rows_name_the_host_clock() -> None:
    t = measure.time_callable(lambda: math.sqrt(2.0), torch.device("cpu"), TimingPolicy.for_device("cpu"))
    s = t.summary()
    assert s["timing_method"] == "host-perf-counter" and s["launch_bound"] is None


def test_timing_method_is_validated_in_configs() -> None:
    base = ("name: t\nworkloads:\n  - {name: w, phase: decode, batch: [1], lengths: ['fixed:16'],"
            " q_heads: [4], kv_heads: [4], head_dim: [64], dtype: [fp32], causal: [false]}\n")
    cfg = parse_config(base + "timing: {method: cupti}\n", "x.yaml")
    assert cfg.timing_policy("cuda").method == "cupti"
    with pytest.raises(Exception, match="events or cupti"):
        parse_config(base + "timing: {method: nvbench}\n", "x.yaml")


def test_samples_rotate_over_input_copies(monkeypatch) -> None:
    """Two copies of the inputs whose kernels take 10 and 30 us (other placements): the samples
    alternate between them, so the median is the copies' joint one, not the first copy's."""
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    fns = [call(gpu, 5.0, 10.0), call(gpu, 5.0, 30.0)]
    t = measure.time_callable(fns, CUDA, POLICY)
    s = t.summary()
    assert s["input_copies"] == 2
    assert sorted(set(round(x * 1e3) for x in t.samples_ms)) == [10, 30]
    assert abs(t.samples_ms.count(t.samples_ms[0]) - len(t.samples_ms) / 2) <= 1


def test_compute_bound_points_settle_under_the_sampling_loop(monkeypatch) -> None:
    """A kernel that speeds up over its first 40 calls (a clock recovering from a hotter phase) and is
    steady after: settling on the held samples themselves leaves only steady samples to keep."""
    from attnbench import thermal

    gpu = FakeGpu()
    install(monkeypatch, gpu)
    monkeypatch.setattr(thermal, "time", measure.time)  # the virtual host clock
    monkeypatch.setattr(thermal, "_Nvml", lambda index: (_ for _ in ()).throw(RuntimeError("no NVML")))
    monkeypatch.setattr(thermal, "WINDOW_S", 0.0005)
    monkeypatch.setattr(thermal, "MIN_WARM_S", 0.0)
    n = {"calls": 0}

    def fn() -> None:
        n["calls"] += 1
        gpu.host_us += 5.0
        gpu.enqueue(100.0 * (1.3 if n["calls"] < 40 else 1.0))

    policy = TimingPolicy(**{**POLICY.__dict__, "thermal_samples": 20})
    t = measure.time_callable(fn, CUDA, policy, compute_bound=True).summary()
    assert t["thermal_settled"] is True and t["thermal_warmup_rounds"] >= 3
    assert t["n_samples"] == 20 and max(t["samples_ms"]) == pytest.approx(0.100, rel=1e-6)


def test_l2_flush_writes_then_reads_twice_the_l2(monkeypatch) -> None:
    """A read alone left an H200's decode medians on one of two levels (inputs that every sample
    reads survived it); the flush must write every byte of a buffer >= 2x the L2, then read it."""

    class Props:
        L2_cache_size = 1 << 20

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props())
    fives = lambda lo, hi, shape, dtype, device: torch.full(shape, 5, dtype=dtype)  # noqa: E731
    monkeypatch.setattr(torch, "randint", fives)
    flusher = stream_hold.L2Flusher(torch.device("cpu"))
    assert flusher.buffer.numel() * flusher.buffer.element_size() >= 2 * Props.L2_cache_size
    ops: list[str] = []
    buffer = flusher.buffer

    class Logged:
        def fill_(self, value: int) -> None:
            ops.append("write")
            buffer.fill_(value)

        def sum(self, dtype: torch.dtype) -> torch.Tensor:
            ops.append("read")
            return buffer.sum(dtype=dtype)

    flusher.buffer = Logged()  # type: ignore[assignment]
    flusher()
    assert ops == ["write", "read"]
    assert bool((buffer != 5).all()), "every byte of the buffer is written"


def test_only_the_first_input_copy_warms_up_for_warmup_ms(monkeypatch) -> None:
    """The copies run the first callable's kernels: each gets min_warmup_calls, not warmup_ms."""
    gpu = FakeGpu()
    install(monkeypatch, gpu)
    counts = [0, 0, 0]

    def counted(i: int):
        inner = call(gpu, 5.0, 10.0)

        def fn() -> None:
            counts[i] += 1
            inner()

        return fn

    policy = TimingPolicy(l2_flush=False, warmup_ms=5.0, min_warmup_calls=2, min_samples=10, max_samples=12)
    t = measure.time_callable([counted(0), counted(1), counted(2)], CUDA, policy)
    per_copy_samples = len(t.samples_ms) // 3 + 1
    # the first: 5 ms of 10-us calls (hundreds) plus host timing; the others: 2 warm-up calls + samples
    assert counts[0] > 100
    assert counts[1] <= 2 + per_copy_samples + 1 and counts[2] <= 2 + per_copy_samples + 1
    assert t.warmup_calls > 100
