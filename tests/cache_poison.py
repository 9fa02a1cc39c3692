"""NaN in every paged-pool slot that no sequence owns, for the kernel tests.

The harness fills unused slots with finite stale values (attnbench.paged_pool), which a kernel reading
past a sequence's end turns into a wrong but finite output; the check then has to notice it. The
kernel tests go further: with NaN there, any read of an unowned slot that reaches the output shows up
as NaN, which check_output always rejects, however small the read's weight would have been.
"""

from __future__ import annotations

import torch

from attnbench.inputs import PagedKV


def owned_slots(paged: PagedKV) -> torch.Tensor:
    """(num_blocks, block_size) bool: True where some sequence keeps one of its tokens."""
    bs = paged.block_size
    num_blocks = paged.k_cache.shape[0]
    tables = paged.block_tables.long()
    device = tables.device
    token = torch.arange(tables.shape[1] * bs, device=device)  # logical token index within a sequence
    live = token[None, :] < paged.kv_lens.to(device=device, dtype=torch.int64)[:, None]  # (B, tokens)
    slot = tables[:, token // bs] * bs + token % bs  # flat pool slot of every (sequence, token)
    owned = torch.zeros(num_blocks * bs, dtype=torch.bool, device=device)
    owned[slot[live]] = True
    return owned.view(num_blocks, bs)


# e4m3fn's NaN byte (S.1111.111). Triton's interpreter reads it as 480, not NaN (it treats e4m3 like an
# IEEE type), larger than any element a case stores (<= 448), so a read of it still shows on a CPU.
FP8_NAN_BITS = 0x7F


def poison_unused_slots(paged: PagedKV) -> int:
    """Write NaN into K and V of every unowned slot (block tails, spare blocks); returns how many."""
    unused = ~owned_slots(paged).to(paged.k_cache.device)
    for cache in (paged.k_cache, paged.v_cache):
        if cache.dtype == torch.float8_e4m3fn:  # no index_put for float8: through its bytes
            cache.view(torch.uint8)[unused] = FP8_NAN_BITS
        else:
            cache[unused] = float("nan")
    return int(unused.sum())
