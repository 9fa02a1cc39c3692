"""When to use each: per workload class and phase, the fastest backend and its margin, and whether
the flash or the paged side wins, beside the comparison document's recommendation.

Per case, each backend's best row is taken (fastest block size, shuffled blocks preferred). Among the
backends that ran the most of the class's cases, the winner has the smallest geometric-mean
slowdown against the per-case best; its margin is the geometric mean of the runner-up's time over
the winner's on the cases both ran, the runner-up being the backend sharing the most cases with the
winner at the smallest such ratio. "wins" counts the cases where the winner was fastest.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.report.classify import CLASSES, add_classes
from attnbench.report.load import RunData
from attnbench.report.select import best_per_label, eager_times, paired, paired_summary
from attnbench.report.table import Table, geomean, not_measured, ratio


def _fastest(labels: list[str], times: dict[str, float]) -> str:
    """The label of the least time (a label without one counts as infinite), the first on a tie."""
    return min(labels, key=lambda lab: times.get(lab, float("inf")))


def winner(best: pd.DataFrame) -> dict[str, Any]:
    """Winner, wins, runner-up and margin over a frame of best rows (problem, label, latency)."""
    # problem -> label -> fastest time, in plain dicts: a few hundred rows, where each pandas
    # operation's overhead (this runs per class and phase) cost more than the arithmetic
    lat: dict[str, dict[str, float]] = {}
    for problem, label, ms in zip(best["problem"], best["label"], best["latency_ms_p50"], strict=True):
        if ms != ms:  # NaN: not a time
            continue
        times = lat.setdefault(problem, {})
        times[label] = min(ms, times.get(label, ms))
    problems = sorted(lat)
    labels = sorted({lab for times in lat.values() for lab in times})
    # per problem, the fastest label (the first in name order on a tie) and the best time
    fastest = {p: _fastest(labels, lat[p]) for p in problems}
    coverage = {lab: sum(lab in lat[p] for p in problems) for lab in labels}
    candidates = [lab for lab in labels if coverage[lab] == max(coverage.values())]
    gm = {lab: geomean([lat[p][lab] / lat[p][fastest[p]] for p in problems if lab in lat[p]])
          for lab in candidates}
    top = min(candidates, key=lambda lab: (gm[lab], lab))
    rivals = []
    for lab in labels:
        shared = [p for p in problems if lab != top and lab in lat[p] and top in lat[p]]
        if shared:
            rivals.append((-len(shared), geomean([lat[p][lab] / lat[p][top] for p in shared]), lab))
    out = {"winner": top, "wins": sum(fastest[p] == top for p in problems), "cases": len(problems),
           "covered": coverage[top], "slowdown": gm[top], "runner_up": None, "margin": float("nan")}
    if rivals:
        _, margin, lab = sorted(rivals)[0]
        out.update(runner_up=lab, margin=margin)
    return out


def build(run: RunData) -> Table:
    table = Table(
        key="when_to_use",
        title="When to use each",
        intro="For each workload class in the run (a case can be in several): the fastest backend (smallest "
        "geometric-mean slowdown against the per-case best, among the backends that ran the most of the "
        "class's cases; 'wins' counts cases where it was fastest), how much faster it is than the runner-up "
        "(geometric mean over shared cases), and the best paged against the best flash backend "
        "(time ratio > 1: flash faster). Times are the device's (latency_ms_p50); the eager column uses, per "
        "point, the larger of the device time and the host's time per eager call (call_ms_p50): what a loop "
        "of eager calls pays, where launch-bound points are decided by the host. Serving engines run "
        "decode under CUDA graphs, where the device-time column applies.",
        columns=["Workload class", "Phase", "Cases", "Fastest backend (wins/cases)", "Margin over runner-up",
                 "Best paged / best flash time", "Same, eager calls", "Document recommends",
                 "Measurement agrees"],
    )
    ok = add_classes(run.ok)
    for cls in CLASSES:
        table.notes.append(f"{cls.name}: {cls.rule}.")
        in_cls = ok[ok["classes"].apply(lambda c, k=cls.key: k in c)] if not ok.empty else ok
        if in_cls.empty:
            reason = not_measured("no case of this class in the run")
            table.rows.append([cls.name, "—", "0", reason, "—", "—", "—", cls.doc_says or "—", "—"])
            table.records.append({"class": cls.key, "phase": None, "cases": 0})
            continue
        for phase in ("prefill", "decode", "mixed"):
            rows = in_cls[in_cls["phase"] == phase]
            if rows.empty:
                continue
            rec = {"class": cls.key, "phase": phase, **winner(best_per_label(rows))}
            pair = paired_summary(paired(rows, "paged", "flash"))
            rec["paged_over_flash"] = pair["geomean"]
            rec["pair_cases"] = pair["n"]
            margin = "—"
            if rec["runner_up"] is not None:
                margin = f"{ratio(rec['margin'])} vs {rec['runner_up']}"
            if pair["n"]:
                side = "flash faster" if pair["geomean"] > 1 else "paged faster"
                pair_txt = f"{ratio(pair['geomean'])} ({side}, {pair['n']} case(s))"
            else:
                pair_txt = not_measured("no case with both a paged and a flash row")
            agrees = "—"
            if cls.doc_kind and pair["n"]:
                measured = "flash" if pair["geomean"] > 1 else "paged"
                rec["agrees"] = measured == cls.doc_kind
                agrees = "yes" if rec["agrees"] else f"no ({measured} side faster)"
            elif cls.doc_kind:
                agrees = not_measured("needs paged and flash rows")
            eager_rows = eager_times(rows)
            eager_pairs = paired(eager_rows, "paged", "flash") if not eager_rows.empty else eager_rows
            eager = paired_summary(eager_pairs)
            rec["paged_over_flash_eager"] = eager["geomean"]
            if eager["n"]:
                side = "flash faster" if eager["geomean"] > 1 else "paged faster"
                eager_txt = f"{ratio(eager['geomean'])} ({side})"
            else:
                eager_txt = not_measured("no host call time in these rows") if pair["n"] else "—"
            table.rows.append([cls.name, phase, str(rec["cases"]),
                               f"{rec['winner']} ({rec['wins']}/{rec['cases']})", margin, pair_txt,
                               eager_txt, cls.doc_says or "no recommendation", agrees])
            table.records.append(rec)
    if ok.empty:
        table.notes.append("No ok rows: " + not_measured("nothing to compare"))
    return table

