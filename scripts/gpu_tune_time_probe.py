"""Seconds the Triton tuners take per shape class, and what they pick: run it in fresh processes
with empty compile caches, once with ATTNBENCH_TRITON_PARALLEL_COMPILE=0 and once without, to see
what building the candidates in parallel saves (kernels/triton/tuning.py).

    TRITON_CACHE_DIR=$(mktemp -d) ATTNBENCH_TRITON_TUNING_CACHE=off \
        PYTHONPATH=. python3 scripts/gpu_tune_time_probe.py OUT.json

Shapes: the study's prefill-main (B4 H32 N4096 D128, causal and full) and decode-main (B64 Hq32
Hkv8 context 4096, 16-token blocks, bf16 and fp8 e4m3 KV) on random inputs.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from decode_probe_case import decode_case

from attnbench.paths import import_kernels

import_kernels()  # the tree's kernels/ as attnbench_kernels (PYTHONPATH=. on the device)

from attnbench_kernels.triton.flash_fwd import flash_attn_varlen_runner  # noqa: E402
from attnbench_kernels.triton.paged_attn import paged_attention_runner  # noqa: E402


def flash(causal: bool) -> tuple[float, str]:
    b, h, n, d = 4, 32, 4096, 128
    q, k, v = (torch.randn(b * n, h, d, device="cuda").to(torch.bfloat16) for _ in range(3))
    cu = torch.arange(0, (b + 1) * n, n, dtype=torch.int32, device="cuda")
    t0 = time.perf_counter()
    _, _, _, cfg, _ = flash_attn_varlen_runner(q, k, v, cu, cu, n, causal)
    return time.perf_counter() - t0, cfg.describe()


def paged(fp8: bool) -> tuple[float, str]:
    args, scales = decode_case(fp8)
    t0 = time.perf_counter()
    _, _, cfg, _ = paged_attention_runner(*args, **scales)
    return time.perf_counter() - t0, cfg.describe()


def main(argv: list[str]) -> int:
    out = {"parallel": os.environ.get("ATTNBENCH_TRITON_PARALLEL_COMPILE", "1"), "cpus": os.cpu_count()}
    t_all = time.perf_counter()
    for name, fn in (("flash causal", lambda: flash(True)), ("flash full", lambda: flash(False)),
                     ("paged bf16", lambda: paged(False)), ("paged fp8", lambda: paged(True))):
        s, pick = fn()
        out[name] = {"s": round(s, 2), "pick": pick}
        print(f"{name:14s} {s:6.2f} s  {pick}")
    out["total_s"] = round(time.perf_counter() - t_all, 2)
    print("total", out["total_s"], "s")
    with open(argv[0], "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
