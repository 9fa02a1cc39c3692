"""Does the L2 flush leave a launch-bound point's time in one of two states? (issue 16)

    PYTHONPATH=. python3 scripts/gpu_flush_probe.py OUT_DIR [--processes 3] [--reps 10] [--seconds 0.2]

scripts/gpu_spread_probe.py --paired found the medians of decode B16 context 512 toggling between two
levels ~5% apart (sdpa-cudnn 14.4-14.6 us or 15.3-15.5 us) between two timings of the same input
copies in one process, the bare sampler and run_point alike. What changes between two such timings is
the flush buffer (each timing allocates its own) and the hold. Each fresh process here times each
backend in repetitions of --seconds of held samples, each repetition with its own flush of a kind:

    read2       a new buffer of 2x the L2 each repetition, read (attnbench.stream_hold.L2Flusher)
    read2-same  one such buffer for every repetition
    read4       a new buffer of 4x the L2, read
    write-read2 a new buffer of 2x the L2, written then read (the write evicts, the read cleans)
    write2      a new buffer of 2x the L2, written (NVBench's and Triton's flush)
    none        no flush (the warm-L2 time)

A flush that leaves part of the inputs in the L2 makes a repetition fast: such a flush's repetition
medians spread, one that evicts them all gives one level. Writes OUT_DIR/flush.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BACKENDS = ("sdpa-cudnn", "cuda-paged", "triton-paged")
KINDS = ("read2", "read2-same", "read4", "write-read2", "write2", "none")


def make_flush(kind: str, l2_bytes: int, device: Any, same: Any) -> Callable[[], None] | None:
    import torch

    if kind == "none":
        return None
    if kind == "read2-same":
        return same
    factor = 4 if kind == "read4" else 2
    buf = torch.randint(-100, 100, (factor * l2_bytes // 4,), dtype=torch.int32, device=device)
    if kind in ("read2", "read4"):
        return lambda: buf.sum(dtype=torch.int64)
    if kind == "write2":
        return lambda: buf.fill_(7)

    def write_read() -> None:
        buf.fill_(7)
        buf.sum(dtype=torch.int64)

    return write_read


def one_process(reps: int, seconds: float) -> dict[str, Any]:
    import torch

    from attnbench.backends import get_backend
    from attnbench.inputs import build_inputs
    from attnbench.measure import _HeldSampler, host_call_ms

    sys.path.insert(0, str(ROOT / "scripts"))
    from gpu_spread_probe import timing_case

    dev = torch.device("cuda")
    l2 = torch.cuda.get_device_properties(dev).L2_cache_size
    out: dict[str, Any] = {"l2_bytes": l2}
    for backend in BACKENDS:
        bk = get_backend(backend)
        case = timing_case(backend)
        runs = [bk.prepare(case, build_inputs(case, "cuda")).run for _ in range(4)]
        for f in runs:
            for _ in range(20):
                f()
        torch.cuda.synchronize()
        calls = sorted(host_call_ms(runs[0], torch.cuda.synchronize))
        p90 = calls[int(0.9 * (len(calls) - 1))]
        same = make_flush("read2", l2, dev, None)
        res: dict[str, list[float]] = {k: [] for k in KINDS}
        for _ in range(reps):
            for kind in KINDS:  # interleaved, so drift hits every kind alike
                flush = make_flush(kind, l2, dev, same)
                sampler = _HeldSampler(runs, flush, dev, p90)  # type: ignore[arg-type]
                samples: list[float] = []
                t0 = time.perf_counter()
                while time.perf_counter() - t0 < seconds:
                    samples += sampler.round()
                res[kind].append(round(statistics.median(samples) * 1e3, 3))
                del flush, sampler
        out[backend] = res
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_process(args.reps, args.seconds)))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(args.processes):
        cmd = [sys.executable, __file__, str(args.out), "--one", "--reps", str(args.reps),
               "--seconds", str(args.seconds)]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=400)
        lines = res.stdout.strip().splitlines()
        procs.append(json.loads(lines[-1]) if lines else {"error": res.stderr[-800:]})
        print("process", i, flush=True)
        for backend in BACKENDS:
            for kind, us in procs[-1].get(backend, {}).items():
                lo, hi = min(us), max(us)
                rel = 100 * (hi - lo) / statistics.median(us)
                print(f"  {backend:12s} {kind:11s} {lo:7.3f}-{hi:7.3f} us ({rel:4.1f}%)"
                      f"  {us}", flush=True)
    (args.out / "flush.json").write_text(json.dumps(procs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
