"""Where does the process-to-process spread of a launch-bound point's median come from? (issue 16)

    PYTHONPATH=. python3 scripts/gpu_spread_probe.py OUT_DIR [--processes 5] [--allocs 6]
    PYTHONPATH=. python3 scripts/gpu_spread_probe.py OUT_DIR --cpu      # dry run of this code
    PYTHONPATH=. python3 scripts/gpu_spread_probe.py OUT_DIR --paired [--processes 8]

Each fresh process builds --allocs independent input sets of decode B16 context 512 (all kept alive,
so each lies at other device addresses), prepares the backend on each, and times them with the
default policy in two interleaved passes (alloc 0..n-1, then again), recording the SM clock around
them. Within-process spread across allocations (pass 1 vs pass 2 says whether it is the allocation
or drift) against the spread across processes of allocation 0 and of the mean over allocations tells
whether rotating input copies would bring the cross-process spread down. Writes OUT_DIR/probe.json.

--paired: each fresh process times every backend both ways, in the order bare, point, bare, point
(the bare held sampler over six freshly built input sets, then attnbench.point.run_point as a sweep
times the point), starting at another backend in each process. A process that is slow as a whole is
slow both ways; a path that adds the spread moves only its own medians. Writes OUT_DIR/paired.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BACKENDS = ("triton-paged", "cuda-paged", "sdpa-cudnn")
PAGED = ("triton-paged", "cuda-paged")


def spread(values: list[float]) -> float | None:
    """(max - min) / median, the figure issue 16 quotes."""
    valid = [v for v in values if v]
    return (max(valid) - min(valid)) / statistics.median(valid) if len(valid) > 1 else None


def one_process(backend: str, allocs: int, device: str) -> dict[str, Any]:
    import torch

    from attnbench.backends import get_backend
    from attnbench.case import Case
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.inputs import build_inputs
    from attnbench.measure import time_callable
    from attnbench.telemetry import nvml_index

    block = 16 if backend in PAGED else None
    case = Case("probe", "decode", (1,) * 16, (512,) * 16, 32, 8, 128,
                "bf16" if device == "cuda" else "fp32", True, block_size=block)
    bk = get_backend(backend)
    ok, why = bk.available(device)
    if not ok:
        return {"backend": backend, "skipped": why}
    dev = torch.device(device)
    policy = TimingPolicy() if device == "cuda" else TimingPolicy.for_device("cpu")
    runs = []
    for _ in range(allocs):
        inputs = build_inputs(case, device)
        runs.append((inputs, bk.prepare(case, inputs)))
    clock = _sm_clock(nvml_index(0) if device == "cuda" else None)
    passes = []
    for _ in range(2):
        passes.append([time_callable(p.run, dev, policy).summary()["latency_ms_p50"] for _, p in runs])
    return {"backend": backend, "passes_ms": passes, "sm_clock_mhz": [clock, _sm_clock(
        nvml_index(0) if device == "cuda" else None)],
        "q_ptr": [int(i.q.data_ptr()) % (1 << 32) for i, _ in runs]}


def rotate_process(backend: str, copies: int, seconds: float, device: str) -> dict[str, Any]:
    """--rotate: the sweep's own held sampler rotating over `copies` input sets for `seconds`, each
    sample attributed to its copy, with the SM clock and temperature read every round: per-copy
    medians say whether a process is slow as a whole (every copy) or by where some copies lie."""
    import time

    from attnbench.backends import get_backend
    from attnbench.case import Case
    from attnbench.inputs import build_inputs
    from attnbench.measure import ROUND
    from attnbench.telemetry import nvml_index

    block = 16 if backend in PAGED else None
    case = Case("probe", "decode", (1,) * 16, (512,) * 16, 32, 8, 128, "bf16", True, block_size=block)
    bk = get_backend(backend)
    preps = []
    for _ in range(copies):
        inputs = build_inputs(case, device)
        preps.append((inputs, bk.prepare(case, inputs)))
    sampler = warm_sampler([p.run for _, p in preps])
    per_copy: list[list[float]] = [[] for _ in range(copies)]
    clocks, temps = [], []
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index(0) or 0)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        start, exposed = sampler._next, sampler.exposed
        out = sampler.round()
        if sampler.exposed == exposed and len(out) == ROUND:
            for j, ms in enumerate(out):
                per_copy[(start + j) % copies].append(ms)
        clocks.append(pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
        temps.append(pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
    kv = [i.paged.k_cache if i.paged is not None else i.k for i, _ in preps]
    return {"backend": backend, "copy_medians_ms": [statistics.median(c) if c else None for c in per_copy],
            "all_median_ms": statistics.median([x for c in per_copy for x in c]),
            "samples": sum(len(c) for c in per_copy),
            "sm_clock_mhz": [min(clocks), statistics.median(clocks)], "temp_c": [min(temps), max(temps)],
            "k_ptr_mod_2mb": [int(t.data_ptr()) % (1 << 21) for t in kv]}


def timing_case(backend: str, causal: bool = False) -> Any:
    """Decode B16 context 512, Hq32/Hkv8 D128 bf16 (block 16 for the paged backends): the timing
    check's launch-bound point (scripts/gpu_timing_check.py)."""
    from attnbench.case import Case

    block = 16 if backend in PAGED else None
    return Case("timing", "decode", (1,) * 16, (512,) * 16, 32, 8, 128, "bf16", causal, block_size=block)


