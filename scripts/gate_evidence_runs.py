"""GPU evidence for the multi-run gate (issue 19), part 1: the runs.

  PYTHONPATH=. python3 scripts/gate_evidence_runs.py OUT            # on the H200
  PYTHONPATH=. python3 scripts/gate_evidence_runs.py OUT --cpu      # here: a CPU-sized dry run

Makes a K-run baseline of configs/ci-gate.yaml (`attnbench sweep --repeat K`, each run a fresh
process) in OUT/baseline/run-NN, saves it as OUT/baselines/ci-gate-<slug> (what
results/baselines/ci-gate-h200 should hold), then N further fresh runs in OUT/fresh/run-NN. Every
command, its exit code and wall time go to OUT/runs-log.json; the sweeps' output to OUT/*.log.
Then scripts/gate_evidence_analysis.py OUT judges them (on any machine, no GPU needed).
Budget: one ci-gate sweep takes ~12 s of GPU time on an H200 plus the process start; 13 runs about
3-4 minutes. The script stops starting runs once --budget-s has passed and says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CPU_CONFIG = """# CPU-sized stand-in for configs/ci-gate.yaml (dry run of the evidence scripts)
name: ci-gate-cpu
device: cpu
backends: [naive, sdpa-math]
timing: {warmup_ms: 2, min_samples: 20, max_samples: 20, max_time_s: 2}
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
  - name: decode-gqa
    phase: decode
    batch: [4]
    lengths: ["fixed:256"]
    q_heads: [4]
    kv_heads: [2]
    head_dim: [32]
    dtype: [fp32]
"""


def run(cmd: list[str], log: Path, entries: list[dict], out: Path) -> int:
    started = time.perf_counter()
    with log.open("a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.perf_counter() - started
    entries.append({"cmd": cmd, "exit_code": code, "wall_s": round(wall, 2), "log": log.name})
    (out / "runs-log.json").write_text(json.dumps(entries, indent=2) + "\n")
    print(f"[{wall:6.1f} s] exit {code}: {' '.join(cmd)}", flush=True)
    return code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cpu", action="store_true", help="dry run on a CPU with a CPU-sized config")
    ap.add_argument("--config", type=Path, default=Path("configs/ci-gate.yaml"))
    ap.add_argument("--k", type=int, default=5, help="baseline runs")
    ap.add_argument("--fresh", type=int, default=8, help="further fresh runs")
    ap.add_argument("--budget-s", type=float, default=330.0, help="start no sweep after this many seconds")
    args = ap.parse_args()
    if args.k < 3 or args.fresh < 2:
        print("--k must be >= 3 and --fresh >= 2", file=sys.stderr)
        return 2
    out: Path = args.out
    if (out / "baseline").exists() or (out / "fresh").exists():
        print(f"{out} already holds runs; give a new directory", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    config = args.config
    device = ["--device", "cuda"]
    if args.cpu:
        config = out / "ci-gate-cpu.yaml"
        config.write_text(CPU_CONFIG)
        device = ["--device", "cpu"]
    py = [sys.executable, "-m", "attnbench"]
    entries: list[dict] = []
    started = time.perf_counter()
    code = run([*py, "sweep", str(config), "--repeat", str(args.k), "--out", str(out / "baseline"), *device],
               out / "baseline.log", entries, out)  # fmt: skip
    if code:
        return code
    slug = subprocess.run([*py, "baseline", "slug", str(out / "baseline")], capture_output=True, text=True)
    name = f"ci-gate-{slug.stdout.strip() or 'unknown'}"
    save = [*py, "baseline", "save", str(out / "baseline"), name, "--baselines-dir", str(out / "baselines")]
    code = run(save, out / "baseline.log", entries, out)
    per_run = (time.perf_counter() - started) / args.k
    left = args.budget_s - (time.perf_counter() - started)
    fresh = min(args.fresh, max(2, int(left // max(per_run, 1e-3))))
    if fresh < args.fresh:
        print(
            f"budget: {per_run:.1f} s per run leaves room for {fresh} of {args.fresh} fresh runs", flush=True
        )
    code = run([*py, "sweep", str(config), "--repeat", str(fresh), "--out", str(out / "fresh"), *device],
               out / "fresh.log", entries, out) or code  # fmt: skip
    total = time.perf_counter() - started
    print(f"done in {total:.0f} s ({per_run:.1f} s per run): baseline {out / 'baselines' / name}, "
          f"{fresh} fresh runs in {out / 'fresh'}")  # fmt: skip
    print(f"next: PYTHONPATH=. python3 scripts/gate_evidence_analysis.py {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
