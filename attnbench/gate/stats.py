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


# ---- between-run noise: baselines of K runs ------------------------------------------------
# The spread rule (see gate.py for the verdicts): a point's baseline is K runs, each giving the log
# of its median time, l_1..l_K. A fresh side's log median c (of one run, or the median run of M) is
# compared with their mean. The between-run sd is pooled over both sides when the current side has
# M >= 2 runs: sd^2 = ((K-1) sd_b^2 + (M-1) sd_c^2) / (K + M - 2), so a point whose current runs
# disagree among themselves is not gated on a baseline that happened to agree (on an H200,
# triton-flash causal prefill: five baseline runs within 0.4%, the point's runs over 12 processes
# 2%). When the log medians are independent draws N(mu, sigma^2), (c - mean(l)) / (sd sqrt(1+1/K))
# is Student-t with K - 1 degrees of freedom for one current run (a prediction interval), and at
# most that tail with K + M - 2 for the median of M (the median of M has a smaller variance than
# one run). The tolerance is max(floor, multiplier * sd * sqrt(1 + 1/K)) on the log scale.
CURRENT_MEDIANS = "current_run_medians_ms"  # a combined current row's key: each run's median (ms)
CURRENT_CLOCKS = "current_run_sm_clocks_mhz"  # ... and each run's settled SM clock (compute-bound points)
# A compute-bound point's runs settle at the SM clock the power cap allows (attnbench.thermal). On one
# H200, five processes of sdpa-cudnn causal prefill settled at 1965 MHz and ran 0.94 ms, others at
# 1815-1830 MHz and 0.97-0.99 ms: two power states, each run agreeing with its own. Sides whose
# median settled clocks differ by more than this are not compared from separate runs (NOISY; the A/B
# mode, which alternates both versions in one process, compares them at one power state).
CLOCK_STATE_TOL = 0.03
DEFAULT_MULTIPLIER = 6.0
DEFAULT_FLOOR = 0.02  # fraction: a run differing by less than 2% is never called slower
DEFAULT_CAP = 0.10  # fraction: a point whose tolerance exceeds 10% cannot gate; it is NOISY
MIN_RUNS_FOR_SPREAD = 3  # an sd from 2 runs (1 degree of freedom) bounds nothing useful


@dataclass(frozen=True)
class SpreadTolerance:
    """The tolerance of one point from its K baseline runs (all on the natural-log scale)."""

    center_log: float  # mean of the baseline runs' log medians
    sd_log: float  # sample sd (ddof=1) of the log medians, pooled with the current runs' when M >= 2
    tolerance_log: float  # max(log1p(floor), multiplier * sd_log * sqrt(1 + 1/K))
    k: int
    m: int = 1  # current runs whose spread was pooled in (1: the baseline's sd alone)
    sd_baseline_log: float | None = None  # the baseline runs' own sd, before pooling

    @property
    def center_ms(self) -> float:
        return math.exp(self.center_log)

    @property
    def tolerance(self) -> float:
        """The tolerance as a fraction of the baseline time (0.05 = a run 5% slower still passes)."""
        return math.expm1(self.tolerance_log)

    @property
    def spread(self) -> float:
        """The between-run sd as a fraction (exp(sd_log) - 1)."""
        return math.expm1(self.sd_log)


def spread_tolerance(
    run_medians_ms: list[float],
    multiplier: float = DEFAULT_MULTIPLIER,
    floor: float = DEFAULT_FLOOR,
    current_medians_ms: list[float] | None = None,
) -> SpreadTolerance:
    """The tolerance of a point from the medians (ms) of its K >= 2 baseline runs, its sd pooled with
    the M current runs' (current_medians_ms) when there are two or more."""
    logs = _logs(run_medians_ms)
    k = int(logs.size)
    if k < 2:
        raise ValueError(f"need >= 2 finite positive run medians, got {run_medians_ms}")
    sd_b = float(np.std(logs, ddof=1))
    sd, m = sd_b, 1
    current = _logs(current_medians_ms or [])
    if current.size >= 2:
        m = int(current.size)
        sd_c = float(np.std(current, ddof=1))
        sd = math.sqrt(((k - 1) * sd_b**2 + (m - 1) * sd_c**2) / (k + m - 2))
    tol = max(math.log1p(floor), multiplier * sd * math.sqrt(1.0 + 1.0 / k))
    return SpreadTolerance(float(np.mean(logs)), sd, tol, k, m, sd_b)


def _logs(medians_ms: list[float]) -> np.ndarray:
    logs = np.log(np.asarray(medians_ms, dtype=np.float64))
    if not np.all(np.isfinite(logs)):
        raise ValueError(f"run medians must be finite and positive, got {medians_ms}")
    return logs


