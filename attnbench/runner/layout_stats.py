"""Statistics of the paired layout measurement: shuffled / contiguous time ratio of one (case pair,
backend) from ABBA pairs pooled over rounds of fresh allocations.

Two effects the gate's pair-by-pair ratio does not remove, both measured on the 2-core CPU host
(cpu-paged, smoke.yaml's small decode case, ~0.45 ms a call, 1000-2400 pairs a process):

- Order. The first call of a pair follows a call of its own side (ABBA: A B | B A | A B ...), the
  second follows the other side's, whose pool has pushed its own out of the 1 MB L2. AB pairs read
  1.07-1.19x, BA pairs 0.89-1.00x; the pooled pairs' log ratios are bimodal and their median falls
  between the modes (MAD 18-20%). An AB pair and the next BA pair together (a quad: each side once
  after itself and once after the other) cancel it: the quads' MAD was 7%, their lag-1
  autocorrelation ~0. (Calls of tens of microseconds timed on the host keep a bias of about a
  microsecond: the first call of each of alternate's rounds of ten pairs, always A's, ran ~1 us
  slower with identical work on both sides; at 0.45 ms it was not measurable.)
- Placement. Quads of one allocation agree with each other, but two allocations' quad medians were
  1.010 [1.001, 1.016] and 1.038 [1.031, 1.046]: where the pools lie moves the ratio by 1-3%. The
  sign-test interval of quads pooled over a few rounds sees only the allocations drawn, so the
  record's interval is widened to the Student-t interval of the rounds' medians where that is wider
  (each round's median of ~100 quads is close to normal; the rounds are independent allocations).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from attnbench.gate.stats import paired_ratio_interval, t_sf


def quads(a_ms: list[float], b_ms: list[float], orders: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) per quad: the geometric means of an AB pair and the BA pair that follows it (pairs the
    timer dropped leave some unmatched: they are left out). Without orders, consecutive pairs."""
    if not orders:
        orders = ["ab" if i % 2 == 0 else "ba" for i in range(len(a_ms))]
    a_q: list[float] = []
    b_q: list[float] = []
    waiting: dict[str, int] = {}
    for i, first in enumerate(orders):
        other = "ba" if first == "ab" else "ab"
        if other in waiting:
            j = waiting.pop(other)
            a_q.append(math.sqrt(a_ms[i] * a_ms[j]))
            b_q.append(math.sqrt(b_ms[i] * b_ms[j]))
        else:
            waiting[first] = i
    return np.array(a_q), np.array(b_q)


def t_quantile(p: float, df: int) -> float:
    """x with P(T > x) = p for Student's t (bisection on gate.stats.t_sf; p in (0, 0.5))."""
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > p:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf(mid, df) > p else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class LayoutRatio:
    """shuffled / contiguous from the quads of every round. ratio: the pooled quads' median; low /
    high the record's interval (None: unbounded), the wider of the pooled sign-test interval and
    the rounds' t interval on each side."""

    ratio: float
    low: float | None
    high: float | None
    confidence: float
    n_pairs: int
    n_quads: int
    rounds: int
    pooled_low: float | None
    pooled_high: float | None
    round_ratios: list[float]
    round_low: float | None
    round_high: float | None
    widened: bool  # the rounds' spread made the interval wider than the pooled one

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round_interval(logs: list[float], alpha: float) -> tuple[float | None, float | None]:
    if len(logs) < 2:
        return None, None
    x = np.array(logs)
    half = t_quantile(alpha / 2, len(x) - 1) * float(np.std(x, ddof=1)) / math.sqrt(len(x))
    return math.exp(float(x.mean()) - half), math.exp(float(x.mean()) + half)


Round = tuple[list[float], list[float], list[str]]  # (contiguous ms, shuffled ms, orders) of one round


def layout_ratio(rounds: list[Round], alpha: float) -> LayoutRatio | None:
    """The ratio and interval from each round's (contiguous ms, shuffled ms, orders); None when no
    round holds a quad. alpha: this record's (Bonferroni-corrected) level."""
    a_all: list[np.ndarray] = []
    b_all: list[np.ndarray] = []
    logs: list[float] = []
    n_pairs = 0
    for a_ms, b_ms, orders in rounds:
        a_q, b_q = quads(a_ms, b_ms, orders)
        n_pairs += len(a_ms)
        if a_q.size:
            a_all.append(a_q)
            b_all.append(b_q)
            logs.append(float(np.median(np.log(b_q) - np.log(a_q))))
    if not a_all:
        return None
    pooled = paired_ratio_interval(np.concatenate(a_all), np.concatenate(b_all), alpha)
    r_low, r_high = _round_interval(logs, alpha)
    low, high = pooled.low, pooled.high
    widened = False
    if low is not None and r_low is not None and r_low < low:
        low, widened = r_low, True
    if high is not None and r_high is not None and r_high > high:
        high, widened = r_high, True
    return LayoutRatio(
        ratio=pooled.ratio, low=low, high=high, confidence=pooled.confidence, n_pairs=n_pairs,
        n_quads=pooled.n_pairs, rounds=len(logs), pooled_low=pooled.low, pooled_high=pooled.high,
        round_ratios=[math.exp(v) for v in logs], round_low=r_low, round_high=r_high, widened=widened,
    )
