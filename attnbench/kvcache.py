"""Paged KV cache: a pool of fixed-size blocks and per-sequence block tables.

(Interim version: a plain block pool; the full manager with an LRU free queue and prefix caching
replaces the allocation below, keeping paged_pool_for_case as the harness's entry point.)
"""

from __future__ import annotations

import torch

from attnbench.case import Case
from attnbench.inputs import PagedKV


def paged_pool_for_case(case: Case, k: torch.Tensor, v: torch.Tensor, cu_k: list[int]) -> PagedKV:
    assert case.block_size is not None
    bs = case.block_size
    blocks_per_seq = [-(-n // bs) for n in case.kv_lens]
    num_blocks = sum(blocks_per_seq)
    gen = torch.Generator(device="cpu").manual_seed(case.seed + 7)
    order = torch.randperm(num_blocks, generator=gen) if case.kv_layout == "shuffled" else torch.arange(num_blocks)
    k_cache = torch.empty((num_blocks, bs, case.num_kv_heads, case.head_dim), dtype=k.dtype, device=k.device)
    v_cache = torch.empty_like(k_cache)
    tables = torch.zeros((case.batch, max(blocks_per_seq)), dtype=torch.int32)
    nxt = 0
    for i, nb in enumerate(blocks_per_seq):
        ids = order[nxt : nxt + nb]
        nxt += nb
        tables[i, :nb] = ids.to(torch.int32)
        n = case.kv_lens[i]
        padded = nb * bs
        for src, dst in ((k, k_cache), (v, v_cache)):
            seq = src[cu_k[i] : cu_k[i] + n]
            if padded > n:
                seq = torch.cat([seq, seq.new_zeros((padded - n, *seq.shape[1:]))])
            dst[ids.to(k.device)] = seq.view(nb, bs, case.num_kv_heads, case.head_dim)
    token_bytes = 2 * case.num_kv_heads * case.head_dim * case.elem_bytes
    stats = {
        "kv_blocks_allocated": num_blocks,
        "kv_bytes_allocated": num_blocks * bs * token_bytes,
        "kv_bytes_used": case.total_kv * token_bytes,
    }
    return PagedKV(k_cache, v_cache, tables.to(k.device), torch.tensor(case.kv_lens, dtype=torch.int32,
                   device=k.device), bs, stats)
