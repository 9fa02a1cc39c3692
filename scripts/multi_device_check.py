"""--devices against one GPU (issue 10): is the multi-device sweep faster, and does it measure the same?

    python3 scripts/multi_device_check.py OUTDIR [--config configs/ci-gate.yaml] [--devices all]
                                          [--repeats 2] [--timeout 280] [--device cuda]

From the repository root. Steps, each a plain `attnbench sweep` in a child process:
1. (CUDA) build the CUDA kernels, untimed;
2. a warm-up sweep on one device, untimed: it fills Triton's kernel cache and the launch-config
   memo, so no timed run pays a compile or a tuning that another run skips;
3. --repeats pairs of timed sweeps, one device then all of --devices, the order alternating pair
   by pair so a drift over time (clocks, temperature) does not favour one side.
OUTDIR gets each run (warm/, one-1/, multi-1/, ...), its log and summary.txt: the wall times, the
speed-up, each worker's start and busy time, whether every run holds the same points with the same
status, and per point the multi-device median against the one-device runs: the difference, and
as the noise it is judged against, the spread between the one-device runs and their CI half-width.

`--device cpu --devices cpu,cpu` runs it on a machine without a GPU (tests do).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

Key = tuple[str, str]  # (case_id, backend)
Rows = dict[Key, dict[str, Any]]


def sweep(out: Path, label: str, config: str, extra: list[str], timeout: float) -> tuple[Any, float]:
    """Run one sweep into out/label (log in out/label.log); (exit code or 'timeout', wall seconds)."""
    cmd = [sys.executable, "-m", "attnbench", "sweep", config, "--out", str(out / label), *extra]
    t0 = time.perf_counter()
    with open(out / f"{label}.log", "w") as log:
        try:
            rc: Any = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    return rc, time.perf_counter() - t0


def load(run: Path) -> tuple[dict[str, Any], Rows]:
    manifest = json.loads((run / "manifest.json").read_text())
    rows = {}
    for line in (run / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[(r["case_id"], r["backend"])] = r
    return manifest, rows


def busy_by_worker(rows: Rows) -> dict[str, tuple[float, int]]:
    """Seconds each worker spent on points and their inputs (rows' point_wall_s + case_inputs_s)."""
    busy: dict[str, tuple[float, int]] = {}
    for r in rows.values():
        if "point_wall_s" in r:
            w = str(r.get("worker_device", "0"))
            seconds, points = busy.get(w, (0.0, 0))
            busy[w] = (seconds + r["point_wall_s"] + r.get("case_inputs_s", 0.0), points + 1)
    return busy


def start_detail(phases: dict[str, float] | None) -> str:
    """' (spawn 0.1 imports 4.6 idle 1.2 cuda_init 0.4 calibration 0.8)': where a worker's start
    went (attnbench.runner.child.start_phases); the runner waits only for what follows the idle time."""
    if not phases:
        return ""
    return " (" + " ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in phases.items()) + ")"


def gate(out: Path, baseline: str, current: str) -> str:
    """`attnbench gate` of one run against another: its verdict line (PASS/FAIL with counts)."""
    summary = out / f"gate-{current}-vs-{baseline}.md"
    proc = subprocess.run([sys.executable, "-m", "attnbench", "gate", "--baseline", str(out / baseline),
                           "--current", str(out / current), "--summary", str(summary)],
                          capture_output=True, text=True)
    first = next((ln.strip() for ln in proc.stdout.splitlines() if ln.startswith("attnbench gate")), "")
    return first or f"gate exit {proc.returncode}: {' '.join(proc.stderr.split())[:200]}"


def pct(x: float) -> str:
    return f"{100 * x:+.2f}"


def compare(ones: list[Rows], multis: list[Rows]) -> tuple[list[str], dict[str, Any]]:
    """Per point: the multi-device runs' mean median against the one-device runs'.

    noise: the one-device runs' own spread ((max - min) / mean of their medians, 0 with one run)
    and the widest CI half-width among them (relative); a point is within the noise when
    |diff| <= max(spread, 2 * half-width).
    """
    lines = [f"{'backend':14s} {'case':44s} {'p50 one ms':>10s} {'p50 multi':>10s} {'diff %':>7s} "
             f"{'1v1 %':>6s} {'CI +-%':>6s}  within"]
    worst: dict[str, Any] | None = None
    outside = 0
    keys = sorted(set.intersection(*(set(r) for r in ones + multis)))
    for k in keys:
        if any(r[k]["status"] != "ok" for r in ones + multis):
            continue
        one_p50 = [r[k]["latency_ms_p50"] for r in ones]
        multi_p50 = [r[k]["latency_ms_p50"] for r in multis]
        base = statistics.fmean(one_p50)
        diff = (statistics.fmean(multi_p50) - base) / base
        spread = (max(one_p50) - min(one_p50)) / base
        half = max((r[k]["latency_ms_ci_high"] - r[k]["latency_ms_ci_low"]) / 2 / r[k]["latency_ms_p50"]
                   for r in ones)
        within = abs(diff) <= max(spread, 2 * half)
        outside += not within
        lines.append(f"{k[1]:14s} {k[0][:44]:44s} {base:10.4f} {statistics.fmean(multi_p50):10.4f} "
                     f"{pct(diff):>7s} {100 * spread:6.2f} {100 * half:6.2f}  {'yes' if within else 'NO'}")
        if worst is None or abs(diff) > abs(worst["diff"]):
            worst = {"key": k, "diff": diff, "spread": spread, "half": half, "within": within}
    return lines, {"worst": worst, "outside": outside, "compared": len(lines) - 1}


