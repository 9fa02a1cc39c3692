"""The KV-cache fragmentation study (fragmentation.json from `attnbench fragmentation`) as a table,
and the comparisons the claims check draws from it.

Schema: {"config_name", "setup", "rows": [{"dataset", "policy" (orca-max | orca-pow2 | orca-oracle |
paged), "block_size", "token_states", "reserved", "internal", "external", "other",
"mean_batched_requests", "paper_token_states"}], "notes": [...], "window": null or the windowed-cache
section (report/fragmentation_window.py)}. The memory shares are fractions of
the KV budget or percentages; the scale is detected from their sum (about 1 or about 100).
"""

from __future__ import annotations

from typing import Any

from attnbench.report.load import RunData
from attnbench.report.table import Table, missing, not_measured, num, pct

SHARES = ("token_states", "reserved", "internal", "external", "other")
WASTE = ("reserved", "internal", "external")
PREFERRED_BLOCK = 16


def _scale(rows: list[dict[str, Any]]) -> float:
    """1.0 when shares are fractions, 0.01 when they are percentages."""
    sums = [sum(float(r.get(k) or 0) for k in SHARES) for r in rows]
    return 0.01 if sums and max(sums) > 1.5 else 1.0


def share(row: dict[str, Any], key: str, scale: float) -> float:
    value: Any = row.get(key)  # a JSON value, or None when absent: missing() takes both
    return float("nan") if missing(value) else float(value) * scale


def _paper(row: dict[str, Any]) -> float:
    raw: Any = row.get("paper_token_states")  # a JSON value, or None when absent: missing() takes both
    if missing(raw):
        return float("nan")
    value = float(raw)
    return value / 100 if value > 1 else value  # paper figures are read as % or fraction


def _paged_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    paged = [r for r in rows if r.get("policy") == "paged"]
    if not paged:
        return None
    preferred = [r for r in paged if r.get("block_size") == PREFERRED_BLOCK]
    return preferred[0] if preferred else max(paged, key=lambda r: float(r.get("mean_batched_requests") or 0))


def _by_dataset(study: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in study.get("rows", []):
        if isinstance(r, dict):
            out.setdefault(str(r.get("dataset")), []).append(r)
    return out


def batched_ratios(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset and Orca policy: paged mean batched requests / the policy's."""
    out = []
    for ds, rows in _by_dataset(study).items():
        paged = _paged_row(rows)
        if paged is None or missing(paged.get("mean_batched_requests")):
            continue
        for r in rows:
            base: Any = r.get("mean_batched_requests")  # a JSON value, or None: missing() takes both
            if str(r.get("policy", "")).startswith("orca") and not missing(base) and float(base) > 0:
                out.append({"dataset": ds, "policy": r["policy"], "block_size": paged.get("block_size"),
                            "ratio": float(paged["mean_batched_requests"]) / float(base)})
    return out


def waste_comparison(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per dataset and Orca policy: wasted share (reserved + internal + external), paged vs Orca."""
    scale = _scale(study.get("rows", []))
    out = []
    for ds, rows in _by_dataset(study).items():
        paged = _paged_row(rows)
        if paged is None:
            continue
        pw = sum(share(paged, k, scale) for k in WASTE)
        for r in rows:
            if str(r.get("policy", "")).startswith("orca"):
                out.append({"dataset": ds, "policy": r["policy"], "paged": pw,
                            "block_size": paged.get("block_size"),
                            "orca": sum(share(r, k, scale) for k in WASTE)})
    return out


def build(run: RunData) -> Table:
    table = Table(
        key="fragmentation",
        title="KV-cache fragmentation study",
        intro="Share of the KV-cache memory holding token states, reserved for tokens not generated yet, "
        "lost to internal fragmentation (inside allocations, never used) and to external "
        "fragmentation (free but unusable), per allocation policy (vLLM paper definitions), with "
        "the mean number of requests batched, and the vLLM paper's figures where the study gives them.",
        columns=["Dataset", "Policy", "Block size", "Token states", "Reserved", "Internal", "External",
                 "Other", "Mean batched requests", "Paper: token states", "Paper: batched requests"],
    )
    study = run.fragmentation
    if study is None:
        table.empty_reason = not_measured("no fragmentation.json in the run directory and no --fragmentation")
        return table
    rows = [r for r in study.get("rows", []) if isinstance(r, dict)]
    scale = _scale(rows)
    table.notes.append(f"Source: {run.fragmentation_source} (config {study.get('config_name', '?')}).")
    setup = study.get("setup")
    if isinstance(setup, dict) and setup:
        table.notes.append("Setup: " + ", ".join(f"{k} = {v}" for k, v in setup.items()) + ".")
    table.notes += [str(n) for n in study.get("notes", []) if n]
    for r in rows:
        rec: dict[str, Any] = {k: share(r, k, scale) for k in SHARES}
        rec.update(dataset=r.get("dataset"), policy=r.get("policy"), block_size=r.get("block_size"),
                   mean_batched_requests=r.get("mean_batched_requests"), paper_token_states=_paper(r),
                   paper_mean_batched_requests=r.get("paper_mean_batched_requests"))
        table.records.append(rec)
        bs = "—" if missing(r.get("block_size")) else str(r.get("block_size"))
        table.rows.append([str(r.get("dataset")), str(r.get("policy")), bs, *[pct(rec[k]) for k in SHARES],
                           num(rec["mean_batched_requests"]), pct(rec["paper_token_states"]),
                           num(rec["paper_mean_batched_requests"])])
    if not table.rows:
        table.empty_reason = "the fragmentation study has no rows"
    table.notes += load_batch_notes(study)
    from attnbench.report.fragmentation_window import window_notes

    table.notes += window_notes(study)
    return table


def load_batch_notes(study: dict) -> list[str]:
    """Per further load (paper-rate): mean batched requests simulated / the paper's Fig. 13, per row
    the paper has a figure for (the Figure 13 rows: Orca policies, paged at the paper's block size)."""
    notes = []
    for load, rows in (study.get("rows_by_load") or {}).items():
        parts = [f"{r.get('dataset')} {r.get('policy')} {num(r.get('mean_batched_requests'))} / "
                 f"{num(r['paper_mean_batched_requests'])} "
                 f"({num(float(r['mean_batched_requests']) / float(r['paper_mean_batched_requests']))}x)"
                 for r in rows if isinstance(r, dict) and not missing(r.get("paper_mean_batched_requests"))
                 and not missing(r.get("mean_batched_requests"))]
        if parts:
            notes.append(f"Load {load}: mean batched requests simulated / paper Fig. 13: {'; '.join(parts)}.")
    return notes
