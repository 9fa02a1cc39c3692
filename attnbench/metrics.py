"""FLOP and byte models of a case, and the roofline figures derived from a time. Pure functions.

Units are in the names: *_flops (floating-point operations), *_bytes, *_ms, *_gbps (1e9 B/s),
tflops (1e12 FLOP/s).
"""

from __future__ import annotations

from attnbench import patterns
from attnbench.case import SCALE_BYTES, Case


def attended_pairs(q_len: int, kv_len: int, causal: bool, window: int | None = None) -> int:
    """Number of (query, key) pairs one head of one sequence attends.

    Causal masks align bottom-right: query i (0-based) sees keys 0 .. kv_len - q_len + i, i.e.
    kv_len - q_len + i + 1 keys. Summed over i: q_len * (kv_len - q_len) + q_len * (q_len + 1) / 2.
    A sliding window of w tokens cuts each query's keys to those at or after p - w
    (attnbench.patterns.attended_pairs gives the closed form).
    """
    if window is not None:
        return patterns.attended_pairs(q_len, kv_len, causal, window)
    if not causal:
        return q_len * kv_len
    return q_len * (kv_len - q_len) + q_len * (q_len + 1) // 2


def case_pairs(case: Case) -> int:
    """Attended (query, key) pairs of the case summed over its sequences, per query head."""
    return sum(
        attended_pairs(q, k, case.causal, case.window) for q, k in zip(case.q_lens, case.kv_lens, strict=True)
    )


def flops(case: Case) -> int:
    """FLOPs of the forward pass: 4 * d per attended pair per query head.

    Two matmuls (Q K^T and P V), each 2 * d FLOPs per pair (a multiply and an add per element);
    softmax, scaling, soft-cap and ALiBi are not counted, as is customary. Pairs a window masks
    out are not counted (an implementation that computes them does wasted work).
    """
    return 4 * case.head_dim * case.num_q_heads * case_pairs(case)


def reachable_kv_tokens(case: Case) -> int:
    """KV tokens some query attends, summed over sequences (all of them without a window)."""
    return sum(
        patterns.reachable_kv_tokens(q, k, case.causal, case.window)
        for q, k in zip(case.q_lens, case.kv_lens, strict=True)
    )


def min_hbm_bytes(case: Case) -> int:
    """Fewest bytes any implementation must move through HBM.

    Q read once (total_q * Hq * d), K and V read once per KV head (2 * kv_tokens * Hkv * d, where
    kv_tokens counts only the keys a window can reach), O written once (total_q * Hq * d), all at
    the element size; paged cases add the block-table entries actually read (the blocks holding a
    reachable key, int32 each, per sequence) and the kv_lens (int32). A quantised KV cache (kv_dtype
    fp8_e4m3) is read at its own element size, one byte, plus its float32 scales (K's and V's: one
    each per tensor, or one per KV head); Q and O stay at the dtype's.
    """
    e = case.elem_bytes
    q_bytes = case.total_q * case.num_q_heads * case.head_dim * e
    kv_bytes = 2 * reachable_kv_tokens(case) * case.num_kv_heads * case.head_dim * case.kv_elem_bytes
    kv_bytes += 2 * case.kv_scale_count * SCALE_BYTES
    o_bytes = q_bytes
    table_bytes = 0
    if case.block_size is not None:
        blocks = sum(
            patterns.reachable_blocks(q, k, case.causal, case.window, case.block_size)
            for q, k in zip(case.q_lens, case.kv_lens, strict=True)
        )
        table_bytes = 4 * blocks + 4 * case.batch
    return q_bytes + kv_bytes + o_bytes + table_bytes


def padded_tokens(lengths: tuple[int, ...]) -> int:
    """Tokens a padded (batch, max_len) layout holds for these lengths."""
    return len(lengths) * max(lengths)


def padding_waste(lengths: tuple[int, ...]) -> float:
    """Share of a padded layout's tokens that are padding (0 for equal lengths)."""
    total = padded_tokens(lengths)
    return 1.0 - sum(lengths) / total if total else 0.0


def achieved(case: Case, time_ms: float) -> dict[str, float]:
    """TFLOP/s and minimum-bytes bandwidth achieved in time_ms."""
    seconds = time_ms * 1e-3
    return {
        "tflops": flops(case) / seconds / 1e12,
        "hbm_gbps": min_hbm_bytes(case) / seconds / 1e9,
    }
