"""Runs compared (only with two or more runs): per backend, every later run's time against the first
run's over the points both ran, and the representative cases' latencies run by run.

A point is matched across runs by (problem, label, block size, KV layout): the same work on the same
KV form, whatever the case ids (which carry workload names) say.
"""

from __future__ import annotations

import pandas as pd

from attnbench.report.load import RunData
from attnbench.report.select import label_order, representative, representative_row
from attnbench.report.table import Table, geomean, ms, not_measured, ratio

KEY = ["problem", "label", "block_size", "kv_layout"]


def _points(run: RunData) -> pd.Series:
    ok = run.ok.assign(block_size=run.ok["block_size"].fillna(-1))
    return ok.groupby(KEY)["latency_ms_p50"].min()


def build(runs: list[RunData]) -> Table | None:
    if len(runs) < 2:
        return None
    base = runs[0]
    others = runs[1:]
    table = Table(
        key="compare",
        title="Runs compared",
        intro=f"Each later run against the first ({base.label}): the geometric mean of the time ratio over "
        "the points both ran (same case, backend, block size and block order; < 1: faster than the "
        "first run), and the median latency on the first run's representative prefill and decode cases.",
        columns=["Backend", *[f"time vs first: {r.run_id}" for r in others],
                 *[f"prefill p50: {r.run_id}" for r in runs], *[f"decode p50: {r.run_id}" for r in runs]],
    )
    base_points = _points(base)
    reps = {phase: representative(base.ok, phase) for phase in ("prefill", "decode")}
    labels = list(dict.fromkeys(lab for r in runs for lab in label_order(r.df)))
    for label in labels:
        rec: dict = {"backend": label, "ratios": {}, "prefill_ms": {}, "decode_ms": {}}
        cells = [label]
        mine = base_points[base_points.index.get_level_values("label") == label]
        for run in others:
            theirs = _points(run)
            common = mine.index.intersection(theirs.index)
            if len(common) == 0:
                cells.append(not_measured("no shared points"))
                continue
            r = geomean(list(theirs.loc[common] / mine.loc[common]))
            rec["ratios"][run.run_id] = r
            cells.append(f"{ratio(r)} ({len(common)} points)")
        for phase in ("prefill", "decode"):
            problem = reps[phase]
            for run in runs:
                row = representative_row(run.ok, problem, label) if problem else None
                value = row["latency_ms_p50"] if row is not None else None
                rec[f"{phase}_ms"][run.run_id] = value
                cells.append(ms(value) if value is not None else "—")
        table.rows.append(cells)
        table.records.append(rec)
    return table
