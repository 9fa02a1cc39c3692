"""Does the Triton tuner pick the same tiles, by the device's time, in fresh processes? (issue 16)

    PYTHONPATH=. python3 scripts/gpu_tuner_check.py OUT_DIR [--processes 3]

Each fresh process (the on-disk tuning memo off) prepares triton-paged on decode B1 and B16 context
512 and B64 context 4096, prints the tile the tuner picked, every candidate's held device time, and
the point's median through attnbench.point.run_point. Writes OUT_DIR/tuner.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_process() -> dict[str, Any]:
    from attnbench.paths import import_kernels

    import_kernels()
    from attnbench_kernels.triton import paged_attn

    from attnbench.backends import get_backend
    from attnbench.case import Case
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.inputs import build_inputs
    from attnbench.point import run_point

    out: dict[str, Any] = {}
    for batch, ctx in ((1, 512), (16, 512), (64, 4096)):
        case = Case("tuner", "decode", (1,) * batch, (ctx,) * batch, 32, 8, 128, "bf16", False, block_size=16)
        row = run_point(case, get_backend("triton-paged"), build_inputs(case, "cuda"), TimingPolicy(), {})
        out[f"B{batch} ctx{ctx}"] = {"variant": row.get("variant"), "device_us": 1e3 * row["latency_ms_p50"]}
    out["timings_ms"] = {repr(k): v for k, v in paged_attn._TUNER.timings.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_process()))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ATTNBENCH_TRITON_TUNING_CACHE": "off"}
    procs = []
    for i in range(args.processes):
        res = subprocess.run([sys.executable, __file__, str(args.out), "--one"], capture_output=True,
                             text=True, cwd=ROOT, env=env, timeout=300)
        lines = res.stdout.strip().splitlines()
        procs.append(json.loads(lines[-1]) if lines else {"error": res.stderr[-800:]})
        print(i, json.dumps(procs[-1]), flush=True)
    (args.out / "tuner.json").write_text(json.dumps(procs, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
