"""Time every triton-flash tile on the study's prefill shapes.

    PYTHONPATH=. python3 scripts/gpu_flash_tiles_probe.py OUT_DIR [--rounds 3]

For each shape: every LaunchConfig of the candidate list and a few extra tiles. Each config is built,
checked against PyTorch's SDPA on the same bf16 inputs (relative L2 error), then timed by the tuner's
own clock (held device time, L2 flushed) in `rounds` rounds that visit the configs in turn, so a
drift of the clock spreads over all of them. Writes tiles.jsonl (one line per config) and prints a
table sorted by time, TFLOP/s from the causal-aware FLOP count (4 * B * Hq * D * visible (query,
key) pairs). The session-5 run (results/baselines/triton-probes-h200) also timed a one-loop causal
variant (MASK_IN_LOOP in its variants-tried.patch), not kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from attnbench.paths import import_kernels

import_kernels()  # the tree's kernels/ as attnbench_kernels (PYTHONPATH=. on the device)

from attnbench_kernels.triton.device_timer import held_device_ms  # noqa: E402
from attnbench_kernels.triton.flash_fwd import flash_attn_varlen_runner, flash_candidates  # noqa: E402
from attnbench_kernels.triton.tuning import LaunchConfig  # noqa: E402

SHAPES = [  # (batch, q heads, kv heads, length, head dim, causal)
    (4, 32, 32, 4096, 128, True),
    (4, 32, 32, 4096, 128, False),
    (4, 32, 8, 2048, 64, True),
    (4, 32, 8, 2048, 256, True),
]
EXTRA = {128: [(128, 64, 8, 3), (64, 64, 4, 2), (128, 128, 8, 2), (64, 128, 4, 3)],
         64: [(128, 128, 8, 3), (64, 64, 4, 3)], 256: [(64, 64, 4, 2), (128, 64, 8, 2)]}


def configs(d: int, causal: bool, n: int) -> list[LaunchConfig]:
    base = flash_candidates(d, causal, n, True)
    extra = [LaunchConfig.of(w, s, BLOCK_M=bm, BLOCK_N=bn) for bm, bn, w, s in EXTRA.get(d, [])]
    return list(dict.fromkeys(base + extra))


def visible_pairs(n: int, causal: bool) -> int:
    return n * (n + 1) // 2 if causal else n * n


def probe_shape(shape: tuple[int, ...], rounds: int, out: Path) -> None:
    b, hq, hkv, n, d, causal = shape
    gen = torch.Generator(device="cuda").manual_seed(0)
    q = torch.randn(b * n, hq, d, device="cuda", generator=gen).to(torch.bfloat16)
    k = torch.randn(b * n, hkv, d, device="cuda", generator=gen).to(torch.bfloat16)
    v = torch.randn(b * n, hkv, d, device="cuda", generator=gen).to(torch.bfloat16)
    cu = torch.arange(0, (b + 1) * n, n, dtype=torch.int32, device="cuda")
    qb, kb, vb = (t.view(b, n, -1, d).transpose(1, 2) for t in (q, k, v))
    ref = F.scaled_dot_product_attention(qb, kb, vb, is_causal=causal, enable_gqa=hq != hkv)
    ref = ref.transpose(1, 2).reshape(b * n, hq, d).float()
    flops = 4 * b * hq * d * visible_pairs(n, causal)
    runs = []
    for cfg in configs(d, causal, n):
        try:
            launch, o, _, _, tma = flash_attn_varlen_runner(q, k, v, cu, cu, n, causal, config=cfg)
            launch()
            torch.cuda.synchronize()
            err = float((o.float() - ref).norm() / ref.norm())
            runs.append((cfg, launch, err, tma, []))
        except Exception as exc:  # noqa: BLE001 - a tile that does not fit is a row with its reason
            print(f"  {cfg.describe()}: {type(exc).__name__}: {str(exc)[:100]}")
    for _ in range(rounds):
        for _cfg, launch, _err, _tma, times in runs:
            times.append(held_device_ms(launch))
    rows = []
    for cfg, _launch, err, tma, times in runs:
        ms = statistics.median(times)
        rows.append({"shape": list(shape), "config": cfg.describe(), "tma": tma, "ms": ms,
                     "ms_rounds": times, "tflops": flops / ms / 1e9, "rel_l2": err})
    rows.sort(key=lambda r: r["ms"])
    print(f"B{b} Hq{hq} Hkv{hkv} N{n} D{d} {'causal' if causal else 'full'}")
    for r in rows:
        print(f"  {r['config']:46s} {r['ms']:8.4f} ms {r['tflops']:6.1f} TF/s  err {r['rel_l2']:.2e}  "
              f"rounds {' '.join(f'{t:.4f}' for t in r['ms_rounds'])}")
    with (out / "tiles.jsonl").open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(torch.cuda.get_device_name(), torch.__version__)
    for shape in SHAPES:
        probe_shape(shape, args.rounds, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
