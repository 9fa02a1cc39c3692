from __future__ import annotations

import random
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


def test_short_points_sample_for_the_short_time_floor():
    """A short point may not stop on its CI before short_min_time_s, and its caps rise to meet it;
    a point that is not short stops on the ordinary rules."""
    from attnbench.measure import _stop

    policy = TimingPolicy(min_samples=10, max_samples=500, min_time_s=0.1, max_time_s=0.6,
                          target_rel_ci=0.01, short_min_time_s=1.0, short_max_samples=50000)
    tight = [0.02] * 600  # zero spread: the CI target is met at once
    now = time.perf_counter()
    assert _stop(tight[:100], now - 0.2, policy) == "ci-target"
    assert _stop(tight[:100], now - 0.2, policy, short=True) is None  # 0.2 s < the 1 s floor
    assert _stop(tight, now - 0.2, policy) == "max-samples"
    assert _stop(tight, now - 0.2, policy, short=True) is None  # 600 < short_max_samples
    assert _stop(tight[:100], now - 0.8, policy) == "time-cap"
    assert _stop(tight[:100], now - 0.8, policy, short=True) is None  # cap raised to 1.5 s
    assert _stop(tight[:100], now - 1.05, policy, short=True) == "ci-target"
    rng = random.Random(0)
    noisy = [0.02 * (1 + rng.random()) for _ in range(30)]  # CI far from 1%: the raised cap ends it
    assert _stop(noisy, now - 1.05, policy, short=True) is None
    assert _stop(noisy, now - 1.55, policy, short=True) == "time-cap"


def test_is_short_waits_for_min_samples_and_compares_the_median():
    from attnbench.measure import is_short

    policy = TimingPolicy(min_samples=10, short_point_ms=0.05)
    assert is_short([0.01] * 9, policy) is None
    assert is_short([0.04] * 6 + [5.0] * 4, policy) is True  # median, not mean
    assert is_short([0.06] * 10, policy) is False
    assert is_short([0.01] * 10, TimingPolicy(min_samples=10, short_point_ms=0.0)) is False


def test_rows_keep_an_even_stride_of_long_sample_lists():
    from attnbench.measure import KEPT_SAMPLES, Timing, kept_samples

    assert kept_samples([1.0, 2.0, 3.0], keep=5) == [1.0, 2.0, 3.0]
    assert kept_samples([float(i) for i in range(10)], keep=4) == [0.0, 3.0, 6.0, 9.0]
    many = [float(i % 100) for i in range(3 * KEPT_SAMPLES + 1)]
    summary = Timing(many, "ci-target", 0, "cuda-events").summary()
    assert len(summary["samples_ms"]) <= KEPT_SAMPLES
    assert summary["n_samples"] == len(many)  # the statistics count every sample
    assert summary["latency_ms_p50"] == statistics.median(many)
