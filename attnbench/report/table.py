"""The Table every section builds, and the number formatting they share.

A table keeps two views of its content: `records` (raw values, what tests and other tables read)
and `rows` (the formatted cells the renderers print). Cells are plain text; the renderers escape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from attnbench.numfmt import significant

NOT_MEASURED = "not measured"


@dataclass
class Table:
    key: str
    title: str
    intro: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    empty_reason: str = ""  # why there are no rows (shown instead of the table)


def not_measured(reason: str) -> str:
    return f"{NOT_MEASURED} ({reason})"


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def num(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits, no scientific notation for ordinary sizes."""
    if missing(value):
        return "—"
    return significant(float(value), digits)


def ms(value: Any) -> str:
    return "—" if missing(value) else f"{num(value)} ms"


def ms_spread(row: Any) -> str:
    """A row's median latency with its 95% interval and sample count: '0.157 ms [0.156, 0.157] n=20'."""
    from attnbench.numfmt import median_with_spread

    keys = ("latency_ms_p50", "latency_ms_ci_low", "latency_ms_ci_high", "n_samples")
    values = {k: (None if missing(row.get(k)) else float(row.get(k))) for k in keys}
    return "—" if values["latency_ms_p50"] is None else median_with_spread(values, "ms")


def pct(fraction: Any, digits: int = 1) -> str:
    # round() then + 0.0 turns a tiny negative (float noise) into "0.0%", not "-0.0%"
    return "—" if missing(fraction) else f"{round(100.0 * float(fraction), digits) + 0.0:.{digits}f}%"


def ratio(value: Any) -> str:
    return "—" if missing(value) else f"{num(value)}x"


def signed_pct(fraction: Any) -> str:
    return "—" if missing(fraction) else f"{100.0 * float(fraction):+.2f}%"


def n_range(values: list[float]) -> str:
    vals = sorted(int(v) for v in values)
    if not vals:
        return "—"
    return f"{len(vals)} (N={vals[0]:,}–{vals[-1]:,})" if len(vals) > 1 else f"1 (N={vals[0]:,})"


def geomean(values: list[float]) -> float:
    vals = [float(v) for v in values if not missing(v) and float(v) > 0]
    if not vals:
        return float("nan")
    return math.exp(sum(math.log(v) for v in vals) / len(vals))
