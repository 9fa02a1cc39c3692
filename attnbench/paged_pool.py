"""A benchmark case's paged KV inputs, built through the KV-cache manager (attnbench.kvcache).

The pool holds exactly the blocks the case needs (shared prefix blocks once). For kv_layout
"shuffled" the manager's free queue is first churned by other requests (allocations and frees in
a seeded random order), so the case's block tables point at scattered blocks as a long-running
server leaves them; "contiguous" places the sequences in a fresh pool in ascending block order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from attnbench.case import Case
from attnbench.kv_quant import stale_values
from attnbench.kvcache import KVCacheManager


@dataclass
class PagedKV:
    """A case's paged KV inputs (layouts: attnbench.inputs); attnbench.inputs.Inputs.paged holds one."""

    k_cache: torch.Tensor
    v_cache: torch.Tensor
    block_tables: torch.Tensor
    kv_lens: torch.Tensor
    block_size: int
    # KV-cache accounting for the row: bytes of the blocks allocated vs bytes holding tokens.
    stats: dict[str, Any] = field(default_factory=dict)


def _case_token_ids(case: Case) -> list[list[int]]:
    """Synthetic token ids: every sequence starts with the same prefix_len tokens, the rest differ."""
    rng = random.Random(case.seed * 7919 + 3)
    prefix = [rng.randrange(50_000) for _ in range(case.prefix_len)]
    seqs = []
    for i, n in enumerate(case.kv_lens):
        own = n - min(case.prefix_len, n)
        # Token ids above the vocabulary-sized range keep unshared tails distinct across sequences.
        seqs.append(prefix[:n] + [100_000 + i * 1_000_003 + t for t in range(own)])
    return seqs


def churn(manager: KVCacheManager, rng: random.Random, rounds: int) -> None:
    """Other requests come and go (random sizes, random finishing order), then all leave.

    What remains is a free queue in the scattered order a long-running server leaves behind. The
    requests are anonymous (no prefix caching), so that order is all they change: it is worked out
    on block ids (churned_order) and handed to the manager, the same order as add_request / free
    calls on the manager give (tests/test_kvcache.py pins it), at list-slicing speed: the B64 x 32k
    pool's million rounds took 10.8 s through the manager on a 2-core CPU, 2.6 s this way (on the
    H200 machine that case's inputs took 18 s of the study's 89 s).
    """
    manager.reorder_free_queue(churned_order([b.block_id for b in manager.free_queue], rng, rounds))


