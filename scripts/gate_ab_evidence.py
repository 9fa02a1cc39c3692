"""GPU evidence for the gate's A/B mode (issue 19), part 3.

  PYTHONPATH=. python3 scripts/gate_ab_evidence.py OUT            # on the H200
  PYTHONPATH=. python3 scripts/gate_ab_evidence.py OUT --cpu      # here: a CPU-sized dry run

Runs `attnbench gate ab` on triton-flash causal prefill B4 N4096 of configs/ci-gate.yaml, each run
a fresh process: --runs A/A runs (the worktree against itself) and --runs runs against B =
plugin:scripts.gate_plant_plugin, which adds calibrated device work (torch.cuda._sleep cycles) worth
--fraction (3%) of the kernel's measured time; A/A and planted runs alternate. Counts A/A passes
(exit 0) and planted catches (exit 1 with the point SLOW), with each run's paired ratio and the
fraction the plugin measured it planted. Writes OUT/ab/*.json (every pair), OUT/ab/summary.json and
summary.md. Budget: ~8-10 s per run (process start, inputs, compile from the Triton cache, 200 pairs
of ~2 ms); no run starts after --budget-s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CPU_CONFIG = """# CPU-sized stand-in for the ci-gate prefill point (dry run)
name: ab-cpu
device: cpu
workloads:
  - name: prefill
    phase: prefill
    batch: [2]
    lengths: ["fixed:64"]
    q_heads: [2]
    kv_heads: [2]
    head_dim: [32]
    dtype: [fp32]
    causal: [true]
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument(
        "--cpu", action="store_true", help="dry run on a CPU (naive backend, 2x plant, loose rule)"
    )
    ap.add_argument("--runs", type=int, default=10, help="A/A runs, and as many planted runs")
    ap.add_argument(
        "--fraction", type=float, default=0.03, help="planted slowdown (fraction of the call's time)"
    )
    ap.add_argument("--budget-s", type=float, default=240.0)
    args = ap.parse_args()
    ab_dir = args.out / "ab"
    if ab_dir.exists():
        print(f"{ab_dir} exists; give a new OUT", file=sys.stderr)
        return 2
    ab_dir.mkdir(parents=True)
    config, backend, device, fraction = Path("configs/ci-gate.yaml"), "triton-flash", "cuda", args.fraction
    loose: list[str] = []
    if args.cpu:
        config = ab_dir / "ab-cpu.yaml"
        config.write_text(CPU_CONFIG)
        backend, device, fraction = "naive", "cpu", 1.0
        loose = ["--threshold", "0.2", "--cap", "0.5", "--pairs", "40"]  # a shared CPU is noisy
    env = {**os.environ, "ATTNBENCH_PLANT_BACKEND": backend, "ATTNBENCH_PLANT_FRACTION": str(fraction),
           "ATTNBENCH_PLANT_CASE": "prefill/"}  # fmt: skip
    base = [sys.executable, "-m", "attnbench", "gate", "ab", "--config", str(config), "--backends", backend,
            "--workloads", "prefill", "--device", device, *loose]  # fmt: skip
    records = []
    started = time.perf_counter()
    for i in range(1, args.runs + 1):
        for kind, b in (("aa", "worktree"), ("planted", "plugin:scripts.gate_plant_plugin")):
            if time.perf_counter() - started > args.budget_s:
                print(f"budget {args.budget_s:.0f} s spent: stopping before {kind} run {i}", flush=True)
                break
            name = f"{kind}-{i:02d}"
            cmd = [*base, "--a", "worktree", "--b", b, "--json", str(ab_dir / f"{name}.json"),
                   "--summary", str(ab_dir / f"{name}.md")]  # fmt: skip
            t0 = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            (ab_dir / f"{name}.log").write_text(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}")
            rec = {
                "run": name,
                "kind": kind,
                "exit_code": done.returncode,
                "wall_s": round(time.perf_counter() - t0, 2),
            }
            doc_path = ab_dir / f"{name}.json"
            if doc_path.is_file():
                doc = json.loads(doc_path.read_text())
                points = [
                    p
                    for p in doc["points"]
                    if p["backend"] == backend and p["case_id"].startswith("prefill/")
                ]
                measured = [m for m in doc["measured"] if m["backend"] == backend]
                if points:
                    rec.update(verdict=points[0]["verdict"], ratio=points[0]["ratio"], low=points[0]["low"],
                               high=points[0]["high"], pairs=points[0]["n_baseline"])  # fmt: skip
                if measured:
                    rec["planted_fraction"] = measured[0]["b_info"].get("planted_fraction")
            records.append(rec)
            print(f"[{rec['wall_s']:5.1f} s] {name}: exit {rec['exit_code']} {rec.get('verdict')} "
                  f"ratio {rec.get('ratio')} planted {rec.get('planted_fraction')}", flush=True)  # fmt: skip
    aa = [r for r in records if r["kind"] == "aa"]
    pl = [r for r in records if r["kind"] == "planted"]
    aa_pass = sum(r["exit_code"] == 0 for r in aa)
    caught = sum(r["exit_code"] == 1 and r.get("verdict") == "SLOW" for r in pl)
    summary = {
        "config": str(config), "backend": backend, "device": device, "target_fraction": fraction,
        "aa_runs": len(aa), "aa_pass": aa_pass, "planted_runs": len(pl), "planted_caught": caught,
        "passed": len(aa) >= args.runs and aa_pass == len(aa) and caught >= 0.9 * args.runs,
        "wall_s": round(time.perf_counter() - started, 1), "runs": records,
    }  # fmt: skip
    (ab_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# A/B gate evidence: {backend} causal prefill, {device}", "",
        f"- A/A (worktree vs worktree): {aa_pass}/{len(aa)} pass",
        f"- planted +{fraction:.1%} (calibrated device work in B): caught {caught}/{len(pl)}",
        f"- wall time {summary['wall_s']} s; verdict {'PASS' if summary['passed'] else 'FAIL'}", "",
        "| run | exit | verdict | ratio | interval | pairs | planted (measured) |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]  # fmt: skip
    for r in records:
        iv = (
            f"[{r['low']:.4f}, {r['high']:.4f}]"
            if r.get("low") is not None and r.get("high") is not None
            else "-"
        )
        ratio = f"{r['ratio']:.4f}" if r.get("ratio") is not None else "-"
        pf = f"{r['planted_fraction']:.2%}" if r.get("planted_fraction") is not None else "-"
        cells = [r["run"], r["exit_code"], r.get("verdict", "-"), ratio, iv, r.get("pairs", "-"), pf]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    (ab_dir / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:5]))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