def t_sf(x: float, df: int) -> float:
    """P(T > x) for Student's t with df degrees of freedom (numerical: no scipy here).

    With t = tan(theta) the tail integral runs over the finite range [atan(x), pi/2) with a smooth
    integrand; Simpson's rule on 4001 points is accurate to ~1e-10 for df >= 1.
    """
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    theta = np.linspace(math.atan(x), math.pi / 2, 4001)[:-1]
    t = np.tan(theta)
    f = np.exp(log_c - (df + 1) / 2 * np.log1p(t * t / df)) / np.cos(theta) ** 2
    theta = np.append(theta, math.pi / 2)
    f = np.append(f, math.exp(log_c) * df ** ((df + 1) / 2) if df == 1 else 0.0)
    h = theta[1] - theta[0]
    return float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))


def catch_probability(
    slowdown: float,
    sigma_log: float,
    k: int,
    multiplier: float = DEFAULT_MULTIPLIER,
    floor: float = DEFAULT_FLOOR,
    m: int = 1,
) -> float:
    """P(SLOW) for one point under the spread rule when runs' log medians are N(mu, sigma_log^2)
    and the current side (one run, or the median run of m) is slower by the factor 1 + slowdown
    (slowdown 0: the false-alarm rate).

    The pooled sd^2 is sigma^2 * chi2(nu) / nu with nu = K - 1 (+ m - 1 when m >= 2), independent of
    the current side's offset c - mean ~ N(log1p(slowdown), sigma^2 (v_m + 1/K)), v_m the variance
    of the median of m standard normals; the probability is integrated over the sd.
    """
    nu = k - 1 + (m - 1 if m >= 2 else 0)
    inflate = math.sqrt(1.0 + 1.0 / k)
    offset_sd = sigma_log * math.sqrt(median_variance(m) + 1.0 / k)
    q = np.linspace(0.0, nu + 60.0 * math.sqrt(2 * nu) + 60.0, 20001)[1:]  # chi2(nu) draws
    log_pdf = (nu / 2 - 1) * np.log(q) - q / 2 - (nu / 2) * math.log(2) - math.lgamma(nu / 2)
    weights = np.exp(log_pdf) * (q[1] - q[0])
    sd_hat = sigma_log * np.sqrt(q / nu)
    tol = np.maximum(math.log1p(floor), multiplier * sd_hat * inflate)
    z = (tol - math.log1p(slowdown)) / offset_sd
    normal = NormalDist()
    p_exceed = np.array([1.0 - normal.cdf(v) for v in z])
    return float(np.sum(weights * p_exceed) / np.sum(weights))


def median_variance(m: int) -> float:
    """Variance of the sample median of m standard normal draws (for even m the lower middle one,
    as gate.combine_runs takes the faster middle run): 1 for m = 1, 0.449 for m = 3.

    Numerical: the density of the r-th order statistic, r = (m + 1) // 2, integrated on a grid."""
    if m <= 1:
        return 1.0
    r = (m + 1) // 2
    x = np.linspace(-8.0, 8.0, 16001)
    normal = NormalDist()
    cdf = np.array([normal.cdf(v) for v in x])
    pdf = np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    log_coef = math.lgamma(m + 1) - math.lgamma(r) - math.lgamma(m - r + 1)
    with np.errstate(divide="ignore"):
        dens = np.exp(log_coef + (r - 1) * np.log(cdf) + (m - r) * np.log1p(-cdf)) * pdf
    dx = x[1] - x[0]
    mean = float(np.sum(x * dens) * dx)
    return float(np.sum((x - mean) ** 2 * dens) * dx)


# ---- A/B: paired ratios --------------------------------------------------------------------
@dataclass(frozen=True)
class PairedInterval:
    """B/A time ratio from n pairs of alternating samples: median of the pairs' ratios and its
    distribution-free (sign-test) interval; low/high None when n is too small for the level."""

    ratio: float
    low: float | None
    high: float | None
    confidence: float
    n_pairs: int


def paired_ratio_interval(a_ms: np.ndarray, b_ms: np.ndarray, alpha: float) -> PairedInterval:
    """Interval for the median of log(b_i / a_i) over pairs measured back to back.

    The number of pair log-ratios below the true median is Binomial(n, 1/2) whatever their
    distribution, so [r_(k), r_(n+1-k)] with k the largest rank with P(Bin <= k-1) <= alpha/2 covers
    it with probability >= 1 - alpha. The pairs need only be independent of each other, not of
    the drift: drift within a pair cancels in its ratio.
    """
    a, b = np.asarray(a_ms, dtype=np.float64), np.asarray(b_ms, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    r = np.sort(np.log(b[keep]) - np.log(a[keep]))
    n = int(r.size)
    if n == 0:
        raise ValueError("no valid pair")
    ratio = float(np.exp(np.median(r)))
    # binomial(n, 1/2) cdf by log-space terms (n up to tens of thousands stays exact enough)
    ks = np.arange(n + 1)
    log_pmf = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in ks]
    ) - n * math.log(2)
    cdf = np.cumsum(np.exp(log_pmf))
    k = int(np.searchsorted(cdf, alpha / 2 * (1 + 1e-9), side="right"))  # P(Bin <= k-1) <= alpha/2
    if k < 1:
        return PairedInterval(ratio, None, None, 1.0 - alpha, n)
    return PairedInterval(ratio, float(np.exp(r[k - 1])), float(np.exp(r[n - k])), 1.0 - alpha, n)
