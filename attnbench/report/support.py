"""The measured support matrix: for every backend, which head dims, dtypes, block sizes, patterns and
phases ran, were skipped (with the reasons) or failed in this run, and its one-time cost before the
first output (compile or first call, in seconds).

It answers the comparison document's "GPU Support Matrix" rows (FlashAttention "Head sizes: only
[32, ..., 256] (compiled)", "Data types: FP16, BF16") from rows instead of from the document.

A value of an axis is `ok` when at least one point with it ran ok, else `failed` when one failed or
came out incorrect, else `skipped` (every point with it was skipped). "contiguous" in the block size
column is a point without a paged KV cache. A run whose rows carry no `pattern` column predates the
pattern axes: every point is shown as pattern "none".
"""

from __future__ import annotations

from typing import Any, TypedDict

import pandas as pd

from attnbench.report.load import RunData
from attnbench.report.table import Table, not_measured, num

AXES = (("phase", "Phases"), ("head_dim", "Head dims"), ("dtype", "Dtypes"), ("block_size", "Block sizes"),
        ("pattern", "Patterns"))
FAILED = ("failed", "incorrect")
REASON_CHARS = 90  # a reason is cut here in the table; the "Points that did not run" table has it whole


def _value_text(col: str, value: Any) -> str:  # a frame cell: a number, a string or missing
    if col == "block_size" and pd.isna(value):
        return "contiguous"
    if col == "head_dim":
        return str(int(value))
    if col == "block_size":
        return str(int(value))
    return str(value)


