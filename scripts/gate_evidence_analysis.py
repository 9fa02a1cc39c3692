"""GPU evidence for the multi-run gate (issue 19), part 2: the judgement (runs on a CPU).

  PYTHONPATH=. python3 scripts/gate_evidence_analysis.py OUT [--evidence-dir DIR]

Reads the runs scripts/gate_evidence_runs.py wrote (OUT/baseline/run-NN, OUT/fresh/run-NN) and
checks, with the gate's own code (attnbench.gate.runs.compare_sides, default rules):
  1. every fresh run passes against the K-run baseline;
  2. every leave-out A/A combination passes: any K of all the runs as the baseline, any other run
     as the current one (C(13, 5) x 8 = 10,296 gates for 5 + 8 runs);
  3. a slowdown planted into the samples of the stable points (workloads decode-gqa and
     decode-long: every sample and the p50 of the current run multiplied by 1 + s) is SLOW in
     >= 80% of point trials for s = 5%, over the same combinations; the rate for 3% is reported.
A planted point that comes out NOISY or SAME counts as missed. Writes summary.json, summary.md and
the gate's Markdown for each fresh run to DIR (default OUT/evidence; for the commit:
results/baselines/ci-gate-h200/evidence). Exit 0 when 1-3 hold, 1 when one does not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from attnbench.gate import output as gate_output
from attnbench.gate import stats as gate_stats
from attnbench.gate.baselines import run_dirs
from attnbench.gate.runs import BaselineSet, GateError, RunSide, combine_runs, compare_sides, read_run

STABLE_WORKLOADS = ("decode-gqa/", "decode-long/")
PLANTS = (0.05, 0.03)
REQUIRED_CATCH = 0.80


def planted(side: RunSide, factor: float, stable: set[tuple[str, str]]) -> RunSide:
    rows = dict(side.rows)
    for key in stable:
        r = rows.get(key)
        if r is None or r.get("status") != "ok":
            continue
        r = dict(r)
        r["samples_ms"] = [x * factor for x in r.get("samples_ms") or []]
        if isinstance(r.get("latency_ms_p50"), (int, float)):
            r["latency_ms_p50"] *= factor
        rows[key] = r
    return RunSide(f"{side.label}+{factor - 1:.0%}", side.path, side.manifest, rows, side.duplicates)


def spread_table(runs: list[RunSide], baseline: BaselineSet, fresh: list[RunSide]) -> list[dict]:
    """Per point: the between-run sd over all runs, the baseline's tolerance, and fresh runs' verdicts."""
    out = []
    res0 = compare_sides(baseline, fresh[0])
    for p in res0.points:
        meds = [
            float(np.median(r.rows[p.key]["samples_ms"]))
            for r in runs
            if p.key in r.rows and r.rows[p.key].get("status") == "ok" and r.rows[p.key].get("samples_ms")
        ]
        sd_all = float(np.std(np.log(meds), ddof=1)) if len(meds) > 1 else None
        out.append({
            "case_id": p.case_id, "backend": p.backend, "runs_with_samples": len(meds),
            "median_ms": float(np.median(meds)) if meds else None,
            "between_run_sd_all_runs": sd_all, "baseline_tolerance": p.tolerance,
            "baseline_spread": p.spread, "verdict_vs_first_fresh": p.verdict,
            "stable": p.case_id.startswith(STABLE_WORKLOADS),
        })  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--evidence-dir", type=Path, default=None)
    ap.add_argument("--max-combos", type=int, default=0, help="0: every combination; else a seeded sample")
    ap.add_argument("--current-runs", type=int, default=1,
                    help="M: the current side is M runs, each point from its median run (gate.combine_runs)")
    args = ap.parse_args()
    m = args.current_runs
    base_dirs, fresh_dirs = run_dirs(args.out / "baseline"), run_dirs(args.out / "fresh")
    if len(base_dirs) < 3 or len(fresh_dirs) < 2:
        print(f"{args.out}: need >= 3 runs in baseline/ and >= 2 in fresh/ "
              f"(found {len(base_dirs)}, {len(fresh_dirs)})", file=sys.stderr)  # fmt: skip
        return 2
    evidence = args.evidence_dir or args.out / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    base_runs = [read_run(d, f"baseline/{d.name}", "baseline") for d in base_dirs]
    fresh_runs = [read_run(d, f"fresh/{d.name}", "current") for d in fresh_dirs]
    k = len(base_runs)
    baseline = BaselineSet(str(args.out / "baseline"), args.out / "baseline", base_runs)
    started = time.perf_counter()

    # 1. fresh runs against the baseline (with M > 1: consecutive groups of M fresh runs)
    def side(runs: list[RunSide]) -> RunSide:
        if len(runs) == 1:
            return runs[0]
        return combine_runs("+".join(r.label for r in runs), runs[0].path, runs)

    groups = [fresh_runs[i:i + m] for i in range(0, len(fresh_runs) - m + 1, m)]
    fresh_results = []
    for run in (side(g) for g in groups):
        try:
            res = compare_sides(baseline, run)
        except GateError as e:
            fresh_results.append({"run": run.label, "exit_code": 2, "error": str(e)})
            continue
        (evidence / f"gate-{run.path.name}.md").write_text(gate_output.markdown(res))
        counts = {v: res.count(v) for v in ("SLOW", "BROKEN", "VANISHED", "FAST", "SAME", "NOISY", "UNKNOWN")}
        failing = [f"{p.case_id} [{p.backend}] {p.verdict} ratio {p.ratio}" for p in res.points
                   if p.verdict in ("SLOW", "BROKEN", "VANISHED")]  # fmt: skip
        fresh_results.append(
            {"run": run.label, "exit_code": res.exit_code, "counts": counts, "failing": failing}
        )
    fresh_pass = all(r["exit_code"] == 0 for r in fresh_results)

    # 2 and 3. leave-out combinations over every run
    pool = base_runs + fresh_runs
    combos = [
        (s, c) for s in itertools.combinations(range(len(pool)), k)
        for c in itertools.combinations([i for i in range(len(pool)) if i not in s], m)
    ]  # fmt: skip
    if args.max_combos and len(combos) > args.max_combos:
        combos = random.Random(0).sample(combos, args.max_combos)
    stable = {key for key in pool[0].rows if key[0].startswith(STABLE_WORKLOADS)}
    planted_runs = {f: [planted(r, 1 + f, stable) for r in pool] for f in PLANTS}
    aa_fail, aa_examples = 0, []
    catches = {f: Counter() for f in PLANTS}  # verdict counts over stable point trials
    per_point = {f: {key: Counter() for key in stable} for f in PLANTS}
    for s, c in combos:
        b = BaselineSet("combo", args.out, [pool[i] for i in s])
        res = compare_sides(b, side([pool[i] for i in c]))
        if res.exit_code != 0:
            aa_fail += 1
            if len(aa_examples) < 10:
                bad = [f"{p.case_id} [{p.backend}] {p.verdict} {p.ratio}" for p in res.points if p.verdict in
                       ("SLOW", "BROKEN", "VANISHED")] or [res.problem]  # fmt: skip
                aa_examples.append(
                    {"baseline": [pool[i].label for i in s], "current": [pool[i].label for i in c],
                     "failing": bad}
                )
        for f in PLANTS:
            for p in compare_sides(b, side([planted_runs[f][i] for i in c])).points:
                if p.key in stable and p.verdict != "UNKNOWN":
                    catches[f][p.verdict] += 1
                    per_point[f][p.key][p.verdict] += 1
    rates = {f: catches[f]["SLOW"] / max(1, sum(catches[f].values())) for f in PLANTS}
    aa_pass = aa_fail == 0
    catch_ok = rates[0.05] >= REQUIRED_CATCH
    table = spread_table(pool, baseline, fresh_runs)
    manifest = base_runs[0].manifest
    plants = {
        f"{f:.0%}": {
            "catch_rate": rates[f],
            "verdicts": dict(catches[f]),
            "per_point": {f"{key[0]} [{key[1]}]": dict(v) for key, v in per_point[f].items()},
        }
        for f in PLANTS
    }
    summary = {
        "baseline_runs": [r.label for r in base_runs], "fresh_runs": [r.label for r in fresh_runs],
        "current_runs_per_gate": m,
        "gpu_uuid_per_run": {r.label: r.manifest.get("gpu_uuid") for r in pool},
        "gpu_name": manifest.get("gpu_name"), "config_hash": manifest.get("config_hash"),
        "rules": {"multiplier": gate_stats.DEFAULT_MULTIPLIER, "floor": gate_stats.DEFAULT_FLOOR,
                  "cap": gate_stats.DEFAULT_CAP, "k": k},
        "fresh_vs_baseline": fresh_results, "fresh_all_pass": fresh_pass,
        "leave_out_combinations": len(combos), "leave_out_failures": aa_fail,
        "leave_out_examples": aa_examples, "planted": plants,
        "required_catch_5pct": REQUIRED_CATCH, "points": table,
        "passed": fresh_pass and aa_pass and catch_ok, "analysis_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    (evidence / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    n_fresh_pass = sum(r["exit_code"] == 0 for r in fresh_results)
    md = [
        f"# Multi-run gate evidence: {summary['gpu_name']}, config hash {summary['config_hash']}", "",
        f"Baseline: {k} runs; {len(fresh_runs)} further fresh runs; rule max({gate_stats.DEFAULT_FLOOR:.0%}, "
        f"{gate_stats.DEFAULT_MULTIPLIER:g} sd sqrt(1+1/K)), sd pooled over the baseline's and the current "
        f"side's runs, NOISY over {gate_stats.DEFAULT_CAP:.0%}.", "",
        f"- fresh runs against the baseline: {n_fresh_pass}/{len(fresh_results)} pass",
        f"- leave-out A/A combinations (any {k} runs as baseline, {m} other run(s) as current): "
        f"{len(combos) - aa_fail}/{len(combos)} pass",
        *(f"- planted +{f:.0%} on the stable points (decode-gqa, decode-long): caught in {rates[f]:.1%} of "
          f"{sum(catches[f].values())} point trials (verdicts {dict(catches[f])})" for f in PLANTS),
        f"- verdict: {'PASS' if summary['passed'] else 'FAIL'} (needs every run and combination to pass and "
        f">= {REQUIRED_CATCH:.0%} caught at +5%)", "",
        "| point | backend | runs | median ms | between-run sd (all runs) | baseline tolerance | stable |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]  # fmt: skip
    for t in table:
        sd = (
            "-" if t["between_run_sd_all_runs"] is None else f"{math.expm1(t['between_run_sd_all_runs']):.2%}"
        )
        tol = "-" if t["baseline_tolerance"] is None else f"{t['baseline_tolerance']:.1%}"
        med = "-" if t["median_ms"] is None else f"{t['median_ms']:.4g}"
        md.append(f"| `{t['case_id']}` | {t['backend']} | {t['runs_with_samples']} | {med} | {sd} | {tol} | "
                  f"{'yes' if t['stable'] else ''} |")  # fmt: skip
    (evidence / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md[:10]))
    print(f"wrote {evidence / 'summary.json'} and summary.md ({summary['analysis_s']} s)")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
