"""Statistics of the regression gate: an interval for the current/baseline time ratio of one point.

Method: timing noise is multiplicative, so both sample sets are compared on a log scale. The shift
between log(current) and log(baseline) is estimated by Hodges-Lehmann (the median of all n*m pairwise
differences log c_i - log b_j) and bounded by the distribution-free interval that inverts the
Mann-Whitney test: [D_(k), D_(nm+1-k)] of the sorted differences, with k from the exact null
distribution of U (under 50 samples a side) or its normal approximation (tie-corrected, with
continuity correction). Exponentiated, this is an interval for the ratio of current to baseline
times; under a pure scale change (every sample slowed by the same factor) that factor is the ratio of
the medians. The interval needs no random numbers, so the gate is deterministic.

What it does not see: noise between runs that is not in the samples of either run (a different
clock state, drift between the two sweeps). The threshold is what absorbs that; see gate.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import numpy as np

# Exact null distribution of U below this many samples per side (R's wilcox.test uses the same limit).
EXACT_LIMIT = 50
# Beyond this many pairwise differences each side is thinned by a seeded random subsample: the
# interval stays valid (fewer samples only widen it) and memory stays bounded (~32 MB of float64).
MAX_PAIRS = 4_000_000
_SUBSAMPLE_SEED = 0


@dataclass(frozen=True)
class RatioInterval:
    """current/baseline time ratios of one point; low/high are None when the interval is unbounded."""

    ratio_of_medians: float
    hodges_lehmann: float
    low: float | None
    high: float | None
    confidence: float
    method: str  # "exact" | "normal"
    n_baseline: int
    n_current: int

    @property
    def bounded(self) -> bool:
        return self.low is not None and self.high is not None


def clean_samples(samples: object) -> np.ndarray:
    """Finite, positive samples as float64 (a time of zero or below cannot be put on a log scale)."""
    try:
        arr = np.asarray(samples, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return np.empty(0)
    return arr[np.isfinite(arr) & (arr > 0)]


@lru_cache(maxsize=256)
def u_null_cdf(n: int, m: int) -> np.ndarray:
    """P(U <= u) for u = 0 .. n*m, U = #{(i, j): x_i > y_j}, n x's and m y's, no ties, under H0.

    Recurrence on the largest pooled observation: it is an x with probability a/(a+b), and then it
    beats all b y's (U = b + U(a-1, b)); otherwise it is a y and adds nothing (U = U(a, b-1)).
    """
    prev = [np.ones(1) for _ in range(m + 1)]  # a = 0: U = 0 whatever b is
    for a in range(1, n + 1):
        cur = [np.ones(1)]  # b = 0: U = 0
        for b in range(1, m + 1):
            v = np.zeros(a * b + 1)
            v[b : b + (a - 1) * b + 1] += (a / (a + b)) * prev[b]
            v[: a * (b - 1) + 1] += (b / (a + b)) * cur[b - 1]
            cur.append(v)
        prev = cur
    return np.cumsum(prev[m])


def _tie_term(pooled: np.ndarray) -> float:
    _, counts = np.unique(pooled, return_counts=True)
    counts = counts[counts > 1].astype(np.float64)
    return float(np.sum(counts**3 - counts))


def critical_rank(
    n: int, m: int, alpha: float, ties: float = 0.0, exact: bool | None = None
) -> tuple[int, str]:
    """k such that [D_(k), D_(nm+1-k)] (1-indexed) covers the shift with probability >= 1 - alpha.

    k is the largest rank with P(U <= k-1) <= alpha/2; 0 means no bounded interval exists at this
    level with these sample counts. `ties` is sum(t^3 - t) over groups of tied pooled values; it only
    narrows the normal approximation (small samples use the exact no-tie distribution, which stays
    sound when the timer's resolution makes a few samples equal). `exact` forces a method.
    """
    if exact is None:
        exact = n < EXACT_LIMIT and m < EXACT_LIMIT
    if exact:
        cdf = u_null_cdf(n, m)
        # tiny tolerance: the cdf is a float sum and must not lose a rank to rounding
        return int(np.searchsorted(cdf, alpha / 2 * (1 + 1e-9), side="right")), "exact"
    total = n + m
    var = n * m / 12.0 * ((total + 1) - ties / (total * (total - 1)))
    if var <= 0.0:  # every pooled sample equal: nothing to build an interval from
        return 0, "normal"
    z = NormalDist().inv_cdf(1 - alpha / 2)
    # P(U <= k-1) ~ Phi((k - 1 + 0.5 - nm/2) / sigma) <= alpha/2  <=>  k <= nm/2 + 0.5 - z*sigma
    k = math.floor(n * m / 2 + 0.5 - z * math.sqrt(var))
    return max(k, 0), "normal"


def _thin(x: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return x if x.size <= limit else rng.choice(x, size=limit, replace=False)


def ratio_interval(baseline: np.ndarray, current: np.ndarray, alpha: float) -> RatioInterval:
    """Ratio of medians, Hodges-Lehmann ratio and its (1 - alpha) interval, current over baseline.

    Both arrays must already be clean (clean_samples) and non-empty.
    """
    if baseline.size == 0 or current.size == 0:
        raise ValueError("both sample sets must be non-empty")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha {alpha} must lie in (0, 1)")
    ratio_med = float(np.median(current) / np.median(baseline))
    lb, lc = np.log(baseline), np.log(current)
    if lb.size * lc.size > MAX_PAIRS:
        side = int(math.isqrt(MAX_PAIRS))
        rng = np.random.default_rng(_SUBSAMPLE_SEED)
        lb, lc = _thin(lb, side, rng), _thin(lc, side, rng)
    n, m = lc.size, lb.size
    diffs = (lc[:, None] - lb[None, :]).ravel()
    k, method = critical_rank(n, m, alpha, _tie_term(np.concatenate([lc, lb])))
    hl = float(np.exp(np.median(diffs)))
    if k < 1:
        low = high = None
    else:
        lo_i, hi_i = k - 1, n * m - k
        part = np.partition(diffs, [lo_i, hi_i])
        low, high = float(np.exp(part[lo_i])), float(np.exp(part[hi_i]))
    return RatioInterval(
        ratio_of_medians=ratio_med,
        hodges_lehmann=hl,
        low=low,
        high=high,
        confidence=1.0 - alpha,
        method=method,
        n_baseline=int(baseline.size),
        n_current=int(current.size),
    )


def bonferroni_alpha(family_alpha: float, n_tests: int) -> float:
    """Per-point alpha so that the chance of any interval missing its ratio is at most family_alpha."""
    return family_alpha / max(n_tests, 1)
