from __future__ import annotations

import statistics
import time

import torch

from attnbench.config.sweep_config import TimingPolicy
from attnbench.measure import median_ci, quantile, rel_ci_halfwidth, time_callable


def test_median_ci_brackets_the_median():
    values = sorted(float(x) for x in range(1, 101))
    lo, hi = median_ci(values)
    assert lo < statistics.median(values) < hi
    # ranks n/2 -+ 1.96 sqrt(n)/2 = 50 -+ 9.8
    assert (lo, hi) == (41.0, 60.0)


def test_quantile_interpolates():
    assert quantile([0.0, 10.0], 0.5) == 5.0
    assert quantile([1.0, 2.0, 3.0], 0.0) == 1.0


def test_rel_ci_shrinks_with_more_samples():
    rng = torch.Generator().manual_seed(0)
    small = (1 + 0.05 * torch.randn(20, generator=rng)).tolist()
    large = (1 + 0.05 * torch.randn(2000, generator=rng)).tolist()
    assert rel_ci_halfwidth(large) < rel_ci_halfwidth(small)


def test_host_timer_stops_with_a_reason_and_keeps_raw_samples():
    policy = TimingPolicy.for_device("cpu")
    t = time_callable(lambda: time.sleep(0.002), torch.device("cpu"), policy)
    s = t.summary()
    assert s["stop_reason"] in ("ci-target", "max-samples", "time-cap")
    assert len(s["samples_ms"]) == s["n_samples"] >= policy.min_samples
    assert all(x >= 2.0 for x in s["samples_ms"])
    assert s["latency_ms_ci_low"] <= s["latency_ms_p50"] <= s["latency_ms_ci_high"]
    assert s["timer"] == "host-perf-counter"


def test_time_cap_is_respected():
    policy = TimingPolicy(
        warmup_ms=0,
        min_warmup_calls=1,
        min_samples=1000,
        max_samples=10_000,
        target_rel_ci=1e-9,
        max_time_s=0.2,
        l2_flush=False,
    )
    start = time.perf_counter()
    t = time_callable(lambda: time.sleep(0.001), torch.device("cpu"), policy)
    assert t.stop_reason == "time-cap"
    assert time.perf_counter() - start < 1.0