def _sort_key(value: object) -> tuple:
    if isinstance(value, (int, float)) and not pd.isna(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def axis_status(rows: pd.DataFrame, col: str) -> dict[str, list[str]]:
    """{'ok': [...], 'skipped': [...], 'failed': [...]}: each value of `col` under its best status."""
    out: dict[str, list[str]] = {"ok": [], "skipped": [], "failed": []}
    # one pass in plain Python (a missing value is None): a mask per value over the frame cost more
    # than the whole table's arithmetic
    seen: dict[object, set[str]] = {}
    for value, status in zip(rows[col].tolist(), rows["status"].tolist(), strict=True):
        seen.setdefault(None if pd.isna(value) else value, set()).add(status)
    for value in sorted(seen, key=_sort_key):
        statuses = seen[value]
        kind = "ok" if "ok" in statuses else ("failed" if statuses & set(FAILED) else "skipped")
        out[kind].append(_value_text(col, value if value is not None else float("nan")))
    return out


def axis_cell(status: dict[str, list[str]]) -> str:
    parts = [f"{k} {', '.join(v)}" for k, v in status.items() if v]
    return "; ".join(parts) if parts else "—"


class OneTimeCost(TypedDict):
    """A backend's one-time cost before its first output (see one_time_cost)."""

    seconds: float  # median over the ok points
    max: float  # seconds, the worst point
    n: int  # ok points that carry the column
    what: str  # "first call" | "compile"
    column: str  # first_call_s | compile_s


def one_time_cost(rows: pd.DataFrame) -> OneTimeCost | None:
    """The backend's one-time cost before its first output, in seconds: the median over its ok points
    of first_call_s (prepare + first synchronised call, measured by the runner for every backend)
    where rows carry it, else of compile_s (what a compiling backend reported; runs before
    first_call_s). None when neither was recorded."""
    ok = rows[rows["status"] == "ok"]
    for col, what in (("first_call_s", "first call"), ("compile_s", "compile")):
        if col in ok.columns:
            vals = pd.to_numeric(ok[col], errors="coerce").dropna()
            if not vals.empty:
                return {"seconds": float(vals.median()), "max": float(vals.max()), "n": len(vals),
                        "what": what, "column": col}
    return None


def cost_text(cost: OneTimeCost | None) -> str:
    if cost is None:
        return not_measured("rows carry no compile_s or first_call_s")
    points = "point" if cost["n"] == 1 else "points"
    return f"{num(cost['seconds'])} s median {cost['what']} (max {num(cost['max'])} s, {cost['n']} {points})"


def _reasons(rows: pd.DataFrame) -> str:
    bad = rows[rows["status"] != "ok"]
    if bad.empty:
        return "—"
    groups = bad.groupby(["status", "reason"], dropna=False).size().sort_values(ascending=False)
    parts = []
    for (status, reason), n in groups.items():
        text = str(reason) if isinstance(reason, str) and reason else "no reason given"
        text = text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"
        parts.append(f"{status} x{n}: {text}")
    return " | ".join(parts)


def build(run: RunData) -> Table:
    table = Table(
        key="support",
        title="Measured support matrix",
        intro="For every backend, the values of each axis that ran ok, were skipped or failed on "
        f"{run.gpu} in this run (the document's GPU Support Matrix, head sizes and data types, answered "
        "from rows), why points did not run, and the one-time cost before a backend's first output.",
        columns=["Backend", "Family", *[title for _, title in AXES], "Not run (status x points: reason)",
                 "Compile / first call"],
    )
    df = run.df
    if df.empty:
        table.empty_reason = "the run has no rows"
        return table
    df = df.copy()
    if "pattern" not in df.columns or (
        "pattern_recorded" in df.columns and not df["pattern_recorded"].any()
    ):
        df["pattern"] = "none"
        table.notes.append("The rows carry no pattern column (the run predates the pattern axes): every "
                           "point is shown as pattern none.")
    df["pattern"] = df["pattern"].fillna("none")
    for backend, rows in df.groupby("backend", sort=True):
        family = str(rows["family"].dropna().iloc[0]) if rows["family"].notna().any() else "?"
        axes = {col: axis_status(rows, col) for col, _ in AXES}
        cost = one_time_cost(rows)
        table.rows.append([str(backend), family, *[axis_cell(axes[col]) for col, _ in AXES], _reasons(rows),
                           cost_text(cost)])
        table.records.append({"backend": str(backend), "family": family, "axes": axes, "cost": cost,
                              "points": len(rows), "ok": int((rows["status"] == "ok").sum())})
    table.notes += _document_notes(table.records)
    return table


def _document_notes(records: list[dict]) -> list[str]:
    """The document's FlashAttention head-size and dtype rows against what the flash backends ran."""
    flash = [r for r in records if r["family"] == "flash"]
    if not flash:
        return ["Document: FlashAttention head sizes [32, 64, 96, 128, 160, 192, 224, 256], FP16/BF16: not "
                "measured (no flash-family rows)."]
    notes = []
    for axis, doc in (("head_dim", "head sizes only [32, 64, 96, 128, 160, 192, 224, 256] (compiled)"),
                      ("dtype", "data types FP16, BF16")):
        parts = [f"{r['backend']} {axis_cell(r['axes'][axis])}" for r in flash]
        notes.append(f"Document: FlashAttention {doc}. Measured ({axis}): " + "; ".join(parts) + ".")
    return notes


def compile_summary(df: pd.DataFrame, kind: str) -> str:
    """The summary table's compile-time cell for one side: the median over that side's backends of
    each backend's one-time cost (one_time_cost), with units and the backend count."""
    rows = df[df["kind"] == kind]
    if rows.empty:
        return not_measured(f"no {kind} rows")
    costs = {}
    for label, g in rows.groupby("label"):
        cost = one_time_cost(g)
        if cost is not None:
            costs[label] = cost
    if not costs:
        return not_measured("rows carry no compile_s or first_call_s")
    median = float(pd.Series([c["seconds"] for c in costs.values()]).median())
    kinds = sorted({c["what"] for c in costs.values()})
    what = " / ".join(kinds)
    names = ", ".join(f"{k} {num(c['seconds'])} s" for k, c in sorted(costs.items()))
    backends = "backend" if len(costs) == 1 else "backends"
    return f"{num(median)} s median {what} ({len(costs)} {backends}: {names})"
