"""The kernel tests' NaN poisoning hits exactly the slots no sequence owns, and none that one does."""

from __future__ import annotations

import torch

from attnbench.case import Case
from attnbench.inputs import build_inputs
from tests.cache_poison import owned_slots, poison_unused_slots


def test_poison_covers_block_tails_and_spares_nothing_owned():
    # Shared prefix (blocks owned by several sequences), partial last blocks, a shuffled pool.
    case = Case("t", "decode", (1, 1, 1), (37, 40, 33), 4, 2, 16, "fp16", False, block_size=16,
                kv_layout="shuffled", seed=3, prefix_len=32)
    inputs = build_inputs(case, "cpu")
    paged = inputs.paged
    assert paged is not None
    owned = owned_slots(paged)
    unique_tokens = paged.stats["kv_bytes_used"] // (2 * case.num_kv_heads * case.head_dim * case.elem_bytes)
    assert int(owned.sum()) == unique_tokens
    n = poison_unused_slots(paged)
    assert n == owned.numel() - unique_tokens > 0
    bs = case.block_size
    cu_k = inputs.cu_seqlens_k.tolist()
    for b, kv_len in enumerate(case.kv_lens):
        blocks = paged.block_tables[b, : -(-kv_len // bs)].long()
        k_seq = paged.k_cache[blocks].reshape(-1, case.num_kv_heads, case.head_dim)
        v_seq = paged.v_cache[blocks].reshape(-1, case.num_kv_heads, case.head_dim)
        # The owned tokens read back unchanged ...
        torch.testing.assert_close(k_seq[:kv_len], inputs.k[cu_k[b] : cu_k[b + 1]], rtol=0, atol=0)
        torch.testing.assert_close(v_seq[:kv_len], inputs.v[cu_k[b] : cu_k[b + 1]], rtol=0, atol=0)
        # ... and the slot one past the end, where a last-block tail exists, is NaN.
        if kv_len % bs:
            assert torch.isnan(k_seq[kv_len]).all() and torch.isnan(v_seq[kv_len]).all()
