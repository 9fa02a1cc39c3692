"""The block-order claim ("block-table indirection costs ~0.1%") from the sweep's paired measurement.

layout_pairs.json (attnbench.runner.layout_pairs) holds, per (case pair, paged backend), the
shuffled / contiguous time ratio of the two timed alternately, with an interval at confidence
1 - alpha/m (Bonferroni over the m records, so that all of them cover their ratios at once with
probability >= 1 - alpha). The claim's figure is the median over the records of ratio - 1; its
bounds are the medians of the records' bounds, which cover the median of the true overheads
whenever every record's interval covers its own (the median is monotone in each value), so with
probability >= 1 - alpha. Verdict (one-sided, as the unpaired rule: a negative cost is no cost):
holds when the upper bound is within the limit, does not hold when the lower bound is above it,
undecided when the interval contains the limit (the measurement cannot tell which side it is on).

This module only reads JSON and formats; claims.py turns the outcome into its verdict string (it
imports this module, not the other way round).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from attnbench.report.table import pct, signed_pct

HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided"
MAX_LISTED = 6  # records listed one by one; beyond, one entry per kernel


@dataclass
class PairedOutcome:
    outcome: str  # HOLDS | FAILS | UNDECIDED
    figure: float  # median over records of ratio - 1
    low: float  # its bounds (-inf / inf where the records' intervals are unbounded)
    high: float
    confidence: float
    numbers: str
    values: dict[str, Any] = field(default_factory=dict)


def rule_text(limit: float, alpha: float) -> str:
    return (f"paired (the sweep's layout_pairs): per (case, paged kernel, block size) shuffled / contiguous "
            f"- 1 from ABBA quads timed alternately over fresh allocations, each with its interval at "
            f"confidence 1 - {alpha:g}/m (Bonferroni over the m records); figure = median over records, "
            f"bounds = medians of their bounds (jointly {1 - alpha:.0%}); holds when the upper bound <= "
            f"{pct(limit)}, does not hold when the lower bound > {pct(limit)}, undecided when the "
            "interval contains the limit")


def _label(r: dict[str, Any]) -> str:
    """'cpu-paged decode uniform64-1024 bs16': the kernel and enough of the case to tell records apart."""
    mix = f" {r['seqlen_mix']}" if r.get("seqlen_mix") else ""
    return f"{r.get('backend')} {r.get('workload')}{mix} bs{r.get('block_size')}"


def _bound(x: float | None, default: float) -> float:
    return default if x is None or not math.isfinite(x) else float(x) - 1.0


def _interval(low: float, high: float) -> str:
    def one(v: float) -> str:
        return "unbounded" if not math.isfinite(v) else signed_pct(v)

    return f"[{one(low)}, {one(high)}]"


def usable(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The records with a measured ratio (status ok)."""
    if not doc:
        return []
    return [r for r in doc.get("records", []) if isinstance(r, dict) and r.get("status") == "ok"
            and isinstance(r.get("ratio"), (int, float))]


def failed_note(doc: dict[str, Any] | None) -> str:
    """'k of n paired record(s) not measured: backend (reason); ...' or ''."""
    if not doc:
        return ""
    bad = [r for r in doc.get("records", []) if isinstance(r, dict) and r.get("status") != "ok"]
    if not bad:
        return ""
    shown = "; ".join(f"{_label(r)}: {r.get('status')} "
                      f"({str(r.get('reason'))[:120]})" for r in bad[:3])
    return f"{len(bad)} of {len(doc.get('records', []))} paired record(s) not measured: {shown}"


def paired_outcome(doc: dict[str, Any] | None, limit: float) -> PairedOutcome | None:
    """The claim from layout_pairs.json; None when it holds no measured record."""
    recs = usable(doc)
    if not recs:
        return None
    assert doc is not None
    over = [float(r["ratio"]) - 1.0 for r in recs]
    lows = [_bound(r.get("low"), -math.inf) for r in recs]
    highs = [_bound(r.get("high"), math.inf) for r in recs]
    figure, low, high = statistics.median(over), statistics.median(lows), statistics.median(highs)
    outcome = HOLDS if high <= limit else FAILS if low > limit else UNDECIDED
    confidence = 1.0 - float(doc.get("alpha", 0.05))
    head = (f"paired: median {signed_pct(figure)} {_interval(low, high)} over {len(recs)} (case, kernel) "
            f"pair(s)")
    if len(recs) <= MAX_LISTED:
        parts = [f"{_label(r)} {signed_pct(o)} "
                 f"{_interval(lo, hi)} over {r.get('n_pairs')} pairs in {r.get('rounds')} rounds"
                 for r, o, lo, hi in zip(recs, over, lows, highs, strict=True)]
    else:
        by: dict[str, list[int]] = {}
        for i, r in enumerate(recs):
            by.setdefault(str(r["backend"]), []).append(i)
        parts = []
        for k, ix in by.items():
            span = _interval(statistics.median(lows[i] for i in ix), statistics.median(highs[i] for i in ix))
            parts.append(f"{k} median {signed_pct(statistics.median(over[i] for i in ix))} {span} "
                         f"over {len(ix)} case(s)")
    values = {
        "source": "layout_pairs", "median": figure, "low": low, "high": high, "n": len(recs),
        "confidence": confidence,
        "per_record": [{"backend": r["backend"], "shuffled_case_id": r.get("shuffled_case_id"),
                        "block_size": r.get("block_size"), "overhead": o, "low": lo, "high": hi,
                        "n_pairs": r.get("n_pairs"), "rounds": r.get("rounds")}
                       for r, o, lo, hi in zip(recs, over, lows, highs, strict=True)],
    }  # fmt: skip
    return PairedOutcome(outcome, figure, low, high, confidence, head + "; " + "; ".join(parts), values)