def summarize(out: Path, labels_one: list[str], labels_multi: list[str], wall: dict[str, float],
              rcs: dict[str, Any]) -> list[str]:
    say: list[str] = []
    runs = {label: load(out / label) for label in labels_one + labels_multi}
    for label in labels_one + labels_multi:
        m, rows = runs[label]
        starts = m.get("worker_start_s_by_device") or {"0": m.get("worker_start_s")}
        phases = m.get("worker_start_phases_by_device") or {"0": m.get("worker_start_phases") or {}}
        busy = busy_by_worker(rows)
        workers = [f"worker {w}: start {starts.get(w)} s{start_detail(phases.get(w))}, "
                   f"busy {busy.get(w, (0.0, 0))[0]:.1f} s ({busy.get(w, (0.0, 0))[1]} points)"
                   for w in sorted(set(starts) | set(busy))]
        say.append(f"{label:8s} exit {rcs[label]}  wall {wall[label]:6.1f} s  (runner {m.get('wall_s')} s)  "
                   + "  ".join(workers))
    one_wall = statistics.fmean(wall[x] for x in labels_one)
    multi_wall = statistics.fmean(wall[x] for x in labels_multi)
    say.append(f"mean wall: one device {one_wall:.1f} s, --devices {multi_wall:.1f} s; "
               f"speed-up {one_wall / multi_wall:.2f}x")
    # the runner's own time (wall_s in the manifest) leaves out what every sweep pays once in the
    # parent: interpreter start, imports, the environment probe, the plan, exit
    one_run = statistics.fmean(runs[x][0]["wall_s"] for x in labels_one)
    multi_run = statistics.fmean(runs[x][0]["wall_s"] for x in labels_multi)
    say.append(f"mean runner time: one device {one_run:.1f} s, --devices {multi_run:.1f} s; "
               f"speed-up {one_run / multi_run:.2f}x; outside the runner (parent start, probe, exit): "
               f"{one_wall - one_run:.1f} s one device, {multi_wall - multi_run:.1f} s --devices")
    point_sets = {label: set(rows) for label, (_, rows) in runs.items()}
    first = next(iter(point_sets.values()))
    same = all(s == first for s in point_sets.values())
    say.append(f"same points in every run: {same} ({len(first)} points)")
    statuses = {k: {label: rows[k]["status"] for label, (_, rows) in runs.items() if k in rows}
                for k in first}
    differ = [k for k, by in statuses.items() if len(set(by.values())) > 1]
    say.append(f"points whose status differs between runs: {len(differ)}"
               + "".join(f"\n  {k[1]} {k[0]}: {statuses[k]}" for k in differ))
    say.append("")
    lines, result = compare([runs[x][1] for x in labels_one], [runs[x][1] for x in labels_multi])
    say.extend(lines)
    say.append("")
    w = result["worst"]
    if w is None:
        say.append("no point is ok in every run")
    else:
        say.append(f"largest median difference: {pct(w['diff'])}% ({w['key'][1]} {w['key'][0]}); "
                   f"one-device runs' spread there {100 * w['spread']:.2f}%, "
                   f"CI half-width {100 * w['half']:.2f}%")
        say.append(f"points outside the noise: {result['outside']} of {result['compared']}")
    # the regression gate's verdict (5% threshold beyond the noise of the raw samples): does a
    # multi-device run pass against a one-device run, as often as one-device runs pass each other?
    say.append("")
    for one, multi in zip(labels_one, labels_multi, strict=True):
        say.append(f"gate {multi} against {one}: {gate(out, one, multi)}")
    for a, b in zip(labels_one, labels_one[1:], strict=False):
        say.append(f"gate {b} against {a}: {gate(out, a, b)}")
    return say


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", default="configs/ci-gate.yaml")
    ap.add_argument("--devices", default="all")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=280.0, help="seconds per sweep")
    ap.add_argument("--backends", help="passed to every sweep")
    ap.add_argument("--sweep-args", default="", help="more options for every sweep, e.g. '--shard 1/4'")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    say: list[str] = []
    common = ["--device", args.device] + (["--backends", args.backends] if args.backends else [])
    common += args.sweep_args.split()
    if args.device == "cuda":
        gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        say.extend(gpus.strip().splitlines())
        with open(out / "build.log", "w") as log:
            if subprocess.run([sys.executable, "-m", "attnbench.cuda_build", "build"], stdout=log,
                              stderr=subprocess.STDOUT).returncode:
                say.append(f"CUDA kernel build failed (see {out / 'build.log'}): cuda-* points fail "
                           "in every run")
    wall: dict[str, float] = {}
    rcs: dict[str, Any] = {}
    rcs["warm"], wall["warm"] = sweep(out, "warm", args.config, common, args.timeout)
    say.append(f"warm-up (one device, untimed): exit {rcs['warm']}, {wall['warm']:.1f} s")
    print(say[-1], flush=True)
    labels_one, labels_multi = [], []
    for i in range(1, args.repeats + 1):
        pair = [("one", []), ("multi", ["--devices", args.devices])]
        if i % 2 == 0:
            pair.reverse()
        for kind, extra in pair:
            label = f"{kind}-{i}"
            rcs[label], wall[label] = sweep(out, label, args.config, common + extra, args.timeout)
            print(f"{label}: exit {rcs[label]}, {wall[label]:.1f} s", flush=True)
            (labels_one if kind == "one" else labels_multi).append(label)
    try:
        say.extend(summarize(out, labels_one, labels_multi, wall, rcs))
        code = 0
    except (OSError, ValueError, KeyError) as err:
        say.append(f"cannot read the runs: {type(err).__name__}: {err}")
        code = 1
    text = "\n".join(say) + "\n"
    (out / "summary.txt").write_text(text)
    print(text, end="")
    return code


if __name__ == "__main__":
    sys.exit(main())
