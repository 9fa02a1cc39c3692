"""Log-log least-squares fits: y = c * N^b, the exponent b with its R² and the points used."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 3  # two points always fit exactly (R² = 1): a fit needs at least three


@dataclass(frozen=True)
class Fit:
    exponent: float
    coef: float  # c in y = c * N^b
    r2: float
    n_points: int
    n_min: float
    n_max: float


def loglog_fit(ns: list[float], ys: list[float]) -> Fit | None:
    """Fit log y = log c + b log N over the points with N > 0 and y > 0; None under MIN_POINTS."""
    pts = [(float(n), float(y)) for n, y in zip(ns, ys, strict=True) if n and y and n > 0 and y > 0
           and not math.isnan(float(y))]
    if len({n for n, _ in pts}) < MIN_POINTS:
        return None
    x = np.log([n for n, _ in pts])
    y = np.log([v for _, v in pts])
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot < 1e-12:  # constant y (to float noise): exponent 0, a perfect fit
        return Fit(0.0, float(math.exp(y.mean())), 1.0, len(pts), min(n for n, _ in pts),
                   max(n for n, _ in pts))
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    r2 = 1.0 - float((resid**2).sum()) / ss_tot
    return Fit(float(b), float(math.exp(a)), r2, len(pts), min(n for n, _ in pts), max(n for n, _ in pts))


def upper_fit(ns: list[float], ys: list[float]) -> Fit | None:
    """The fit over the larger half of the lengths (at least MIN_POINTS): the asymptotic regime,
    where fixed launch costs no longer flatten the curve. None when there are too few points to
    leave out any."""
    pairs = sorted((float(n), float(y)) for n, y in zip(ns, ys, strict=True))
    if len(pairs) <= MIN_POINTS:
        return None
    keep = max(MIN_POINTS, (len(pairs) + 1) // 2)
    tail = pairs[-keep:]
    return loglog_fit([n for n, _ in tail], [y for _, y in tail])
