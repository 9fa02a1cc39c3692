"""triton-paged decode B64 Hq32 Hkv8 context 4096 (16-token shuffled blocks) for Nsight Compute:
bf16 or fp8 e4m3 KV, the tuner's pick (memo on disk: run once without ncu to fill it), then two
launches between cudaProfilerStart/Stop, so `ncu --profile-from-start off` sees only those. Session
5 also ran fp8 with V dim-major (variants-tried.patch in results/baselines/triton-probes-h200).

    PYTHONPATH=. python3 scripts/gpu_paged_ncu_probe.py {bf16|fp8}
"""

from __future__ import annotations

import sys

import torch
from decode_probe_case import decode_case

from attnbench.paths import import_kernels

import_kernels()  # the tree's kernels/ as attnbench_kernels (PYTHONPATH=. on the device)

from attnbench_kernels.triton.paged_attn import paged_attention_runner  # noqa: E402


def main(argv: list[str]) -> int:
    args, scales = decode_case(argv[0] == "fp8")
    launch, _, cfg, splits = paged_attention_runner(*args, **scales)
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
