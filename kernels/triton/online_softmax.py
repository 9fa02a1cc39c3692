"""The online-softmax step every Triton kernel here uses (flash_fwd, paged_attn), and the pattern scores.

One tile of keys at a time, each query row keeps a running max m (log2 units), a running sum l of
exp2(score - m) and an unnormalised output acc; a new tile with a larger max rescales l and acc by
alpha = exp2(m_old - m_new). Scores are base-2 logits (log2(e) folded into the scale); masked keys
are -inf.

A row that has seen no visible key yet (every score -inf so far: past a causal diagonal, left of a
sliding window, an empty split) keeps m = -inf. exp2(-inf - -inf) would be NaN, and a NaN in l or
acc never leaves again, so such a row is shifted by 0 instead: p = 0, alpha = 0, and the row stays
(m = -inf, l = 0, acc = 0) until a tile shows it a key. For every row that has a finite max the shift
is the max itself, so the guard changes nothing there.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def online_softmax_update(acc, l_i, m_i, scores, score_scale, v):
    """Fold one tile into the running (acc, l, m) of each row; returns the new (acc, l, m).

    scores: (BLOCK_M, BLOCK_N), the tile's logits divided by score_scale (score_scale = 1.0 for
    scores already in log2 units); the max is taken before scaling, so `scores * score_scale - m` is
    one FMA per score. v: the tile's (BLOCK_N, BLOCK_D) values; P is cast to v's dtype for P.V.
    """
    m_new = tl.maximum(m_i, tl.max(scores, 1) * score_scale)
    m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row with no visible key yet: no NaN
    p = tl.math.exp2(scores * score_scale - m_shift[:, None])
    alpha = tl.math.exp2(m_i - m_shift)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc)
    return acc, l_i, m_new


@triton.jit
def pattern_scores(qk, sm_scale, softcap, slope, qpos, cols,
                   HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr):
    """Scores in log2 units with the soft-cap (after the scale) and then the ALiBi bias.

    qk: raw q.k (BLOCK_M, BLOCK_N); qpos: absolute position of each row's query (BLOCK_M,); cols: key
    positions (BLOCK_N,); slope: the row's ALiBi slope, broadcastable against (BLOCK_M, BLOCK_N) (a
    scalar for one head per program, a (BLOCK_M, 1) column for packed heads).
    """
    s = qk * sm_scale
    if HAS_SOFTCAP:
        # tanh(x) = 1 - 2 / (exp(2x) + 1): exact limits +-1 where exp over/underflows.
        x = s / softcap
        s = softcap * (1.0 - 2.0 / (tl.math.exp2(x * 2.8853900817779268) + 1.0))  # 2 log2(e)
    if HAS_ALIBI:
        dist = qpos[:, None] - cols[None, :]
        s = s - slope * tl.where(dist < 0, -dist, dist).to(tl.float32)
    return s * 1.4426950408889634


@triton.jit
def attend_tile(acc, l_i, m_i, q, kt, v, qk_scale, mask, MASKED: tl.constexpr):
    """One tile without patterns: S = Q K^T, masked keys -inf, qk_scale = softmax scale * log2(e)."""
    qk = tl.dot(q, kt)
    if MASKED:
        qk = tl.where(mask, qk, float("-inf"))
    return online_softmax_update(acc, l_i, m_i, qk, qk_scale, v)


@triton.jit
def attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos, cols, mask,
                        MASKED: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr):
    """One tile with patterns: pattern_scores (already log2 units), then masked keys -inf."""
    s = pattern_scores(tl.dot(q, kt), sm_scale, softcap, slope, qpos, cols, HAS_SOFTCAP, HAS_ALIBI)
    if MASKED:
        s = tl.where(mask, s, float("-inf"))
    return online_softmax_update(acc, l_i, m_i, s, 1.0, v)


# Whether @triton.jit produced interpreter functions (TRITON_INTERPRET=1 at import); see load().
INTERPRETED = type(online_softmax_update).__name__ == "InterpretedFunction"
