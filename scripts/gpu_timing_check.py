"""Is attnbench's latency the device's time? Its held-event timing against CUPTI's kernel durations.

    PYTHONPATH=. python3 scripts/gpu_timing_check.py OUT_DIR [--spread-runs 5]

For (backend, case) pairs covering every built-in kernel, sdpa-cudnn, sdpa-flash and flash-attn, at
decode B1 and B16 context 512 (launch-bound) and at the large decode and prefill shapes, the same
prepared callable is timed four ways: attnbench's default (events around samples held by a spin kernel,
L2 flushed outside the window), the old unheld events (host launch included), CUDA-graph replay, and
CUPTI (torch.profiler kernel durations summed per call, the independent clock). Then fresh processes
time one launch-bound point each, for the spread of medians across processes.
Writes OUT_DIR/summary.json (a list of objects: backend, case, device_ms, cupti_ms, ratio, ...),
OUT_DIR/spread.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from attnbench.backends import get_backend  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.config.sweep_config import TimingPolicy  # noqa: E402
from attnbench.cupti_timing import profile_calls  # noqa: E402
from attnbench.inputs import build_inputs  # noqa: E402
from attnbench.measure import time_callable  # noqa: E402
from attnbench.metrics import flops, min_hbm_bytes  # noqa: E402
from attnbench.reference import check_output  # noqa: E402
from attnbench.stream_hold import L2Flusher  # noqa: E402
from attnbench.thermal import is_compute_bound  # noqa: E402

BLOCK, BLOCKS = 30, 3  # alternating blocks of held samples and profiled calls
PAGED = ("triton-paged", "cuda-paged")
CONTIGUOUS_DECODE = ("sdpa-cudnn", "sdpa-flash", "triton-flash", "flash-attn")
PREFILL = ("sdpa-cudnn", "sdpa-flash", "triton-flash", "cuda-flash", "flash-attn")


def decode(batch: int, ctx: int, block: int | None) -> Case:
    return Case("timing", "decode", (1,) * batch, (ctx,) * batch, 32, 8, 128, "bf16", False, block_size=block)


def prefill(causal: bool) -> Case:
    return Case("timing", "prefill", (4096,) * 4, (4096,) * 4, 32, 32, 128, "bf16", causal)


def pairs() -> list[tuple[str, str, Case]]:
    out = []
    for batch, ctx in ((1, 512), (16, 512), (64, 4096), (4, 32768)):
        label = f"decode B{batch} ctx{ctx}"
        out += [(b, label + " bs16", decode(batch, ctx, 16)) for b in (*PAGED, "flash-attn")]
        out += [(b, label, decode(batch, ctx, None)) for b in CONTIGUOUS_DECODE]
    for causal in (False, True):
        out += [(b, f"prefill B4 N4096 {'causal' if causal else 'full'}", prefill(causal)) for b in PREFILL]
    return out


def calibration() -> dict[str, float]:
    from attnbench.calibrate import calibrate

    return calibrate(torch.device("cuda"))


def measure_pair(backend: str, case: Case, cal: dict[str, Any], device: str = "cuda") -> dict[str, Any]:
    """Time one pair four ways. device "cpu" is a dry run of this code (host clock, no graph or CUPTI)."""
    row: dict[str, Any] = {"backend": backend, "case": None}
    inputs = build_inputs(case, device)
    bk = get_backend(backend)
    ok, why = bk.available(device)
    if ok:
        ok, why = bk.supports(case)
    if not ok:
        return {**row, "skipped": why}
    prepared = bk.prepare(case, inputs)
    check = check_output(prepared.to_packed(prepared.run()), inputs)
    row.update(correct=check.ok, rel_err_ratio=check.ratio, info=prepared.info)
    dev = torch.device(device)
    compute = is_compute_bound(flops(case), min_hbm_bytes(case), cal)
    policy = TimingPolicy() if device == "cuda" else TimingPolicy.for_device("cpu")
    # The default method first (what a sweep row gets), then the same callable in alternating blocks of
    # held samples and CUPTI-profiled calls, so that clock drift (power-capped prefill) hits both alike.
    held = time_callable(prepared.run, dev, policy, compute_bound=compute).summary()
    block = replace(policy, min_samples=BLOCK, max_samples=BLOCK, thermal=False, min_time_s=0.0,
                    short_point_ms=0.0)  # a block is BLOCK samples, short point or not
    held_samples: list[float] = []
    prof: list[Any] = []
    for _ in range(BLOCKS):
        held_samples += time_callable(prepared.run, dev, block).samples_ms
        if device == "cuda":
            prof += profile_calls(prepared.run, BLOCK, L2Flusher(dev))
    unheld = time_callable(prepared.run, dev, replace(policy, hold=False, thermal=False)).summary()
    try:
        graph = time_callable(prepared.run, dev, replace(policy, cuda_graph=True, thermal=False)).summary()
        graph_ms = graph["latency_ms_p50"]
    except Exception as err:  # noqa: BLE001 - not every backend can be captured
        graph_ms, row["graph_error"] = None, str(err)[:200]
    device_ms = statistics.median(held_samples)
    cupti_sum = statistics.median(c.sum_ms for c in prof) if prof else device_ms
    spans = [c.span_ms for c in prof if c.span_ms is not None]
    cupti_ms = statistics.median(spans) if spans else cupti_sum
    row.update(
        device_ms=device_ms, cupti_ms=cupti_ms, cupti_sum_ms=cupti_sum, cupti_is_span=bool(spans),
        ratio=device_ms / cupti_ms, sweep_ms=held["latency_ms_p50"],
        unheld_ms=unheld["latency_ms_p50"], unheld_ratio=unheld["latency_ms_p50"] / cupti_ms,
        graph_ms=graph_ms, call_ms_p50=held.get("call_ms_p50", held["latency_ms_p50"]),
        launch_bound=held["launch_bound"], timing_method=held["timing_method"],
        timing_fallback=held.get("timing_fallback"), n_samples=held["n_samples"],
        kernels_per_call=statistics.median(c.kernels for c in prof) if prof else None,
        hold_us=held.get("hold_us"), exposed_samples=held.get("exposed_samples"), compute_bound=compute,
        sm_clock_mhz_settled=held.get("sm_clock_mhz_settled"),
        energy_j_per_call=held.get("energy_j_per_call"),
    )
    return row


def probe_launch_latency(device: str) -> dict[str, Any]:
    """Held events around a one-element add against its CUPTI span: the GPU's own fixed cost of an
    event-timed launch (front-end work between the start event, the kernel and the end event)."""
    x = torch.ones(1, device=device)
    fn = lambda: x.add_(1.0)  # noqa: E731
    block = replace(TimingPolicy(), min_samples=BLOCK, max_samples=BLOCK, thermal=False, min_time_s=0.0,
                    short_point_ms=0.0)  # a block is BLOCK samples, short point or not
    events = statistics.median(time_callable(fn, torch.device(device), block).samples_ms)
    prof = profile_calls(fn, BLOCK)
    spans = [c.span_ms for c in prof if c.span_ms is not None] or [c.sum_ms for c in prof]
    kernel = statistics.median(spans)
    return {"events_ms": events, "kernel_ms": kernel, "launch_latency_us": (events - kernel) * 1e3}


def one_process(backend: str, batch: int, ctx: int, device: str = "cuda") -> None:
    """--one: time one launch-bound point in this fresh process as a sweep does (attnbench.point:
    checked, samples rotating over input copies), print its median (ms) as JSON."""
    from attnbench.point import run_point

    case = decode(batch, ctx, 16 if backend in PAGED else None)
    if device == "cpu":
        case = replace(case, dtype="fp32")
    inputs = build_inputs(case, device)
    policy = TimingPolicy() if device == "cuda" else TimingPolicy.for_device("cpu")
    period, thread = os.environ.get("SPREAD_TELEMETRY_PERIOD_S"), os.environ.get("SPREAD_TELEMETRY_THREAD")
    if period is not None:
        policy = replace(policy, telemetry_period_s=float(period))
    if thread is not None:
        policy = replace(policy, telemetry_thread=thread)
    row = run_point(case, get_backend(backend), inputs, policy, {})
    keep = ("call_ms_p50", "timing_method", "n_samples", "input_copies", "status", "sm_clock_mhz_mean",
            "sm_clock_mhz_min", "power_w_mean", "temp_c_max", "hold_us", "exposed_samples", "sample_span_s",
            "telemetry_samples", "latency_ms_p10", "latency_ms_p90")
    print(json.dumps({"device_ms": row.get("latency_ms_p50"), **{k: row.get(k) for k in keep}}))


def spread(backend: str, batch: int, ctx: int, runs: int, cpu: bool = False) -> dict[str, Any]:
    """`runs` fresh processes of one point (--one); SPREAD_TELEMETRY_PERIOD_S, when set, is passed
    on as timing.telemetry_period_s (0: no NVML polling while timing)."""
    medians: list[float | None] = []
    procs: list[dict[str, Any]] = []
    for _ in range(runs):
        res = subprocess.run([sys.executable, __file__, "--one", backend, str(batch), str(ctx),
                              *(["--dry-run"] if cpu else [])],
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
        line = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "{}"
        procs.append(json.loads(line))
        medians.append(procs[-1].get("device_ms"))
    valid = [m for m in medians if m]
    mid = statistics.median(valid) if valid else None
    return {"backend": backend, "case": f"decode B{batch} ctx{ctx}", "medians_ms": medians,
            "spread": (max(valid) - min(valid)) / mid if mid else None, "processes": procs,
            "telemetry_period_s": os.environ.get("SPREAD_TELEMETRY_PERIOD_S", "default"),
            "telemetry_thread": os.environ.get("SPREAD_TELEMETRY_THREAD", "default")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--spread-runs", type=int, default=5)
    ap.add_argument("--one", nargs=3, metavar=("BACKEND", "BATCH", "CTX"))
    ap.add_argument("--dry-run", action="store_true", help="run the measuring code on a CPU (host clock)")
    ap.add_argument("--spread-only", action="store_true", help="only the five-process spread (spread.json)")
    args = ap.parse_args()
    if args.one:
        one_process(args.one[0], int(args.one[1]), int(args.one[2]), "cpu" if args.dry_run else "cuda")
        return 0
    if args.out is None:
        ap.error("OUT_DIR is required")
    if args.spread_only:
        args.out.mkdir(parents=True, exist_ok=True)
        backends = ("naive",) if args.dry_run else ("triton-paged", "cuda-paged", "sdpa-cudnn")
        spreads = [spread(b, 16, 512, args.spread_runs, args.dry_run) for b in backends]
        (args.out / "spread.json").write_text(json.dumps(spreads, indent=1))
        for s in spreads:
            text = "n/a" if s["spread"] is None else f"{100 * s['spread']:.2f}%"
            print(f"spread of medians over {args.spread_runs} processes, {s['backend']} {s['case']}: {text}")
        return 0
    if args.dry_run:
        for backend in ("naive", "sdpa-math"):
            case = replace(decode(4, 64, None), dtype="fp32")
            print(json.dumps(measure_pair(backend, case, {}, "cpu"), default=str)[:400])
        return 0
    if not torch.cuda.is_available():
        print("gpu_timing_check: no CUDA device visible", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cal = calibration()
    rows = []
    t0 = time.perf_counter()
    probe = probe_launch_latency("cuda")
    print(f"launch latency probe: events {probe['events_ms'] * 1e3:.2f} us, kernel "
          f"{probe['kernel_ms'] * 1e3:.2f} us, fixed cost {probe['launch_latency_us']:.2f} us", flush=True)
    for backend, label, case in pairs():
        try:
            row = measure_pair(backend, case, cal)
        except Exception as err:  # noqa: BLE001 - one pair's failure is its row
            row = {"backend": backend, "error": f"{type(err).__name__}: {err}"[:300]}
        row["case"] = label
        rows.append(row)
        if "device_ms" in row:
            lat = probe["launch_latency_us"] / 1e3
            row["ratio_less_launch"] = (row["device_ms"] - lat) / row["cupti_ms"]
            print(f"{backend:13s} {label:26s} device {row['device_ms']:.4f} cupti {row['cupti_ms']:.4f} "
                  f"ratio {row['ratio']:.3f} (less launch {row['ratio_less_launch']:.3f}) unheld "
                  f"{row['unheld_ratio']:.2f} call {row['call_ms_p50']:.4f} k/call {row['kernels_per_call']} "
                  f"{row['timing_method']}", flush=True)
        else:
            print(f"{backend:13s} {label:26s} {row.get('skipped') or row.get('error')}", flush=True)
        # after every pair, so a call cut off by its time limit keeps what it measured
        (args.out / "summary.json").write_text(json.dumps(rows, indent=1, default=str))
    spreads = [spread(b, 16, 512, args.spread_runs) for b in ("triton-paged", "cuda-paged", "sdpa-cudnn")]
    (args.out / "spread.json").write_text(json.dumps(spreads, indent=1))
    (args.out / "manifest.json").write_text(json.dumps({
        "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "calibration": cal, "probe": probe,
        "wall_s": time.perf_counter() - t0, "command": " ".join(sys.argv)}, indent=1, default=str))
    timed = [r for r in rows if "ratio" in r]
    off = [r for r in timed if abs(r["ratio"] - 1) > 0.03]
    print(f"\n== {len(timed)} pairs timed; {len(off)} outside 3% of CUPTI")
    for r in off:
        kernels = r["kernels_per_call"]
        print(f"   {r['backend']} {r['case']}: ratio {r['ratio']:.3f} ({kernels:.0f} kernels/call)")
    for s in spreads:
        text = "n/a" if s["spread"] is None else f"{100 * s['spread']:.2f}%"
        print(f"   spread of medians over {args.spread_runs} processes, {s['backend']} {s['case']}: {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
