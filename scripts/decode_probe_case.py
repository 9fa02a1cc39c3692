"""The decode case the GPU probe scripts share: the study's decode-main shape on random inputs.

B64, Hq32 / Hkv8, D128, context 4096 (batch and context may be given), 16-token blocks in a shuffled
order (a random permutation of the pool), bf16 queries; the cache in bf16 or, with fp8=True, the same
values rounded to e4m3 with unit scales.
Returned as the positional arguments and keywords of paged_attention_runner.
"""

from __future__ import annotations

from typing import Any

import torch

B, HQ, HKV, D, CONTEXT, BLOCK = 64, 32, 8, 128, 4096, 16


def decode_case(fp8: bool, seed: int = 0, batch: int = B,
                context: int = CONTEXT) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(q, k_cache, v_cache, block_tables, kv_lens, cu_seqlens_q, max_q, max_kv), scale keywords."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    blocks = batch * context // BLOCK
    q = torch.randn(batch, HQ, D, device="cuda", generator=gen).to(torch.bfloat16)
    kc, vc = (torch.randn(blocks, BLOCK, HKV, D, device="cuda", generator=gen).to(torch.bfloat16)
              for _ in range(2))
    scales: dict[str, Any] = {}
    if fp8:
        kc, vc = kc.to(torch.float8_e4m3fn), vc.to(torch.float8_e4m3fn)
        one = torch.ones(1, device="cuda")
        scales = {"k_scale": one, "v_scale": one}
    tables = torch.randperm(blocks, device="cuda", generator=gen).to(torch.int32).view(batch, -1)
    lens = torch.full((batch,), context, dtype=torch.int32, device="cuda")
    cu_q = torch.arange(batch + 1, dtype=torch.int32, device="cuda")
    return (q, kc, vc, tables, lens, cu_q, 1, context), scales


def kv_bytes(args: tuple[Any, ...]) -> int:
    """Bytes a decode call must move: K and V once (their element size), Q read and O written."""
    q, kc, vc = args[0], args[1], args[2]
    return kc.numel() * kc.element_size() + vc.numel() * vc.element_size() + 2 * q.numel() * q.element_size()