def warm_sampler(runs: list[Any], flush: Any = "harness") -> Any:
    """The sweep's held sampler over `runs` after 20 warm calls each, its hold sized from the first
    run's p90 host call; flush: "harness" (attnbench.stream_hold.L2Flusher), a callable, or None."""
    import torch

    from attnbench.measure import _HeldSampler, host_call_ms
    from attnbench.stream_hold import L2Flusher

    dev = torch.device("cuda")
    for f in runs:
        for _ in range(20):
            f()
    torch.cuda.synchronize()
    calls = sorted(host_call_ms(runs[0], torch.cuda.synchronize))
    flush = L2Flusher(dev) if flush == "harness" else flush
    return _HeldSampler(runs, flush, dev, calls[int(0.9 * (len(calls) - 1))])


def bare_median(runs: list[Any], seconds: float) -> float:
    """The held sampler alone (flush, hold, one call between events) rotating over `runs` for
    `seconds` after 20 warm calls each: no check, no telemetry, no adaptive stop."""
    sampler = warm_sampler(runs)
    samples: list[float] = []
    import time

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        samples += sampler.round()
    return statistics.median(samples)


def paired_process(first: int, seconds: float) -> dict[str, Any]:
    """--paired: every backend timed bare and through run_point, twice each, in one process."""
    import torch

    from attnbench.backends import get_backend
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.inputs import build_inputs
    from attnbench.point import run_point

    order = BACKENDS[first % len(BACKENDS):] + BACKENDS[:first % len(BACKENDS)]
    out: dict[str, Any] = {"order": list(order), "sm_clock_mhz_start": _sm_clock(0)}
    for backend in order:
        bk = get_backend(backend)
        case = timing_case(backend)
        bare_inputs = [build_inputs(case, "cuda") for _ in range(6)]
        bare_runs = [bk.prepare(case, i).run for i in bare_inputs]
        res: dict[str, Any] = {"bare_ms": [], "point_ms": [], "point_hold_us": [], "point_samples": []}
        for _ in range(2):
            res["bare_ms"].append(bare_median(bare_runs, seconds))
            row = run_point(case, bk, build_inputs(case, "cuda"), TimingPolicy(), {})
            res["point_ms"].append(row.get("latency_ms_p50"))
            res["point_hold_us"].append(row.get("hold_us"))
            res["point_samples"].append(row.get("n_samples"))
        del bare_runs, bare_inputs
        torch.cuda.empty_cache()
        out[backend] = res
    out["sm_clock_mhz_end"] = _sm_clock(0)
    return out


