"""triton-paged decode B64 Hq32 Hkv8 context 4096 (16-token shuffled blocks), every tile candidate,
for a bf16 and an fp8 e4m3 cache. The session-5 run (results/baselines/triton-probes-h200) also
timed fp8 with V stored dim-major (its variants-tried.patch), not kept.

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

from attnbench.paths import import_kernels

import_kernels()  # the tree's kernels/ as attnbench_kernels (PYTHONPATH=. on the device)

from attnbench_kernels.triton.device_timer import held_device_ms  # noqa: E402
from attnbench_kernels.triton.paged_attn import paged_attention_runner  # noqa: E402
from attnbench_kernels.triton.paged_plan import paged_candidates  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    b, hq, hkv, d, ctx, bs = 64, 32, 8, 128, 4096, 16
    blocks = b * ctx // bs
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b, hq, d, device="cuda", generator=gen).to(torch.bfloat16)
    shape = (blocks, bs, hkv, d)
    kc, vc = (torch.randn(shape, device="cuda", generator=gen).to(torch.bfloat16) for _ in range(2))
    k8, v8 = kc.to(torch.float8_e4m3fn), vc.to(torch.float8_e4m3fn)
    tables = torch.randperm(blocks, device="cuda", generator=gen).to(torch.int32).view(b, -1)
    lens = torch.full((b,), ctx, dtype=torch.int32, device="cuda")
    cu_q = torch.arange(b + 1, dtype=torch.int32, device="cuda")
    one = torch.ones(1, device="cuda")
    caches = {"bf16": (kc, vc, {}), "fp8 nhd": (k8, v8, {"k_scale": one, "v_scale": one})}
    ref = None
    runs = []
    for name, (k, v, scales) in caches.items():
        for cfg in paged_candidates(d, hq // hkv, 1, True, bs):
            out = torch.empty_like(q)
            launch, _, _, splits = paged_attention_runner(q, k, v, tables, lens, cu_q, 1, ctx, out=out,
                                                          num_splits=1, config=cfg, **scales)
            launch()
            torch.cuda.synchronize()
            if ref is None:
                ref = out.float().clone()
            err = float((out.float() - ref).norm() / ref.norm())
            nbytes = 2 * blocks * bs * hkv * d * k.element_size() + 2 * q.numel() * q.element_size()
            runs.append({"cache": name, "config": cfg.describe(), "rel_l2_vs_bf16": err, "bytes": nbytes,
                         "launch": launch, "ms_rounds": []})
    for _ in range(args.rounds):
        for r in runs:
            r["ms_rounds"].append(held_device_ms(r["launch"]))
    with open(args.out, "w") as f:
        for r in runs:
            r.pop("launch")
            r["ms"] = statistics.median(r["ms_rounds"])
            r["gbps"] = r["bytes"] / r["ms"] / 1e6
            f.write(json.dumps(r) + "\n")
            print(f"{r['cache']:16s} {r['config']:44s} {r['ms']:.4f} ms {r['gbps']:7.0f} GB/s "
                  f"err {r['rel_l2_vs_bf16']:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
