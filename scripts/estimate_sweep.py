"""Estimate a sweep config's points, wall time and largest case memory from a reference run's rows,
without a GPU (attnbench/runner/estimate.py says how). Exit 1 when it exceeds --budget-s or --memory-gb.

    PYTHONPATH=. python scripts/estimate_sweep.py configs/h200.yaml results/baselines/h200 \
        --budget-s 360 --memory-gb 141
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("reference", type=Path, help="a run directory (manifest.json, results.jsonl)")
    parser.add_argument("--budget-s", type=float, default=None, help="fail above this many seconds")
    parser.add_argument("--memory-gb", type=float, default=None, help="fail when a case may need more")
    parser.add_argument("--assume-available", default="",
                        help="comma-separated backends the reference run lacks, counted as run")
    args = parser.parse_args(argv)

    from attnbench.backends import all_backends, backend_names
    from attnbench.config.overrides import load_sweep_config
    from attnbench.runner.estimate import estimate, read_reference
    from attnbench.runner.plan import build_plan

    cfg = load_sweep_config(args.config, None, None, backend_names())
    plan = build_plan(cfg, "cuda")
    manifest, rows = read_reference(args.reference)
    naive = {n for n, b in all_backends().items() if b.family == "naive"}
    also = frozenset(n.strip() for n in args.assume_available.split(",") if n.strip())
    est = estimate(plan, manifest, rows, naive, also)
    for wl, secs in est.per_workload.items():
        print(f"{wl:24s} {est.points_per_workload[wl]:4d} points  {secs:7.1f} s")
    print(f"total: {est.points} points ({est.matched} measured in {args.reference}), "
          f"{est.seconds:.0f} s estimated ({est.fixed_seconds:.0f} s fixed)")
    print(f"largest case: {est.peak_case_bytes / 1e9:.1f} GB upper bound, {est.peak_case_id}")
    over = []
    if args.budget_s is not None and est.seconds > args.budget_s:
        over.append(f"{est.seconds:.0f} s > budget {args.budget_s:.0f} s")
    if args.memory_gb is not None and est.peak_case_bytes > args.memory_gb * 1e9:
        over.append(f"{est.peak_case_bytes / 1e9:.1f} GB > {args.memory_gb:.0f} GB")
    if over:
        print("over: " + "; ".join(over), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
