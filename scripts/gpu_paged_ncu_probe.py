"""triton-paged decode B64 Hq32 Hkv8 context 4096 (16-token shuffled blocks) for Nsight Compute:
bf16 or fp8 e4m3 KV, the tuner's pick (memo on disk: run once without ncu to fill it), then two
launches between cudaProfilerStart/Stop, so `ncu --profile-from-start off` sees only those. Session
5 also ran fp8 with V dim-major (variants-tried.patch in results/baselines/triton-probes-h200).

    PYTHONPATH=. python3 scripts/gpu_paged_ncu_probe.py {bf16|fp8}
"""

from __future__ import annotations

import sys

import torch

from attnbench.paths import import_kernels

import_kernels()  # the tree's kernels/ as attnbench_kernels (PYTHONPATH=. on the device)

from attnbench_kernels.triton.paged_attn import paged_attention_runner  # noqa: E402


def main(argv: list[str]) -> int:
    fp8 = argv[0] == "fp8"
    b, hq, hkv, d, ctx, bs = 64, 32, 8, 128, 4096, 16
    blocks = b * ctx // bs
    q = torch.randn(b, hq, d, device="cuda").to(torch.bfloat16)
    kc, vc = (torch.randn(blocks, bs, hkv, d, device="cuda").to(torch.bfloat16) for _ in range(2))
    scales = {}
    if fp8:
        kc, vc = (t.to(torch.float8_e4m3fn) for t in (kc, vc))
        one = torch.ones(1, device="cuda")
        scales = {"k_scale": one, "v_scale": one}
    tables = torch.randperm(blocks, device="cuda", dtype=torch.int64).to(torch.int32).view(b, -1)
    lens = torch.full((b,), ctx, dtype=torch.int32, device="cuda")
    cu_q = torch.arange(b + 1, dtype=torch.int32, device="cuda")
    launch, _, cfg, splits = paged_attention_runner(q, kc, vc, tables, lens, cu_q, 1, ctx, **scales)
    print(argv[0], cfg.describe(), "splits", splits)
    launch()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    for _ in range(2):
        launch()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
