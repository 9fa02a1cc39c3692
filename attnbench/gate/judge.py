"""One point's verdict in the run gate: statuses first, then the spread rule or the single-run rule.

Order of the questions (the first that applies decides):
  VANISHED  ok in a baseline run, and now absent from the current run or skipped in it,
  BROKEN    ok in a baseline run, and now `incorrect` or `failed`,
  UNKNOWN   nothing to compare: no baseline run has samples, the current row has none, or the two
            sides were timed by different methods (timing_method differs; another
            l2_flush_kind is only noted),
  NOISY     (K >= 3 baseline runs) the point's tolerance exceeds the cap: reported with its spread,
            never failed,
  SLOW / FAST / SAME  by the spread rule (K >= 3) or the single-run rule (K < 3); see gate.py.
Rows without `timing_method` (written before device timing) are compared as they are and counted as
of unknown method; `launch_bound` missing means not launch-bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.gate import stats as gate_stats

BAD_STATUSES = ("incorrect", "failed")


@dataclass(frozen=True)
class PointResult:
    case_id: str
    backend: str
    verdict: str
    baseline_ms: float | None  # spread rule: exp(mean log median) of the runs; else the run's median
    current_ms: float | None
    ratio: float | None  # current / baseline
    low: float | None  # the current run's own interval, as a ratio to the baseline (see gate.py)
    high: float | None
    n_baseline: int  # samples of the (first ok) baseline run
    n_current: int
    note: str = ""
    tolerance: float | None = None  # fraction; the SLOW line is 1 + tolerance
    spread: float | None = None  # between-run sd of log medians, as a fraction
    k_runs: int = 0  # baseline runs with samples for this point
    rule: str = ""  # "spread" | "single-run" | "paired" | ""
    launch_bound: bool | None = None
    call_ms: float | None = None  # the current run's host time per eager call, when recorded

    @property
    def key(self) -> tuple[str, str]:
        return self.case_id, self.backend


@dataclass(frozen=True)
class Rules:
    threshold: float  # single-run rule: SLOW above 1 + threshold (beyond the interval)
    point_alpha: float  # single-run rule: per-point alpha (Bonferroni-corrected)
    multiplier: float = gate_stats.DEFAULT_MULTIPLIER
    floor: float = gate_stats.DEFAULT_FLOOR
    cap: float = gate_stats.DEFAULT_CAP


def samples_of(row: dict[str, Any] | None) -> tuple[np.ndarray, str]:
    """Clean samples of a row, or an empty array and why there are none."""
    if row is None:
        return gate_stats.clean_samples([]), "not in the run"
    status = row.get("status")
    if status != "ok":
        reason = row.get("reason") or ""
        return gate_stats.clean_samples([]), f"status {status}" + (f": {reason}" if reason else "")
    samples = gate_stats.clean_samples(row.get("samples_ms") or [])
    return samples, "" if samples.size else "no samples_ms"


def _median_or_p50(samples: np.ndarray, row: dict[str, Any] | None) -> float | None:
    if samples.size:
        return float(np.median(samples))
    p50 = (row or {}).get("latency_ms_p50")
    return float(p50) if isinstance(p50, (int, float)) and not isinstance(p50, bool) else None


def _number(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def median_interval(samples: np.ndarray) -> tuple[float, float]:
    """~95% distribution-free interval of a run's median from order statistics (ranks
    n/2 -+ 1.96 sqrt(n)/2, the count below the median being Binomial(n, 1/2))."""
    s = np.sort(samples)
    n = s.size
    if n < 3:
        return float(s[0]), float(s[-1])
    half = 1.96 * math.sqrt(n) / 2
    return float(s[max(0, math.floor(n / 2 - half))]), float(s[min(n - 1, math.ceil(n / 2 + half) - 1)])


def _notes(brows: list[dict[str, Any]], crow: dict[str, Any]) -> list[str]:
    notes = []
    if any(r.get("throttled") for r in brows):
        notes.append("baseline throttled")
    if crow.get("throttled"):
        notes.append("current throttled")
    variants = {str(r["variant"]) for r in brows if r.get("variant") is not None}
    cv = crow.get("variant")
    if cv is not None and variants and cv not in variants:
        # a backend that picks its kernel variant picked another one this time
        notes.append(f"variant {'/'.join(sorted(variants))} -> {cv}")
    flush = _flush_note(brows, crow)
    if flush:
        notes.append(flush)
    if crow.get("launch_bound") is True:
        call = _number(crow, "call_ms_p50")
        host = f"host {call:.4g} ms per call, " if call is not None else ""
        notes.append(f"launch-bound ({host}gated on device time)")
    return notes


def _timing_mismatch(brows: list[dict[str, Any]], crow: dict[str, Any]) -> str:
    methods = {str(r["timing_method"]) for r in brows if r.get("timing_method")}
    cm = crow.get("timing_method")
    if cm and methods and methods != {cm}:
        return f"timing method differs (baseline {'/'.join(sorted(methods))}, current {cm})"
    return ""


def _flush_note(brows: list[dict[str, Any]], crow: dict[str, Any]) -> str:
    """A note when the sides' samples were taken behind different L2 flushes: a read-only flush
    (rows without l2_flush_kind) left launch-bound medians 2-5% off the write-then-read one's level,
    so such a baseline still gates (its stable points are long enough to be little moved) but wants
    re-saving."""
    if not crow.get("l2_flush") or not all(r.get("l2_flush") for r in brows):
        return ""
    kinds = {str(r.get("l2_flush_kind") or "read") for r in brows}
    ck = str(crow.get("l2_flush_kind") or "read")
    if kinds == {ck}:
        return ""
    return f"L2 flush {'/'.join(sorted(kinds))} -> {ck} (re-save the baseline)"


def judge_point(
    key: tuple[str, str], brows: list[dict[str, Any] | None], crow: dict[str, Any] | None, rules: Rules
) -> PointResult:
    """The verdict of one point from its rows in the K baseline runs (None: absent) and the current."""
    present = [r for r in brows if r is not None]
    ok_runs = [(r, s) for r in present for s in [samples_of(r)[0]] if s.size]
    base: dict[str, Any] = dict(case_id=key[0], backend=key[1], k_runs=len(ok_runs))
    if crow is not None:
        base.update(launch_bound=crow.get("launch_bound"), call_ms=_number(crow, "call_ms_p50"))
    first_b = ok_runs[0] if ok_runs else (present[0] if present else None, gate_stats.clean_samples([]))
    cs, cwhy = samples_of(crow)
    base.update(
        baseline_ms=_median_or_p50(first_b[1], first_b[0]),
        current_ms=_median_or_p50(cs, crow),
        n_baseline=int(first_b[1].size),
        n_current=int(cs.size),
    )
    none: dict[str, Any] = dict(ratio=None, low=None, high=None)
    if ok_runs and (crow is None or crow.get("status") == "skipped"):
        why = "not in the current run" if crow is None else f"skipped now: {crow.get('reason') or '?'}"
        return PointResult(verdict="VANISHED", note=f"ok in the baseline; {why}", **none, **base)
    if ok_runs and crow is not None and crow.get("status") in BAD_STATUSES:
        reason = crow.get("reason") or ""
        note = f"ok in the baseline; {crow['status']} now" + (f": {reason}" if reason else "")
        return PointResult(verdict="BROKEN", note=note, **none, **base)
    if crow is None:
        return PointResult(
            verdict="UNKNOWN", note="not in the current run (no baseline samples)", **none, **base
        )
    notes = _notes(present, crow)
    if not ok_runs or not cs.size:
        bwhy = samples_of(present[0])[1] if present else "not in the baseline"
        if not ok_runs and not cs.size and bwhy == cwhy:
            lacking = [f"no samples in either run ({bwhy})"]
        else:
            sides = (("baseline", "" if ok_runs else bwhy), ("current", cwhy))
            lacking = [f"{side} lacks samples ({why})" for side, why in sides if why]
        return PointResult(verdict="UNKNOWN", note="; ".join(lacking + notes), **none, **base)
    mismatch = _timing_mismatch(present, crow)
    if mismatch:
        return PointResult(verdict="UNKNOWN", note="; ".join([mismatch, *notes]), **none, **base)
    if len(ok_runs) >= gate_stats.MIN_RUNS_FOR_SPREAD:
        return _spread_rule(ok_runs, cs, crow, rules, notes, base)
    return _single_run_rule(ok_runs, cs, rules, notes, base)


def _spread_rule(
    ok_runs, cs: np.ndarray, crow: dict[str, Any] | None, rules: Rules, notes: list[str], base: dict[str, Any]
) -> PointResult:
    current = crow.get(gate_stats.CURRENT_MEDIANS) if crow else None
    finite = [float(v) for v in current or [] if isinstance(v, (int, float)) and 0 < v < math.inf]
    tol = gate_stats.spread_tolerance(
        [float(np.median(s)) for _, s in ok_runs], rules.multiplier, rules.floor, finite
    )
    log_ratio = math.log(float(np.median(cs))) - tol.center_log
    lo, hi = median_interval(cs)
    power = _power_state_note([r for r, _ in ok_runs], crow)
    if tol.m >= 2 and tol.sd_baseline_log is not None and tol.sd_log > 1.5 * tol.sd_baseline_log:
        notes.append(f"the {tol.m} current runs disagree: spread {tol.spread:.2%} pooled "
                     f"(baseline alone {math.expm1(tol.sd_baseline_log):.2%})")
    if power:
        verdict = "NOISY"
        notes.insert(0, power)
    elif tol.tolerance > rules.cap:
        verdict = "NOISY"
        shown = ">1000%" if tol.tolerance > 10 else f"{tol.tolerance:.1%}"
        notes.insert(0, f"tolerance {shown} > cap {rules.cap:.0%}: not gated")
    elif log_ratio > tol.tolerance_log:
        verdict = "SLOW"
    elif log_ratio < -tol.tolerance_log:
        verdict = "FAST"
    else:
        verdict = "SAME"
    base = {**base, "baseline_ms": tol.center_ms}
    return PointResult(
        verdict=verdict,
        ratio=math.exp(log_ratio),
        low=lo / tol.center_ms,
        high=hi / tol.center_ms,
        note="; ".join(notes),
        tolerance=tol.tolerance,
        spread=tol.spread,
        rule="spread",
        **base,
    )


def _settled_clocks(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0]


def _power_state_note(brows: list[dict[str, Any]], crow: dict[str, Any] | None) -> str:
    """Why a compute-bound point's sides ran at different power states (median settled SM clocks
    apart by more than CLOCK_STATE_TOL), or "" when they did not or no clock was recorded."""
    if crow is None:
        return ""
    base = _settled_clocks([r.get("sm_clock_mhz_settled") for r in brows])
    cur = _settled_clocks(crow.get(gate_stats.CURRENT_CLOCKS) or [crow.get("sm_clock_mhz_settled")])
    if not base or not cur:
        return ""
    b, c = float(np.median(base)), float(np.median(cur))
    if abs(c / b - 1.0) <= gate_stats.CLOCK_STATE_TOL:
        return ""
    return (f"another power state: settled SM clock {c:.0f} MHz now, {b:.0f} MHz in the baseline; "
            "not gated from separate runs (use `attnbench gate ab`)")


def _single_run_rule(
    ok_runs, cs: np.ndarray, rules: Rules, notes: list[str], base: dict[str, Any]
) -> PointResult:
    """K < 3: the within-run rule against each baseline run; SLOW (FAST) only against all of them."""
    verdicts = []
    intervals = [gate_stats.ratio_interval(s, cs, rules.point_alpha) for _, s in ok_runs]
    for iv in intervals:
        if iv.low is None or iv.high is None:  # not bounded at this confidence
            verdicts.append("UNKNOWN")
        elif iv.low > 1.0 + rules.threshold:
            verdicts.append("SLOW")
        elif iv.high < 1.0 / (1.0 + rules.threshold):
            verdicts.append("FAST")
        else:
            verdicts.append("SAME")
    first = intervals[0]
    if "UNKNOWN" in verdicts:
        verdict = "UNKNOWN"
        level = f"{first.confidence * 100:.6g}%"
        notes.insert(
            0, f"too few samples ({first.n_baseline} vs {first.n_current}) to bound the ratio at {level}"
        )
    elif len(set(verdicts)) == 1:
        verdict = verdicts[0]
    else:
        verdict = "SAME"
        notes.insert(0, "baseline runs disagree: " + "/".join(verdicts))
    return PointResult(
        verdict=verdict,
        ratio=first.ratio_of_medians,
        low=first.low,
        high=first.high,
        note="; ".join(notes),
        tolerance=rules.threshold,
        rule="single-run",
        **base,
    )