def paired_main(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(args.processes):
        cmd = [sys.executable, __file__, str(args.out), "--paired", "--one", str(i),
               "--seconds", str(args.seconds)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
        lines = res.stdout.strip().splitlines()
        procs.append(json.loads(lines[-1]) if lines else {"error": res.stderr[-800:]})
        print(i, json.dumps(procs[-1]), flush=True)
    ok = [p for p in procs if "error" not in p]
    summary: dict[str, Any] = {}
    for backend in BACKENDS:
        bare = [statistics.median(p[backend]["bare_ms"]) for p in ok]
        point = [statistics.median(p[backend]["point_ms"]) for p in ok]
        summary[backend] = {
            "spread_bare": spread(bare), "spread_point": spread(point),
            "spread_bare_first": spread([p[backend]["bare_ms"][0] for p in ok]),
            "spread_point_first": spread([p[backend]["point_ms"][0] for p in ok]),
            # point / bare in the same process: constant if the two paths see the same process speed
            "point_over_bare": [round(a / b, 4) for a, b in zip(point, bare, strict=True)],
            "bare_us": [round(b * 1e3, 3) for b in bare], "point_us": [round(b * 1e3, 3) for b in point],
        }
        print(backend, json.dumps(summary[backend]), flush=True)
    text = json.dumps({"summary": summary, "processes": procs}, indent=1)
    (args.out / "paired.json").write_text(text + "\n")
    return 0


def _sm_clock(index: int | None) -> int | None:
    if index is None:
        return None
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetClockInfo(pynvml.nvmlDeviceGetHandleByIndex(index), pynvml.NVML_CLOCK_SM)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--processes", type=int, default=5)
    ap.add_argument("--allocs", type=int, default=6)
    ap.add_argument("--cpu", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--rotate", type=int, default=0,
                    help="copies: per process, the held sampler over this many copies, samples per copy")
    ap.add_argument("--seconds", type=float, default=1.2)
    ap.add_argument("--paired", action="store_true", help="bare sampler vs run_point in each process")
    args = ap.parse_args()
    device = "cpu" if args.cpu else "cuda"
    if args.paired and args.one is not None:
        print(json.dumps(paired_process(int(args.one), args.seconds)))
        return 0
    if args.paired:
        return paired_main(args)
    if args.one and args.rotate:
        print(json.dumps(rotate_process(args.one, args.rotate, args.seconds, device)))
        return 0
    if args.one:
        print(json.dumps(one_process(args.one, args.allocs, device)))
        return 0
    if args.rotate:
        return rotate_main(args)
    args.out.mkdir(parents=True, exist_ok=True)
    backends = ("naive",) if args.cpu else BACKENDS
    result: dict[str, Any] = {}
    for backend in backends:
        procs = []
        for _ in range(args.processes):
            cmd = [sys.executable, __file__, str(args.out), "--one", backend, "--allocs", str(args.allocs)]
            cmd += ["--cpu"] if args.cpu else []
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
            lines = res.stdout.strip().splitlines()
            procs.append(json.loads(lines[-1]) if lines else {"error": res.stderr[-500:]})
        ok = [p for p in procs if "passes_ms" in p]
        first = [p["passes_ms"][0][0] for p in ok]
        means = [statistics.mean(p["passes_ms"][0] + p["passes_ms"][1]) for p in ok]
        medians = [statistics.median(p["passes_ms"][0] + p["passes_ms"][1]) for p in ok]
        within = [spread(p["passes_ms"][0]) for p in ok]
        # Pass 1 vs pass 2 per allocation: small when an allocation keeps its own speed.
        repeat = [statistics.median(abs(a - b) / b for a, b in zip(*p["passes_ms"], strict=True)) for p in ok]
        result[backend] = {
            "processes": procs,
            "spread_alloc0_across_processes": spread(first),
            "spread_mean_over_allocs_across_processes": spread(means),
            "spread_median_over_allocs_across_processes": spread(medians),
            "within_process_alloc_spread": within,
            "within_process_repeat_rel_diff": repeat,
        }
        print(backend, {k: v for k, v in result[backend].items() if k != "processes"}, flush=True)
    (args.out / "probe.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


def rotate_main(args: argparse.Namespace) -> int:
    """Processes x backends of rotate_process; the spread across processes of the median over the
    first n copies, for several n (does rotating over more copies bring it down?)."""
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {}
    for backend in BACKENDS:
        procs = []
        for _ in range(args.processes):
            cmd = [sys.executable, __file__, str(args.out), "--one", backend, "--rotate", str(args.rotate),
                   "--seconds", str(args.seconds)]
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
            lines = res.stdout.strip().splitlines()
            procs.append(json.loads(lines[-1]) if lines else {"error": res.stderr[-800:]})
        ok = [p for p in procs if "copy_medians_ms" in p]
        by_n = {}
        for n in sorted({1, 2, 4, 6, 12, args.rotate}):
            if n <= args.rotate:
                by_n[n] = spread([statistics.mean(p["copy_medians_ms"][:n]) for p in ok])
        result[backend] = {"processes": procs, "spread_all_samples": spread([p["all_median_ms"] for p in ok]),
                           "spread_mean_of_first_n_copies": by_n,
                           "within_process_copy_spread": [spread(p["copy_medians_ms"]) for p in ok]}
        print(backend, {k: v for k, v in result[backend].items() if k != "processes"}, flush=True)
        for p in ok:
            us = round(p["all_median_ms"] * 1e3, 2)
            print("   ", us, "us; clock", p["sm_clock_mhz"], "temp", p["temp_c"])
    (args.out / "rotate.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
