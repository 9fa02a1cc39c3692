"""The gate's statistics: the Mann-Whitney null distribution and the Hodges-Lehmann ratio interval."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from attnbench.gate import stats as gate_stats
from tests.synthetic_runs import lognormal


def test_exact_null_distribution_matches_enumeration():
    n, m = 3, 4
    counts = np.zeros(n * m + 1)
    for pos in itertools.combinations(range(n + m), n):  # ranks of the x's in the pooled sample
        counts[sum(p - i for i, p in enumerate(pos))] += 1  # U = y's below each x, summed
    assert np.allclose(np.cumsum(counts / counts.sum()), gate_stats.u_null_cdf(n, m))


def test_critical_rank_exact_and_normal_agree_for_moderate_samples():
    k_exact, how = gate_stats.critical_rank(40, 40, 0.01)
    assert how == "exact"
    k_normal, how = gate_stats.critical_rank(40, 40, 0.01, exact=False)
    assert how == "normal"
    assert k_normal <= k_exact <= k_normal + 0.02 * 40 * 40  # normal is slightly conservative
    assert gate_stats.critical_rank(2, 2, 0.05)[0] == 0  # no bounded 95% interval from 2 vs 2
    assert gate_stats.critical_rank(1, 1, 0.05, ties=6.0)[0] == 0  # ties do not make 1 vs 1 bounded
    assert gate_stats.critical_rank(60, 60, 0.05, ties=120**3 - 120)[0] == 0  # all equal: no interval


@pytest.mark.parametrize(("n_b", "n_c"), [(15, 20), (80, 60)])  # exact and normal paths
def test_interval_covers_the_true_ratio_at_its_level(n_b, n_c):
    rng = np.random.default_rng(11)
    true_ratio, hits, reps = 1.1, 0, 400
    for _ in range(reps):
        b = np.array(lognormal(rng, 1.0, 0.05, n_b))
        c = np.array(lognormal(rng, true_ratio, 0.05, n_c))
        iv = gate_stats.ratio_interval(b, c, alpha=0.1)
        hits += iv.low <= true_ratio <= iv.high
    assert 0.86 <= hits / reps <= 0.95


def test_large_sample_sets_are_thinned_not_refused():
    rng = np.random.default_rng(12)
    b = np.array(lognormal(rng, 1.0, 0.05, 3000))
    c = np.array(lognormal(rng, 1.2, 0.05, 3000))
    iv = gate_stats.ratio_interval(b, c, alpha=0.001)
    assert iv.n_baseline == iv.n_current == 3000
    assert 1.15 < iv.low < 1.2 < iv.high < 1.25


def test_clean_samples_drops_what_a_log_scale_cannot_take():
    assert gate_stats.clean_samples([1.0, 0.0, -1.0, float("nan"), float("inf"), 2.0]).tolist() == [1.0, 2.0]
    assert gate_stats.clean_samples(None).size == 0
