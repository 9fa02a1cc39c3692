"""Numbers for people: significant digits (never "0.00" for a small time) and a median with the
sample count and interval that say how much to trust it."""

from __future__ import annotations

import math
from typing import Any


def sig(value: Any, digits: int = 3) -> str:
    """`digits` significant digits; scientific only for very large or very small magnitudes."""
    if value is None or isinstance(value, bool):
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "-"
    return significant(v, digits)


def significant(v: float, digits: int = 3) -> str:
    """A finite number with `digits` significant digits; scientific only below 1e-4 or from 1e6."""
    v = float(f"{v:.{digits}g}")  # round first: 0.00099996 is 0.00100, one magnitude up
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    if mag >= 6 or mag < -4:
        return f"{v:.{digits - 1}e}"
    return f"{v:,.{max(0, digits - 1 - mag)}f}"


def median_with_spread(row: dict[str, Any], unit: str = "") -> str:
    """'0.157 [0.156, 0.157] n=20': the median, its 95% interval (when the row has one) and the
    sample count; a point measured once shows n=1, so it does not pass for a 200-sample one."""
    p50 = row.get("latency_ms_p50")
    if p50 is None:
        return "-"
    lo, hi, n = row.get("latency_ms_ci_low"), row.get("latency_ms_ci_high"), row.get("n_samples")
    digits = 3
    if lo is not None and hi is not None and hi > lo:
        # enough digits that the interval's ends differ from each other and from the median
        width_mag = math.floor(math.log10(hi - lo))
        digits = max(3, min(6, math.floor(math.log10(abs(p50))) - width_mag + 2)) if p50 > 0 else 3
    text = sig(p50, digits) + (f" {unit}" if unit else "")
    if lo is not None and hi is not None:
        text += f" [{sig(lo, digits)}, {sig(hi, digits)}]"
    return text + (f" n={int(n)}" if isinstance(n, (int, float)) and not isinstance(n, bool) else " n=?")