def churned_order(queue: list[int], rng: random.Random, rounds: int) -> list[int]:
    """The free queue (block ids, head first) after `rounds` anonymous requests, as the manager
    serves them: an allocation of k blocks takes the k at the head, a free appends the request's
    blocks at the tail last block first; at the end the live requests leave in arrival order."""
    queue = list(queue)
    head = 0  # queue[head:] is the free queue; the taken prefix is dropped now and then
    live: list[list[int]] = []
    cap = max(1, len(queue) // 4)
    for _ in range(rounds):
        free = len(queue) - head
        if live and (rng.random() < 0.45 or free == 0):
            queue.extend(reversed(live.pop(rng.randrange(len(live)))))
            continue
        k = rng.randint(1, min(cap, free))
        live.append(queue[head : head + k])
        head += k
        if head > len(queue) // 2:
            del queue[:head]
            head = 0
    for blocks in live:
        queue.extend(reversed(blocks))
    return queue[head:]


# Unused slots (the tail of each sequence's last block) hold what a server leaves there: the K/V of
# earlier requests. Drawn wider than the live tokens (x STALE_SCALE) so that a kernel reading one past
# its sequence's end gets a dominant wrong key and fails the correctness check instead of hiding.
STALE_SCALE = 4.0


def stale_pool(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, seed: int,
    kv_dtype: str = "auto", scales: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V pools filled with finite stale values (never zeros: a zero key hides an extra read).

    kv_dtype / scales (K's, V's) of a quantised cache: the stale values are stored in kv_dtype at those
    scales (attnbench.kv_quant.stale_values), as wide once dequantised as in an unquantised pool.
    """
    gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + 29)
    pools = []
    for i in range(2):
        if scales is not None:
            pools.append(stale_values(kv_dtype, shape, scales[i], gen, device, STALE_SCALE))
            continue
        t = torch.randn(shape, generator=gen, dtype=torch.float32, device=device) * STALE_SCALE
        pools.append(t.to(dtype))
    return pools[0], pools[1]


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """t's storage as uint8, the last axis widened to its bytes (t contiguous)."""
    return t.contiguous().view(torch.uint8)


def paged_pool_for_case(
    case: Case, k: torch.Tensor, v: torch.Tensor, cu_k: list[int],
    k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None,
) -> PagedKV:
    """The case's K/V scattered into a block pool through the manager, with block tables and stats.

    The pool has exactly the blocks the case needs (prefix blocks counted once). kv_layout
    "contiguous" places the sequences in a fresh pool (ascending block ids); "shuffled" first lets
    other requests churn through the pool (seeded by case.seed). A quantised case's k / v are already
    in its kv_dtype with these scales (attnbench.kv_quant); the pool holds the same bytes.
    """
    assert case.block_size is not None
    bs = case.block_size
    token_ids = _case_token_ids(case)
    # Dry run in an ample pool: how many blocks the case holds once its prefix blocks are shared.
    probe = KVCacheManager(sum(-(-n // bs) for n in case.kv_lens), bs)
    for i, ids in enumerate(token_ids):
        probe.add_request(i, token_ids=ids)
    need = probe.num_blocks - probe.num_free_blocks

    manager = KVCacheManager(need, bs, enable_prefix_caching=True)
    if case.kv_layout == "shuffled":
        churn(manager, random.Random(case.seed * 1_000_003 + 11), rounds=8 * need + 16)
    tables = []
    for i, ids in enumerate(token_ids):
        manager.add_request(i, token_ids=ids)
        tables.append(manager.block_table(i))
    stats_m = manager.stats()

    hkv, d = case.num_kv_heads, case.head_dim
    scales = None
    if case.kv_quantised:
        if k_scale is None or v_scale is None:
            raise ValueError(f"kv_dtype {case.kv_dtype}: the pool needs the K and V scales")
        scales = (k_scale, v_scale)
    k_cache, v_cache = stale_pool((need, bs, hkv, d), k.dtype, k.device, case.seed, case.kv_dtype, scales)
    # One slot per token: slot = block_id * block_size + offset; shared prefix slots repeat with
    # identical values (the prefix K/V of every sequence equal sequence 0's), so write order is moot.
    slots = []
    for i, n in enumerate(case.kv_lens):
        t = torch.arange(n)
        slots.append(torch.tensor(tables[i], dtype=torch.int64)[t // bs] * bs + t % bs)
    slot_index = torch.cat(slots).to(k.device)
    total = cu_k[-1]
    # Through byte views: torch has no index_copy_ for float8 types, and a copy of bytes is exact.
    for cache, src in ((k_cache, k), (v_cache, v)):
        _bytes(cache).view(-1, hkv, d * cache.element_size()).index_copy_(0, slot_index, _bytes(src[:total]))

    width = max(len(t) for t in tables)
    table_t = torch.zeros((case.batch, width), dtype=torch.int32)
    for i, row in enumerate(tables):
        table_t[i, : len(row)] = torch.tensor(row, dtype=torch.int32)
    token_bytes = 2 * hkv * d * case.kv_elem_bytes  # K and V, every KV head, per token (scales aside)
    unique_tokens = int(torch.unique(slot_index).numel())
    stats = {
        "kv_blocks_allocated": need,
        "kv_bytes_allocated": need * bs * token_bytes,
        "kv_bytes_used": unique_tokens * token_bytes,
        "kv_bytes_logical": case.total_kv * token_bytes,
        "kv_bytes_saved_by_prefix": (case.total_kv - unique_tokens) * token_bytes,
        "prefix_cache_queries": stats_m["prefix_queries"],
        "prefix_cache_hits": stats_m["prefix_hits"],
        "prefix_cache_hit_rate": stats_m["prefix_hit_rate"],
        "kv_pool_layout": case.kv_layout,
    }
    lens = torch.tensor(case.kv_lens, dtype=torch.int32, device=k.device)
    return PagedKV(k_cache, v_cache, table_t.to(k.device), lens, bs, stats)
