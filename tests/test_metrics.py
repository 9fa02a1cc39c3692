"""FLOP and byte models against hand-computed cases."""

from __future__ import annotations

from attnbench.case import Case
from attnbench.metrics import achieved, attended_pairs, flops, min_hbm_bytes, padding_waste


def case(q, k, causal=True, hq=2, hkv=1, d=8, dtype="fp16", bs=None):
    return Case(
        "t", "prefill" if q == k else "mixed", tuple(q), tuple(k), hq, hkv, d, dtype, causal, block_size=bs
    )


def test_pairs_full_and_causal_square():
    assert attended_pairs(4, 4, False) == 16
    assert attended_pairs(4, 4, True) == 1 + 2 + 3 + 4


def test_pairs_causal_bottom_right_when_nq_lt_nk():
    # 2 queries at the end of 5 keys: the first sees keys 0..3 (4), the second 0..4 (5).
    assert attended_pairs(2, 5, True) == 9
    # decode: one query sees everything
    assert attended_pairs(1, 7, True) == 7


def test_flops_full_attention_is_4_n2_d_h():
    c = case([16], [16], causal=False, hq=3, hkv=3, d=64)
    assert flops(c) == 4 * 16 * 16 * 64 * 3


def test_flops_varlen_causal_gqa_sums_sequences_and_query_heads():
    c = case([3, 2], [3, 5], causal=True, hq=4, hkv=2, d=16)
    pairs = (1 + 2 + 3) + (4 + 5)
    assert flops(c) == 4 * 16 * 4 * pairs


def test_min_bytes_reads_kv_once_per_kv_head():
    c = case([3, 2], [3, 5], hq=4, hkv=2, d=16, dtype="bf16")
    q = 5 * 4 * 16 * 2
    kv = 2 * 8 * 2 * 16 * 2
    assert min_hbm_bytes(c) == q + kv + q


def test_min_bytes_paged_adds_table_entries_read():
    c = case([1, 1], [17, 32], hq=2, hkv=2, d=8, dtype="fp16", bs=16)
    contiguous = min_hbm_bytes(case([1, 1], [17, 32], hq=2, hkv=2, d=8, dtype="fp16"))
    assert min_hbm_bytes(c) - contiguous == 4 * (2 + 2) + 4 * 2


def test_achieved_units():
    c = case([1024], [1024], causal=False, hq=1, hkv=1, d=128)
    a = achieved(c, 1.0)
    assert abs(a["tflops"] - flops(c) / 1e-3 / 1e12) < 1e-12
    assert abs(a["hbm_gbps"] - min_hbm_bytes(c) / 1e-3 / 1e9) < 1e-9


def test_padding_waste():
    assert padding_waste((4, 4)) == 0
    assert padding_waste((1, 3)) == 1 - 4 / 6
