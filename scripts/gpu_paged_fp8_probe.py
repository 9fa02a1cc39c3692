"""triton-paged decode B64 Hq32 Hkv8 context 4096 (16-token shuffled blocks), every tile candidate,
for a bf16 and an fp8 e4m3 cache, the fp8 V read as bytes and as int32 words (v_words); then B4
context 32768 with the planner's splits. The session-5 run (results/baselines/triton-probes-h200)
also timed fp8 with V stored dim-major (its variants-tried.patch), not kept.

    PYTHONPATH=. python3 scripts/gpu_paged_fp8_probe.py OUT.jsonl [--rounds 3]

Each (cache, tile) is checked against the bf16 NHD run of the first tile on the same values (the fp8
caches hold the bf16 values rounded to e4m3, so the comparison is loose: it catches a wrong tile, not
the quantisation) and timed by the tuner's held device time in rounds over all of them. GB/s counts
the K and V bytes once (one or two bytes per element) plus Q and O.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
from decode_probe_case import BLOCK, HKV, HQ, D, decode_case, kv_bytes

from attnbench.paths import import_kernels

import_kernels()  # the tree's kernels/ as attnbench_kernels (PYTHONPATH=. on the device)

from attnbench_kernels.triton.device_timer import held_device_ms  # noqa: E402
from attnbench_kernels.triton.paged_attn import paged_attention_runner  # noqa: E402
from attnbench_kernels.triton.paged_plan import paged_candidates  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=3)
    opts = ap.parse_args(argv)
    runs = []
    shapes = {"B64 ctx4096": (64, 4096, 1), "B4 ctx32768": (4, 32768, None)}  # None: the planner's splits
    for shape, (batch, context, splits) in shapes.items():
        cases = {"bf16": (decode_case(False, batch=batch, context=context), False),
                 "fp8 bytes": (decode_case(True, batch=batch, context=context), False),
                 "fp8 words": (decode_case(True, batch=batch, context=context), True)}
        ref = None
        for name, ((call_args, scales), words) in cases.items():
            for cfg in paged_candidates(D, HQ // HKV, 1, True, BLOCK):
                out = torch.empty_like(call_args[0])
                launch, _, _, used = paged_attention_runner(*call_args, out=out, num_splits=splits,
                                                            config=cfg, v_words=words, **scales)
                launch()
                torch.cuda.synchronize()
                if ref is None:
                    ref = out.float().clone()
                err = float((out.float() - ref).norm() / ref.norm())
                nbytes = kv_bytes(call_args)
                runs.append({"shape": shape, "cache": name, "config": cfg.describe(), "splits": used,
                             "rel_l2_vs_bf16": err, "bytes": nbytes, "launch": launch, "ms_rounds": []})
    for _ in range(opts.rounds):
        for r in runs:
            r["ms_rounds"].append(held_device_ms(r["launch"]))
    with open(opts.out, "w") as f:
        for r in runs:
            r.pop("launch")
            r["ms"] = statistics.median(r["ms_rounds"])
            r["gbps"] = r["bytes"] / r["ms"] / 1e6
            f.write(json.dumps(r) + "\n")
            print(f"{r['shape']:12s} {r['cache']:10s} x{r['splits']} {r['config']:44s} {r['ms']:.4f} ms "
                  f"{r['gbps']:7.0f} GB/s err {r['rel_l2_vs_bf16']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
