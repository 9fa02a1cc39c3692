#!/bin/bash
# --devices on a host with two or more GPUs (issue 10): configs/ci-gate.yaml swept with --devices all
# and on one GPU; prints wall times, whether both runs hold the same points, and each point's median
# difference against the one-GPU run's noise (its median's 95% CI half-width).
#
#   bash scripts/gpu_multi_device_check.sh OUTDIR        # from the repository root
#
# Writes OUTDIR/summary.txt, OUTDIR/{multi,one}.log and the two runs OUTDIR/{multi,one}/. The CUDA
# kernels are built first, untimed. The multi-GPU run goes first (ORDER=one-first swaps), so any
# Triton compile that lands on a cold disk cache is charged to it, not to the baseline.
# Environment: CONFIG (default configs/ci-gate.yaml), DEVICES for the multi-GPU run (default all),
# PYTHON (python3), TIMEOUT per sweep (280 s).
set -uo pipefail
OUT="${1:?usage: bash scripts/gpu_multi_device_check.sh OUTDIR}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CONFIG="${CONFIG:-configs/ci-gate.yaml}" DEVICES="${DEVICES:-all}" ORDER="${ORDER:-multi-first}" TIMEOUT="${TIMEOUT:-280}"
PY="${PYTHON:-python3}"

"$PY" -m attnbench.cuda_build build >"$OUT/build.log" 2>&1 \
  || echo "CUDA kernel build failed (see $OUT/build.log): cuda-* points will fail in both runs"

"$PY" - "$OUT" <<'PYEOF'
import json, math, os, subprocess, sys, time
from pathlib import Path

out = Path(sys.argv[1])
config, order, timeout = os.environ["CONFIG"], os.environ["ORDER"], float(os.environ["TIMEOUT"])
lines = []

def say(text=""):
    print(text, flush=True)
    lines.append(text)

gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip().splitlines()
for g in gpus:
    say(g)
if len(gpus) < 2:
    say(f"need at least 2 GPUs, found {len(gpus)}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    sys.exit(2)

def sweep(label, extra):
    cmd = [sys.executable, "-m", "attnbench", "sweep", config, "--out", str(out / label), *extra]
    t0 = time.perf_counter()
    with open(out / f"{label}.log", "w") as log:
        try:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return rc, time.perf_counter() - t0

# the baseline is the plain one-GPU sweep (cuda:0), as the regression gate runs it
runs = [("multi", ["--devices", os.environ["DEVICES"]]), ("one", [])]
if order == "one-first":
    runs.reverse()
wall, rcs = {}, {}
for label, extra in runs:
    rcs[label], wall[label] = sweep(label, extra)
    say(f"{label:5s} {' '.join(extra) or '(one GPU)':15s} exit {rcs[label]}  wall {wall[label]:.1f} s")

def load(label):
    p = out / label
    m = json.loads((p / "manifest.json").read_text())
    rows = {}
    for line in (p / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[(r["case_id"], r["backend"])] = r
    return m, rows

try:
    m1, one = load("one")
    mm, multi = load("multi")
except (OSError, ValueError) as err:
    say(f"cannot read the runs: {err}")
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    sys.exit(1)
say(f"devices: multi {mm.get('devices')}  one {m1.get('devices')}  (gpu {mm.get('gpu_name')})")
say(f"speed-up (one / multi wall time): {wall['one'] / wall['multi']:.2f}x"
    f"   runner wall_s: one {m1.get('wall_s')} s, multi {mm.get('wall_s')} s")
same = set(one) == set(multi)
say(f"same points: {same} ({len(one)} one-GPU, {len(multi)} multi-GPU"
    + ("" if same else f"; only one-GPU {len(set(one) - set(multi))}, only multi {len(set(multi) - set(one))}")
    + ")")
status_diff = [k for k in set(one) & set(multi) if one[k]["status"] != multi[k]["status"]]
say(f"points whose status differs: {len(status_diff)}"
    + "".join(f"\n  {k[1]} {k[0]}: one {one[k]['status']}, multi {multi[k]['status']}" for k in status_diff))
say()
say(f"{'backend':14s} {'case':44s} {'gpu':>3s} {'p50 one ms':>11s} {'p50 multi':>10s} {'diff %':>7s} "
    f"{'CI one +-%':>10s} {'diff/CI':>7s}")
worst = None
for k in sorted(set(one) & set(multi)):
    a, b = one[k], multi[k]
    if a["status"] != "ok" or b["status"] != "ok":
        continue
    p1, pm = a["latency_ms_p50"], b["latency_ms_p50"]
    diff = (pm - p1) / p1
    half = (a["latency_ms_ci_high"] - a["latency_ms_ci_low"]) / 2 / p1
    ratio = abs(diff) / half if half > 0 else math.inf
    say(f"{k[1]:14s} {k[0][:44]:44s} {str(b.get('worker_device', '?')):>3s} {p1:11.4f} {pm:10.4f} "
        f"{100 * diff:+7.2f} {100 * half:10.2f} {ratio:7.2f}")
    if worst is None or abs(diff) > abs(worst[1]):
        worst = (k, diff, half, ratio)
say()
if worst is None:
    say("no point is ok in both runs")
else:
    k, diff, half, ratio = worst
    say(f"largest median difference: {100 * diff:+.2f}% ({k[1]} {k[0]}), "
        f"{ratio:.2f}x the one-GPU run's CI half-width ({100 * half:.2f}%)")
(out / "summary.txt").write_text("\n".join(lines) + "\n")
PYEOF
