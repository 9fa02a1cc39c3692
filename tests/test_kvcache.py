"""The paged KV-cache manager: invariants under random operations, LRU eviction, prefix reuse,
copy-on-write, and the paged inputs it builds for a case."""

from __future__ import annotations

import hashlib
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.kvcache import Block, FreeBlockQueue, KVCacheManager, NoFreeBlocks

# ---- invariants under random operation sequences ----------------------------------------------
op = st.one_of(
    st.tuples(
        st.just("add"), st.lists(st.integers(0, 2), min_size=1, max_size=14)
    ),  # tiny vocab: prefixes collide
    st.tuples(st.just("append"), st.integers(0, 7), st.lists(st.integers(0, 2), min_size=1, max_size=5)),
    st.tuples(st.just("append_anon"), st.integers(0, 7), st.integers(1, 5)),
    st.tuples(st.just("fork"), st.integers(0, 7)),
    st.tuples(st.just("free"), st.integers(0, 7)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 4), st.integers(4, 24), st.lists(op, max_size=40))
def test_invariants_under_random_operations(block_size, num_blocks, ops):
    m = KVCacheManager(num_blocks, block_size)
    # A model of the pool's contents: what each slot holds, and what each request must read back.
    slots: dict[tuple[int, int], int] = {}
    want: dict[int, list[int]] = {}
    next_id, fresh = 0, -1

    def write(rid: int, start: int) -> None:
        for src, dst in m.pop_copies():  # copy-on-write copies the block's contents first
            for off in range(block_size):
                if (src, off) in slots:
                    slots[(dst, off)] = slots[(src, off)]
        table = m.block_table(rid)
        for pos in range(start, len(want[rid])):
            slots[(table[pos // block_size], pos % block_size)] = want[rid][pos]

    for o in ops:
        live = sorted(m.requests)
        before = (m.num_free_blocks, {r: m.block_table(r) for r in live})
        try:
            if o[0] == "add":
                m.add_request(next_id, token_ids=o[1])
                want[next_id] = list(o[1])
                write(next_id, 0)
                next_id += 1
            elif o[0] in ("append", "append_anon") and live:
                rid = live[o[1] % len(live)]
                toks = o[2] if o[0] == "append" else list(range(fresh, fresh - o[2], -1))
                fresh -= len(toks)
                if o[0] == "append":
                    m.append_tokens(rid, token_ids=toks)
                else:
                    m.append_tokens(rid, count=len(toks))
                want[rid] += toks
                write(rid, len(want[rid]) - len(toks))
            elif o[0] == "fork" and live:
                m.fork(live[o[1] % len(live)], next_id)
                want[next_id] = list(want[live[o[1] % len(live)]])
                next_id += 1
            elif o[0] == "free" and live:
                m.free(live[o[1] % len(live)])
                del want[live[o[1] % len(live)]]
        except NoFreeBlocks:
            # A refused operation changes nothing.
            assert (m.num_free_blocks, {r: m.block_table(r) for r in live}) == before
        # Every block is owned exactly ref_cnt times, free blocks are exactly the unowned ones,
        # tables match token counts, the cache map is consistent.
        m.check_invariants()
        owned = {b for r in m.requests for b in m.block_table(r)}
        assert len(owned) + m.num_free_blocks == num_blocks
        # No request sees another's writes: shared blocks were copied before being modified, and
        # a reused cached block holds exactly the tokens of the prefix that found it.
        for rid, toks in want.items():
            table = m.block_table(rid)
            got = [slots.get((table[p // block_size], p % block_size)) for p in range(len(toks))]
            assert got == toks, f"request {rid} reads {got}, wrote {toks}"
    for r in list(m.requests):
        m.free(r)
    m.check_invariants()
    assert m.num_free_blocks == num_blocks  # freed blocks all come back


def test_no_free_blocks_leaves_pool_unchanged():
    m = KVCacheManager(3, 4)
    m.add_request("a", num_tokens=8)
    with pytest.raises(NoFreeBlocks):
        m.add_request("b", num_tokens=5)
    assert "b" not in m.requests and m.num_free_blocks == 1
    m.append_tokens("a", 4)  # fills the last block
    with pytest.raises(NoFreeBlocks):
        m.append_tokens("a", 1)
    assert m.num_tokens("a") == 12
    m.check_invariants()


def test_block_taken_only_at_boundary():
    m = KVCacheManager(8, 4)
    m.add_request("a", num_tokens=1)
    assert [len(m.append_tokens("a", 1)) for _ in range(8)] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert len(m.block_table("a")) == 3


# ---- LRU eviction of cached blocks --------------------------------------------------------
def test_lru_eviction_order():
    m = KVCacheManager(6, 2)
    a = m.add_request("a", token_ids=[1, 2, 3, 4])  # 2 full blocks, cached
    b = m.add_request("b", token_ids=[5, 6, 7, 8])
    fresh = m.add_request("c", num_tokens=4)  # the 2 never-used blocks go first
    assert set(fresh).isdisjoint(a + b)
    m.free("a")  # a's blocks return tail-first: a[1], a[0]
    m.free("b")
    m.free("c")
    assert m.stats()["blocks_cached"] == 4
    # Taking blocks evicts in the order they were freed: a's last block, a's first, then b's.
    taken = m.add_request("d", num_tokens=2 * 5)
    assert taken[:4] == [a[1], a[0], b[1], b[0]]
    assert m.evictions == 4 and m.stats()["blocks_cached"] == 0
    m.check_invariants()


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 6), st.permutations(list(range(6))))
def test_lru_order_property(n_reqs, free_order):
    """Blocks are handed out least-recently-freed first, whatever order requests leave in."""
    m = KVCacheManager(n_reqs, 1)
    tables = {i: m.add_request(i, token_ids=[100 + i]) for i in range(n_reqs)}
    freed = [i for i in free_order if i < n_reqs]
    for i in freed:
        m.free(i)
    assert m.add_request("x", num_tokens=n_reqs) == [tables[i][0] for i in freed]


# ---- prefix caching ------------------------------------------------------------------------
def test_cached_prefix_is_reused_and_shared():
    m = KVCacheManager(16, 4)
    prompt = list(range(10))  # 2 full blocks + 2 tokens
    t1 = m.add_request(1, token_ids=prompt)
    t2 = m.add_request(2, token_ids=prompt[:8] + [99, 98, 97])
    assert t2[:2] == t1[:2] and t2[2] != t1[2]
    assert [m.blocks[b].ref_cnt for b in t1[:2]] == [2, 2]
    assert m.prefix_hits == 2
    m.free(1)
    m.free(2)
    # Still cached while free: a third request with the prefix gets the same physical blocks back.
    t3 = m.add_request(3, token_ids=prompt[:8] + [5])
    assert t3[:2] == t1[:2] and m.prefix_hits == 4
    m.check_invariants()


def test_appended_tokens_become_cached_blocks():
    m = KVCacheManager(8, 2)
    m.add_request("a", token_ids=[1])
    m.append_tokens("a", token_ids=[2, 3, 4])
    first = m.block_table("a")
    b = m.add_request("b", token_ids=[1, 2, 3, 4, 5])
    assert b[:2] == first[:2]


# ---- copy on write -------------------------------------------------------------------------
def test_shared_partial_block_is_copied_on_write():
    m = KVCacheManager(8, 4)
    parent = m.add_request("p", token_ids=[1, 2, 3, 4, 5, 6])  # last block partial (2 of 4)
    m.fork("p", "c")
    assert m.block_table("c") == parent and m.blocks[parent[1]].ref_cnt == 2
    new = m.append_tokens("c", token_ids=[7])
    child = m.block_table("c")
    assert child[0] == parent[0] and child[1] != parent[1] and new == [child[1]]
    assert m.pop_copies() == [(parent[1], child[1])]
    assert m.block_table("p") == parent and m.blocks[parent[1]].ref_cnt == 1
    # The parent now owns its block alone: writing into it copies nothing.
    m.append_tokens("p", token_ids=[8])
    assert m.block_table("p") == parent and m.pop_copies() == []
    m.check_invariants()


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5), st.integers(1, 12), st.lists(st.tuples(st.booleans(), st.integers(1, 4)), max_size=12)
)
def test_forked_sequences_never_see_each_others_writes(block_size, prompt_len, appends):
    m = KVCacheManager(64, block_size)
    slots: dict[tuple[int, int], int] = {}
    want = {"p": list(range(prompt_len)), "c": list(range(prompt_len))}
    m.add_request("p", token_ids=want["p"])
    for pos, tok in enumerate(want["p"]):
        slots[(m.block_table("p")[pos // block_size], pos % block_size)] = tok
    m.fork("p", "c")
    for step, (to_child, n) in enumerate(appends):
        rid = "c" if to_child else "p"
        toks = [1000 * (step + 1) + i for i in range(n)]
        m.append_tokens(rid, token_ids=toks)
        for src, dst in m.pop_copies():
            for off in range(block_size):
                if (src, off) in slots:
                    slots[(dst, off)] = slots[(src, off)]
        start = len(want[rid])
        want[rid] += toks
        for pos in range(start, len(want[rid])):
            slots[(m.block_table(rid)[pos // block_size], pos % block_size)] = want[rid][pos]
        for r, toks_r in want.items():
            table = m.block_table(r)
            assert [slots[(table[p // block_size], p % block_size)] for p in range(len(toks_r))] == toks_r
    m.check_invariants()


def test_full_shared_block_is_not_copied():
    m = KVCacheManager(8, 2)
    m.add_request("p", token_ids=[1, 2, 3, 4])
    m.fork("p", "c")
    m.append_tokens("c", token_ids=[5])  # goes to a new block; the shared full ones stay shared
    assert m.pop_copies() == [] and m.block_table("c")[:2] == m.block_table("p")


# ---- paged inputs for a case ---------------------------------------------------------------
def _case(layout: str, prefix: int = 0, seed: int = 1, lens=(70, 100, 45, 33)) -> Case:
    return Case(
        workload="t",
        phase="decode",
        q_lens=(1,) * len(lens),
        kv_lens=tuple(lens),
        num_q_heads=4,
        num_kv_heads=2,
        head_dim=8,
        dtype="fp32",
        causal=True,
        block_size=16,
        kv_layout=layout,
        seed=seed,
        prefix_len=prefix,
    )


def _gathered(inputs, i: int) -> torch.Tensor:
    p = inputs.paged
    n = inputs.case.kv_lens[i]
    blocks = p.block_tables[i][: -(-n // p.block_size)].long()
    return p.k_cache[blocks].reshape(-1, *p.k_cache.shape[2:])[:n]


@pytest.mark.parametrize("layout", ["shuffled", "contiguous"])
@pytest.mark.parametrize("prefix", [0, 40])
def test_paged_pool_holds_the_sequences(layout, prefix):
    inp = build_inputs(_case(layout, prefix, lens=(70, 100, 45, 41)), "cpu")
    for i, (_, ks) in enumerate(inp.seq_slices()):
        assert torch.equal(_gathered(inp, i), inp.k[ks])
    s = inp.paged.stats
    token_bytes = 2 * 2 * 8 * 4
    assert s["kv_bytes_allocated"] == s["kv_blocks_allocated"] * 16 * token_bytes
    assert s["kv_bytes_used"] <= s["kv_bytes_allocated"]


def test_contiguous_layout_is_in_order_and_shuffled_is_not():
    cont = build_inputs(_case("contiguous", lens=(200, 300)), "cpu").paged
    ids = [
        b for row, n in zip(cont.block_tables.tolist(), (200, 300), strict=True) for b in row[: -(-n // 16)]
    ]
    assert ids == list(range(len(ids)))
    shuf = build_inputs(_case("shuffled", lens=(200, 300)), "cpu").paged
    ids = [
        b for row, n in zip(shuf.block_tables.tolist(), (200, 300), strict=True) for b in row[: -(-n // 16)]
    ]
    assert sorted(ids) == list(range(len(ids))) and ids != sorted(ids)
    again = build_inputs(_case("shuffled", lens=(200, 300)), "cpu").paged
    assert torch.equal(again.block_tables, shuf.block_tables)  # deterministic for a seed


def test_prefix_blocks_are_held_once():
    lens = (70, 100, 45, 33)
    plain = build_inputs(_case("shuffled", 0, lens=lens), "cpu").paged.stats
    shared = build_inputs(_case("shuffled", 32, lens=lens), "cpu").paged.stats
    # 32 prefix tokens = 2 full blocks of 16, shared by 4 sequences: 3 * 2 blocks saved.
    assert plain["kv_blocks_allocated"] - shared["kv_blocks_allocated"] == 6
    assert shared["prefix_cache_hits"] == 6 and shared["prefix_cache_hit_rate"] > 0
    assert shared["kv_bytes_saved_by_prefix"] == 3 * 32 * 2 * 2 * 8 * 4


def test_batch_queue_operations_match_one_at_a_time():
    """popleft_n / extend (the churn's fast path) leave the queue as popleft / append would."""
    rng = random.Random(5)
    fast_blocks, slow_blocks = [Block(i) for i in range(200)], [Block(i) for i in range(200)]
    fast, slow = FreeBlockQueue(fast_blocks), FreeBlockQueue(slow_blocks)
    held_fast: list[Block] = []
    held_slow: list[Block] = []
    for _ in range(500):
        if held_fast and rng.random() < 0.5:
            k = rng.randint(1, len(held_fast))
            order = rng.sample(range(len(held_fast)), k)
            fast.extend([held_fast[i] for i in order])
            for i in order:
                slow.append(held_slow[i])
            keep = sorted(set(range(len(held_fast))) - set(order))
            held_fast, held_slow = [held_fast[i] for i in keep], [held_slow[i] for i in keep]
        else:
            n = rng.randint(0, len(fast))
            held_fast += fast.popleft_n(n)
            held_slow += [slow.popleft() for _ in range(n)]
        assert [b.block_id for b in fast] == [b.block_id for b in slow] and len(fast) == len(slow)
    with pytest.raises(NoFreeBlocks):
        fast.popleft_n(len(fast) + 1)
    assert [b.block_id for b in fast] == [b.block_id for b in slow]  # unchanged by the refusal


def _churned_tables(lens: list[int], block_size: int, seed: int, prefix: int) -> str:
    """Digest of a shuffled pool's block tables, built as attnbench.paged_pool builds them."""
    from types import SimpleNamespace

    from attnbench.paged_pool import _case_token_ids, churn

    token_ids = _case_token_ids(SimpleNamespace(seed=seed, prefix_len=prefix, kv_lens=lens))
    probe = KVCacheManager(sum(-(-n // block_size) for n in lens), block_size)
    for i, ids in enumerate(token_ids):
        probe.add_request(i, token_ids=ids)
    need = probe.num_blocks - probe.num_free_blocks
    m = KVCacheManager(need, block_size)
    churn(m, random.Random(seed * 1_000_003 + 11), rounds=8 * need + 16)
    tables = []
    for i, ids in enumerate(token_ids):
        m.add_request(i, token_ids=ids)
        tables.append(m.block_table(i))
    return hashlib.sha256(repr(tables).encode()).hexdigest()[:16]


def test_shuffled_layout_is_pinned():
    """A shuffled pool's layout is part of what a paged point measures: a gate baseline compares
    runs built with the same tables. Speeding up the manager must not change them (these digests
    were taken before the free queue's batch pop was made lighter)."""
    assert _churned_tables([37, 300, 129, 77, 512], 16, 3, 40) == "95bd0c02e6af1357"
    assert _churned_tables([37, 300, 129, 77, 512], 8, 5, 0) == "9c76c62c367482b2"


def _churn_through_the_manager(m: KVCacheManager, rng: random.Random, rounds: int) -> None:
    """The churn as add_request / free calls on the manager (what paged_pool.churn reproduces on ids)."""
    live: list[tuple[str, int]] = []
    cap = max(1, m.num_blocks // 4)
    for i in range(rounds):
        if live and (rng.random() < 0.45 or m.num_free_blocks == 0):
            m.free(live.pop(rng.randrange(len(live))))
            continue
        m.add_request(("churn", i), num_tokens=rng.randint(1, min(cap, m.num_free_blocks)) * m.block_size)
        live.append(("churn", i))
    for rid in live:
        m.free(rid)


@pytest.mark.parametrize("num_blocks,block_size,seed", [(1, 16, 0), (7, 8, 1), (300, 16, 2), (4096, 1, 3)])
def test_churn_on_ids_matches_the_manager(num_blocks, block_size, seed):
    from attnbench.paged_pool import churn

    fast, slow = KVCacheManager(num_blocks, block_size), KVCacheManager(num_blocks, block_size)
    churn(fast, random.Random(seed), rounds=8 * num_blocks + 16)
    _churn_through_the_manager(slow, random.Random(seed), rounds=8 * num_blocks + 16)
    assert [b.block_id for b in fast.free_queue] == [b.block_id for b in slow.free_queue]
    fast.check_invariants()
    assert fast.add_request("x", num_tokens=num_blocks * block_size) == slow.add_request(
        "x", num_tokens=num_blocks * block_size)


def test_reorder_free_queue_refuses_a_busy_pool_or_a_wrong_order():
    m = KVCacheManager(4, 16)
    with pytest.raises(ValueError, match="permutation"):
        m.reorder_free_queue([0, 1, 1, 3])
    m.add_request("a", num_tokens=16)
    with pytest.raises(ValueError, match="every block must be free"):
        m.reorder_free_queue([3, 2, 1, 0])
