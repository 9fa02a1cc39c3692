"""Computational complexity: time and working memory fitted as powers of the sequence length N per
backend (log-log least squares over the run's main length sweep), beside the document's claims.

Expected exponents (head dim, heads and batch fixed along a sweep):
- time, prefill: the document's O(N²d) -> 2; decode (one new token against N keys): O(Nd) -> 1.
- working memory (peak minus inputs and outputs): the document says O(N²) for standard and paged
  attention and O(Nd) for FlashAttention -> 2 / 2 / 1 in prefill. The document's table is about
  attending a whole sequence; a decode step is one query row (1 x N), so each claim loses one
  power of N there (N² -> N, Nd -> d, a constant). Split-K decode kernels keep partial results per
  KV partition, O(N / partition), and show up as growing faster than that constant.
A fit matches a claim when the exponent is within TOLERANCE of it.
"""

from __future__ import annotations

from typing import Any

from attnbench.report.fit import Fit, loglog_fit, upper_fit
from attnbench.report.load import RunData
from attnbench.report.select import label_order, length_series
from attnbench.report.table import Table, missing, n_range, not_measured

TOLERANCE = 0.25
DOC_CLAIM = {  # kind -> (time, space) as written in the comparison's complexity table
    "naive": ("O(N²d)", "O(N²)"),
    "paged": ("O(N²d)", "O(N²)"),
    "flash": ("O(N²d)", "O(Nd)"),
}
TIME_EXP = {"prefill": 2.0, "decode": 1.0, "mixed": 2.0}
SPACE_EXP = {"naive": 2.0, "paged": 2.0, "flash": 1.0}


def expected_space(kind: str, phase: str) -> float | None:
    base = SPACE_EXP.get(kind)
    if base is None:
        return None
    return base - 1.0 if phase == "decode" else base


def compare(exponent: float, expected: float | None) -> str:
    if expected is None:
        return "no claim"
    if abs(exponent - expected) <= TOLERANCE:
        return f"matches N^{expected:g}"
    side = "slower" if exponent < expected else "faster"
    return f"grows {side} than claimed (N^{exponent:.2f} vs N^{expected:g})"


def fit_text(fit: Fit | None) -> str:
    if fit is None:
        return "—"
    if fit.exponent == 0.0:  # loglog_fit's constant case: the same value at every N
        return "constant (N^0)"
    return f"N^{round(fit.exponent, 2) + 0.0:.2f} (R² {fit.r2:.3f})"


def memory_fit(ns: list[float], mem: list[float]) -> tuple[Fit | None, str]:
    """The working-memory fit and a note, or None with the reason."""
    known = [(n, m) for n, m in zip(ns, mem, strict=True) if not missing(m)]
    if not known:
        return None, not_measured("rows carry no working_mem_bytes")
    positive = [(n, m) for n, m in known if m > 0]
    if not positive:
        return None, "0 B at every N (nothing beyond inputs and outputs)"
    fit = loglog_fit([n for n, _ in positive], [m for _, m in positive])
    dropped = len(known) - len(positive)
    note = f"{dropped} zero-byte point(s) left out" if dropped else ""
    if fit is None:
        extra = f"; {note}" if note else ""
        return None, not_measured(f"fewer than 3 lengths with working memory > 0{extra}")
    return fit, note


def build(run: RunData) -> Table:
    table = Table(
        key="complexity",
        title="Computational complexity",
        intro="Latency and working memory fitted as c·N^b over each backend's points of the run's main "
        "length sweep (equal-length cases differing only in N). 'Upper half' fits the larger half of "
        "the lengths, where launch overhead no longer flattens the curve; the claim check uses it. "
        f"A fit matches a claim within ±{TOLERANCE} in the exponent. A decode step is one query row, so "
        "there each claim loses one power of N (time N²d → N; space N² → N, Nd → constant).",
        columns=["Backend", "Kind", "Phase", "Points", "Time (all)", "Time (upper half)", "Document",
                 "Time vs claim", "Working memory", "Memory vs claim"],
    )
    ok = run.ok
    for phase in ("prefill", "decode"):
        series = length_series(ok, phase)
        if not series:
            why = f"no {phase} sweep with ok rows at 2 or more equal lengths"
            table.notes.append(f"{phase}: {not_measured(why)}")
            continue
        first = next(iter(series.values())).iloc[0]
        table.notes.append(
            f"{phase} sweep: workload {first['workload']}, batch {first['batch']:.0f}, heads "
            f"{first['num_q_heads']:.0f}/{first['num_kv_heads']:.0f}, d{first['head_dim']:.0f}, "
            f"{first['dtype']}."
        )
        for label in [lab for lab in label_order(ok) if lab in series]:
            table.records.append(_record(series[label], label, phase))
            table.rows.append(_cells(table.records[-1]))
    if not table.rows:
        table.empty_reason = "no length sweep with ok rows in the run"
    return table


def _record(rows, label: str, phase: str) -> dict[str, Any]:
    kind = str(rows["kind"].iloc[0])
    ns = list(rows["n_len"])
    lat = list(rows["latency_ms_p50"])
    t_all, t_up = loglog_fit(ns, lat), upper_fit(ns, lat)
    m_fit, m_note = memory_fit(ns, list(rows["working_mem_bytes"]))
    t_claim = (t_up or t_all)
    rec: dict[str, Any] = {
        "backend": label, "kind": kind, "phase": phase, "lengths": [int(n) for n in ns],
        "block_size": rows["block_size"].iloc[0], "time_fit": t_all, "time_fit_upper": t_up,
        "memory_fit": m_fit, "memory_note": m_note,
        "doc_time": DOC_CLAIM.get(kind, ("—", "—"))[0], "doc_space": DOC_CLAIM.get(kind, ("—", "—"))[1],
        "expected_time": TIME_EXP.get(phase), "expected_space": expected_space(kind, phase),
    }
    rec["time_vs_claim"] = (compare(t_claim.exponent, rec["expected_time"]) if t_claim
                            else not_measured("fewer than 3 lengths"))
    if m_fit is not None:
        rec["memory_vs_claim"] = compare(m_fit.exponent, rec["expected_space"])
    elif m_note.startswith("0 B"):
        exp = rec["expected_space"]
        rec["memory_vs_claim"] = ("no claim" if exp is None else "matches (constant)" if exp <= TOLERANCE
                                  else "less than claimed (constant)")
    else:
        rec["memory_vs_claim"] = m_note
    return rec


def _cells(rec: dict[str, Any]) -> list[str]:
    label = rec["backend"]
    if not missing(rec["block_size"]):
        label += f" (bs {rec['block_size']:.0f})"
    mem = fit_text(rec["memory_fit"]) if rec["memory_fit"] else rec["memory_note"]
    if rec["memory_fit"] and rec["memory_note"]:
        mem += f"; {rec['memory_note']}"
    exp_t = f"{rec['expected_time']:g}" if rec["expected_time"] is not None else "?"
    exp_s = f"{rec['expected_space']:g}" if rec["expected_space"] is not None else "?"
    doc = f"time {rec['doc_time']} → N^{exp_t}; space {rec['doc_space']} → N^{exp_s}"
    return [label, rec["kind"], rec["phase"], n_range(rec["lengths"]), fit_text(rec["time_fit"]),
            fit_text(rec["time_fit_upper"]), doc, rec["time_vs_claim"], mem, rec["memory_vs_claim"]]
