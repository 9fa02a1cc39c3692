"""Paged attention in Triton: decode and chunked prefill over a block-table KV cache.

Layout: q (total_q, Hq, D) packed by cu_seqlens_q (B + 1); k_cache / v_cache (num_blocks, block_size,
Hkv, D); block_tables int32 (B, max_blocks) (logical block j of sequence b lives in physical block
block_tables[b, j]); kv_lens int32 (B,). Sequence b's q_len queries are its last tokens: with causal
masking, query i sees keys 0 .. kv_len - q_len + i (decode: q_len = 1 sees everything).

One program owns one KV head of one sequence, a tile of BLOCK_Q query tokens, and one KV split:
- GQA packing: the GROUP query heads of the KV head are rows of the same tile (row = token * GROUP_PAD
  + head-in-group), so every K/V tile loaded from HBM serves all of them through one tl.dot (M = the
  packed rows, padded to 16 for the tensor cores);
- keys are streamed BLOCK_N tokens at a time; each token's physical slot comes from the block table
  (any block size: tokens // block_size picks the table entry); when the block size is a multiple of
  BLOCK_N a tile lies inside one block and needs a single table read;
- split-KV: with few (sequence, KV head) pairs for the SM count, each pair's context is cut into
  num_splits chunks processed by separate programs that write a normalised partial output and its
  log-sum-exp; a reduce kernel merges them (weights 2^(lse_s - max lse)). The split count, the chunk
  length and the tile candidates are planned on the host (paged_plan.py).
Patterns (attnbench.patterns): with a sliding window w the key range of a tile starts at the block-
aligned window start of its first query row, so blocks left of the window are never read (loop
bounds), and split-KV cuts the window's span, not the whole context, into chunks (window_span()).
w and the soft-cap are runtime arguments (w exempt from integer specialisation): a new window size
reuses the compiled kernel. Soft-cap and ALiBi act in the score step; HAS_WINDOW / HAS_SOFTCAP /
HAS_ALIBI are constexprs, so the pattern-free kernel is unchanged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from .online_softmax import attend_pattern_tile, attend_tile
from .paged_plan import (
    SPLIT_ALIGN,
    choose_num_splits,
    kv_scale_stride,
    paged_candidates,
    split_chunk,
    split_workspace,
    window_span,
)
from .tuning import LaunchConfig, Tuner, length_bucket, next_pow2


@triton.jit
def _e4m3_byte(words, shift: tl.constexpr):
    """The e4m3 value in bits [shift, shift + 8) of each int32 word, as fp16 (exact)."""
    return ((words >> shift) & 0xFF).to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float16)


@triton.jit
def _e4m3_words_to_fp16(words, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """(BLOCK_N, BLOCK_D / 4) little-endian words of four e4m3 values -> (BLOCK_N, BLOCK_D) fp16.

    join(join(b0, b2), join(b1, b3)) has shape (N, D / 4, 2, 2) with [n, w, i, j] = byte 2i + j of word w,
    so the row-major reshape puts byte k of word w at column 4w + k, where it was in memory."""
    low = tl.join(_e4m3_byte(words, 0), _e4m3_byte(words, 16))
    high = tl.join(_e4m3_byte(words, 8), _e4m3_byte(words, 24))
    return tl.reshape(tl.join(low, high), (BLOCK_N, BLOCK_D))


@triton.jit
def _paged_kv_tile(
    KC, VC, seq_table, n, kv_len, kv_head,
    stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, offs_n, offs_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, KV_BLOCK: tl.constexpr, BLOCK_N: tl.constexpr,
    MASK_N: tl.constexpr, Q, KV_CAST: tl.constexpr, V_WORDS: tl.constexpr = False,
):
    """K^T (BLOCK_D x BLOCK_N) and V (BLOCK_N x BLOCK_D) for logical tokens n .. n + BLOCK_N.

    KV_CAST: the cache holds another type than Q (fp8 e4m3): the tiles are converted to fp16 in
    registers (exact: every e4m3 value is an fp16 value; Hopper converts a pair in one instruction, to
    bf16 it takes a detour through fp32), and the caller runs both dots in fp16 (Q converted once, P
    as fp16); the scales are applied by the caller.
    V_WORDS: VC is the e4m3 value cache seen as int32 words (4 values each; its strides in words):
    V is loaded as (BLOCK_N, BLOCK_D / 4) words and widened in registers (_e4m3_words_to_fp16), so its
    loads are 4-byte ones the pipeliner can stage, where an fp8 V tile read as bytes is loaded one byte
    at a time outside the pipeline (kernels/notes/triton.md, session 5).
    """
    tok = n + offs_n
    if KV_BLOCK % BLOCK_N == 0:
        # The whole tile sits in one block: one table entry, contiguous slots.
        blk = tl.load(seq_table + n // KV_BLOCK).to(tl.int64)
        slot = (n % KV_BLOCK) + offs_n
        k_off = blk * stride_kb + slot * stride_ks
        v_off = blk * stride_vb + slot * stride_vs
    else:
        if MASK_N:
            blk = tl.load(seq_table + tok // KV_BLOCK, mask=tok < kv_len, other=0).to(tl.int64)
        else:
            blk = tl.load(seq_table + tok // KV_BLOCK).to(tl.int64)
        slot = tok % KV_BLOCK
        k_off = blk * stride_kb + slot * stride_ks
        v_off = blk * stride_vb + slot * stride_vs
    k_ptrs = KC + kv_head * stride_kh + k_off[None, :] + offs_d[:, None]
    v_ptrs = VC + kv_head * stride_vh + v_off[:, None] + offs_d[None, :]
    if V_WORDS:
        offs_w = tl.arange(0, BLOCK_D // 4)
        w_ptrs = VC + kv_head * stride_vh + v_off[:, None] + offs_w[None, :]
        if MASK_N or BLOCK_D != HEAD_DIM:
            tok_in = tok < kv_len  # (its own name: the planted stale-slot fault edits the bytes path's line)
            kt = tl.load(k_ptrs, mask=tok_in[None, :] & (offs_d < HEAD_DIM)[:, None], other=0.0)
            words = tl.load(w_ptrs, mask=tok_in[:, None] & (offs_w * 4 < HEAD_DIM)[None, :], other=0)
        else:
            kt = tl.load(k_ptrs)
            words = tl.load(w_ptrs)
        kt = kt.to(tl.float16)
        v = _e4m3_words_to_fp16(words, BLOCK_N, BLOCK_D)
    else:
        if MASK_N or BLOCK_D != HEAD_DIM:
            # Slots past kv_len may hold anything (stale tokens, NaN): never let them in.
            n_ok = tok < kv_len
            d_ok = offs_d < HEAD_DIM
            kt = tl.load(k_ptrs, mask=n_ok[None, :] & d_ok[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        else:
            kt = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
        if KV_CAST:
            kt = kt.to(tl.float16)
            v = v.to(tl.float16)
    return kt, v


@triton.jit(do_not_specialize=["window"])
def paged_attn_kernel(
    Q, KC, VC, Out, TABLES, KV_LENS, cu_q, PART_O, PART_LSE, sm_scale, window, softcap, Slopes,
    KScale, VScale, stride_sc,
    stride_qt, stride_qh, stride_ot, stride_oh,
    stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, stride_tb,
    stride_pos, stride_pot, stride_poh, stride_pls, stride_plt,
    chunk, num_splits,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    KV_BLOCK: tl.constexpr, CAUSAL: tl.constexpr, SPLIT: tl.constexpr,
    BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr = False, HAS_SOFTCAP: tl.constexpr = False, HAS_ALIBI: tl.constexpr = False,
    KV_CAST: tl.constexpr = False, HAS_KV_SCALE: tl.constexpr = False, V_WORDS: tl.constexpr = False,
):
    seq = tl.program_id(0)
    q_tile = tl.program_id(1)
    kv_head = tl.program_id(2) // num_splits
    split = tl.program_id(2) % num_splits
    split64 = split.to(tl.int64)  # partial buffers can pass 2^31 elements
    q_start = tl.load(cu_q + seq)
    q_len = tl.load(cu_q + seq + 1) - q_start
    q0 = q_tile * BLOCK_Q
    if q0 >= q_len:
        return
    kv_len = tl.load(KV_LENS + seq)

    rows = tl.arange(0, BLOCK_M)
    qi = rows // GROUP_PAD  # query token within the tile
    g = rows % GROUP_PAD  # query head within the KV head's group
    row_ok = (qi < BLOCK_Q) & (g < GROUP) & (q0 + qi < q_len)
    head = kv_head * GROUP + g
    tok = (q_start + q0 + qi).to(tl.int64)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    d_ok = offs_d < HEAD_DIM
    io_mask = row_ok[:, None] & d_ok[None, :]
    q = tl.load(Q + tok[:, None] * stride_qt + head[:, None] * stride_qh + offs_d[None, :],
                mask=io_mask, other=0.0)
    if KV_CAST:  # an fp8 cache: the dots in fp16 (bf16 queries are exact there for 6.1e-5 <= |q| <= 65504)
        q = q.to(tl.float16)

    # Keys [lo, full) are seen by every row of the tile, [full, hi) need the mask.
    if CAUSAL:
        diag = kv_len - q_len  # token i of the chunk sees keys <= diag + i
        hi = tl.minimum(kv_len, diag + q0 + BLOCK_Q)
        full = tl.maximum(tl.minimum(kv_len, diag + q0 + 1), 0)
    else:
        diag = kv_len
        hi = kv_len
        full = kv_len
    win_lo = 0  # first key any row of the tile sees, block-aligned (0 without a window)
    if HAS_WINDOW:
        win_lo = (tl.maximum(kv_len - q_len + q0 - window, 0) // BLOCK_N) * BLOCK_N
    lo = win_lo + split * chunk
    hi = tl.minimum(hi, lo + chunk)
    full = tl.maximum(lo, (tl.minimum(full, hi) // BLOCK_N) * BLOCK_N)

    if HAS_KV_SCALE:
        # Scaled KV (fp8): score = q . (k * s_k) = (q . k) * s_k and out = sum p (v * s_v) / l = s_v * (...),
        # with s_k, s_v constant over the program (it owns one KV head; per-tensor scales have stride 0),
        # so K's scale folds into the softmax scale and V's into the output: no multiply per element.
        sm_scale = sm_scale * tl.load(KScale + kv_head * stride_sc)
    qk_scale = sm_scale * 1.4426950408889634  # log2(e)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    seq_table = TABLES + seq.to(tl.int64) * stride_tb

    if HAS_WINDOW or HAS_SOFTCAP or HAS_ALIBI:
        qpos = kv_len - q_len + q0 + qi  # absolute position of each packed row's query token
        slope = tl.zeros([BLOCK_M, 1], tl.float32)  # a column: each packed row has its head's slope
        if HAS_ALIBI:
            slope = tl.load(Slopes + head, mask=row_ok, other=0.0)[:, None]
        wl = lo  # [lo, wl): tiles some row's window starts inside (masked)
        if HAS_WINDOW:
            p_last = kv_len - q_len + tl.minimum(q0 + BLOCK_Q, q_len) - 1
            wl = tl.minimum(tl.maximum(tl.cdiv(tl.maximum(p_last - window, 0), BLOCK_N) * BLOCK_N, lo), full)
            for n in tl.range(lo, wl, BLOCK_N):
                n = tl.multiple_of(n, BLOCK_N)
                kt, v = _paged_kv_tile(KC, VC, seq_table, n, kv_len, kv_head, stride_kb, stride_ks,
                                       stride_kh, stride_vb, stride_vs, stride_vh, offs_n, offs_d,
                                       HEAD_DIM, BLOCK_D, KV_BLOCK, BLOCK_N, True, Q, KV_CAST, V_WORDS)
                cols = n + offs_n
                mask = (cols[None, :] < kv_len) & (cols[None, :] >= qpos[:, None] - window)
                if CAUSAL:
                    mask = mask & (cols[None, :] <= qpos[:, None])
                acc, l_i, m_i = attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos,
                                                    cols, mask, True, HAS_SOFTCAP, HAS_ALIBI)
        for n in tl.range(wl, full, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _paged_kv_tile(KC, VC, seq_table, n, kv_len, kv_head, stride_kb, stride_ks, stride_kh,
                                   stride_vb, stride_vs, stride_vh, offs_n, offs_d,
                                   HEAD_DIM, BLOCK_D, KV_BLOCK, BLOCK_N, False, Q, KV_CAST, V_WORDS)
            acc, l_i, m_i = attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos,
                                                n + offs_n, None, False, HAS_SOFTCAP, HAS_ALIBI)
        for n in tl.range(full, hi, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _paged_kv_tile(KC, VC, seq_table, n, kv_len, kv_head, stride_kb, stride_ks, stride_kh,
                                   stride_vb, stride_vs, stride_vh, offs_n, offs_d,
                                   HEAD_DIM, BLOCK_D, KV_BLOCK, BLOCK_N, True, Q, KV_CAST, V_WORDS)
            cols = n + offs_n
            mask = kv_len > cols[None, :]  # (written so; the planted stale-slot fault edits the other)
            if CAUSAL:
                mask = mask & (cols[None, :] <= qpos[:, None])
            if HAS_WINDOW:
                mask = mask & (cols[None, :] >= qpos[:, None] - window)
            acc, l_i, m_i = attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos,
                                                cols, mask, True, HAS_SOFTCAP, HAS_ALIBI)
    else:
        for n in tl.range(lo, full, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _paged_kv_tile(KC, VC, seq_table, n, kv_len, kv_head, stride_kb, stride_ks, stride_kh,
                                   stride_vb, stride_vs, stride_vh, offs_n, offs_d,
                                   HEAD_DIM, BLOCK_D, KV_BLOCK, BLOCK_N, False, Q, KV_CAST, V_WORDS)
            acc, l_i, m_i = attend_tile(acc, l_i, m_i, q, kt, v, qk_scale, None, False)

        for n in tl.range(full, hi, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _paged_kv_tile(KC, VC, seq_table, n, kv_len, kv_head, stride_kb, stride_ks, stride_kh,
                                   stride_vb, stride_vs, stride_vh, offs_n, offs_d,
                                   HEAD_DIM, BLOCK_D, KV_BLOCK, BLOCK_N, True, Q, KV_CAST, V_WORDS)
            cols = n + offs_n
            mask = cols[None, :] < kv_len
            if CAUSAL:
                mask = mask & (cols[None, :] <= diag + q0 + qi[:, None])
            acc, l_i, m_i = attend_tile(acc, l_i, m_i, q, kt, v, qk_scale, mask, True)

    l_safe = tl.where(l_i > 0, l_i, 1.0)  # an empty split (context shorter than its start) has l = 0
    out = acc / l_safe[:, None]
    if HAS_KV_SCALE:
        out = out * tl.load(VScale + kv_head * stride_sc)  # split partials too: the reduce is linear in O
    if not SPLIT:
        tl.store(Out + tok[:, None] * stride_ot + head[:, None] * stride_oh + offs_d[None, :],
                 out.to(Out.dtype.element_ty), mask=io_mask)
    else:
        lse = tl.where(l_i > 0, m_i + tl.math.log2(l_safe), float("-inf"))  # log2 units
        po = PART_O + split64 * stride_pos + tok[:, None] * stride_pot + head[:, None] * stride_poh
        tl.store(po + offs_d[None, :], out, mask=io_mask)
        tl.store(PART_LSE + split64 * stride_pls + tok * stride_plt + head, lse, mask=row_ok)


@triton.jit
def split_reduce_kernel(
    PART_O, PART_LSE, Out, stride_pos, stride_pot, stride_poh, stride_pls, stride_plt, stride_ot, stride_oh,
    num_splits, SPLITS_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """O[t, h] = sum_s w_s * O_s[t, h] / sum_s w_s with w_s = 2^(lse_s - max_s lse_s)."""
    tok = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    offs_s = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, BLOCK_D)
    s_ok = offs_s < num_splits
    offs_s64 = offs_s.to(tl.int64)
    lse = tl.load(PART_LSE + offs_s64 * stride_pls + tok * stride_plt + head, mask=s_ok, other=float("-inf"))
    lse_max = tl.max(lse, 0)
    w = tl.math.exp2(lse - lse_max)
    po = PART_O + offs_s64[:, None] * stride_pos + tok * stride_pot + head * stride_poh + offs_d[None, :]
    d_ok = offs_d < HEAD_DIM
    parts = tl.load(po, mask=s_ok[:, None] & d_ok[None, :], other=0.0)
    out = tl.sum(parts * w[:, None], 0) / tl.sum(w, 0)
    tl.store(Out + tok * stride_ot + head * stride_oh + offs_d, out.to(Out.dtype.element_ty), mask=d_ok)


# ---- host side: the launch binding every kernel argument (the plan: paged_plan.py) ---------------
_TUNER = Tuner("paged_attn")
V_WORDS_ENV = "ATTNBENCH_TRITON_FP8_V_WORDS"


def reads_v_as_words(q: torch.Tensor, v_cache: torch.Tensor, v_words: bool | None = None) -> bool:
    """Whether the runner reads this V cache as int32 words: an fp8 cache (one byte per value, another
    type than q) with a contiguous head dim that is a multiple of 4, and v_words (None: V_WORDS_ENV)."""
    if v_words is None:
        v_words = os.environ.get(V_WORDS_ENV, "0") == "1"
    return (v_words and v_cache.dtype != q.dtype and v_cache.element_size() == 1
            and v_cache.shape[-1] % 4 == 0 and v_cache.stride(-1) == 1)


def paged_attention_runner(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    kv_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    max_q: int,
    max_kv: int,
    causal: bool = True,
    sm_scale: float | None = None,
    num_splits: int | None = None,
    out: torch.Tensor | None = None,
    workspace: tuple[torch.Tensor, torch.Tensor] | None = None,
    config: LaunchConfig | None = None,
    window: int | None = None,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
    k_scale: torch.Tensor | None = None,
    v_scale: torch.Tensor | None = None,
    v_words: bool | None = None,
) -> tuple[Callable[[], None], torch.Tensor, LaunchConfig, int]:
    """Tune (first call per shape class) and return (launch, out, config, splits used).

    `launch()` runs the attention (and the split reduce) with every argument bound in advance.
    num_splits: None picks from the SM count on a GPU (1 on a CPU). workspace: preallocated
    (partial O float32 (S, total_q, Hq, D), partial LSE float32 (S, total_q, Hq)) for S > 1.
    window / softcap / alibi_slopes (float32 (Hq,)): the patterns (module docstring); None = off.
    k_scale / v_scale: float32 (1,) (per tensor) or (Hkv,) (per KV head) scales of a quantised cache
    (k_cache / v_cache in torch.float8_e4m3fn; attnbench.kv_quant): the values are element * scale.
    Required when the cache's type differs from q's.
    v_words: read an fp8 V cache as int32 words (V_WORDS in _paged_kv_tile); None: V_WORDS_ENV ("1" on).
    """
    total_q, hq, d = q.shape
    _, kv_block, hkv, _ = k_cache.shape
    if hq % hkv:
        raise ValueError(f"query heads {hq} not a multiple of kv heads {hkv}")
    if d % 16 or d > 256:
        raise ValueError(f"head dim {d} must be a multiple of 16 and at most 256")
    batch = kv_lens.numel()
    group = hq // hkv
    kv_cast = k_cache.dtype != q.dtype
    stride_sc = kv_scale_stride(k_scale, v_scale, hkv, kv_cast)
    v_words = reads_v_as_words(q, v_cache, v_words)
    v_arg = v_cache
    if v_words:
        try:
            v_arg = v_cache.view(torch.int32)  # strides in words: the last dim is D / 4
        except RuntimeError:  # a view whose offset is not word-aligned: read it as bytes
            v_words = False
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    on_gpu = q.device.type == "cuda"
    out = torch.empty_like(q) if out is None else out
    candidates = paged_candidates(d, group, max_q, on_gpu, kv_block)
    span = window_span(max_kv, max_q, window)  # split-KV cuts only the keys a window can reach
    if num_splits is None:
        if on_gpu:
            sms = torch.cuda.get_device_properties(q.device).multi_processor_count
            q_tiles = triton.cdiv(max_q, candidates[0]["BLOCK_Q"])
            num_splits = choose_num_splits(batch * q_tiles * hkv, span, sms)
        else:
            num_splits = 1
    num_splits = max(1, min(num_splits, triton.cdiv(span, SPLIT_ALIGN)))
    split = num_splits > 1
    chunk = split_chunk(span, num_splits) if split else max(1, max_kv)
    if split:
        part_o, part_lse = workspace if workspace is not None else split_workspace(q, num_splits)
        p_strides = (*part_o.stride()[:3], *part_lse.stride()[:2])
    else:
        part_o, part_lse = out, out  # unused by the one-pass kernel
        p_strides = (0, 0, 0, 0, 0)

    def launch_args(cfg: LaunchConfig) -> tuple[tuple[int, int, int], tuple, dict]:
        """(grid, positional arguments, keyword arguments) of cfg's attention launch."""
        args = (q, k_cache, v_arg, out, block_tables, kv_lens, cu_seqlens_q, part_o, part_lse, sm_scale,
                -1 if window is None else window, 1.0 if softcap is None else float(softcap),
                out if alibi_slopes is None else alibi_slopes,
                out if k_scale is None else k_scale, out if v_scale is None else v_scale, stride_sc,
                q.stride(0), q.stride(1), out.stride(0), out.stride(1),
                k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
                v_arg.stride(0), v_arg.stride(1), v_arg.stride(2), block_tables.stride(0),
                *p_strides, chunk, num_splits)
        kwargs = dict(GROUP=group, GROUP_PAD=next_pow2(group), HEAD_DIM=d, BLOCK_D=next_pow2(d),
                      KV_BLOCK=kv_block, CAUSAL=causal, SPLIT=split, BLOCK_Q=cfg["BLOCK_Q"],
                      BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], num_warps=cfg.num_warps,
                      num_stages=cfg.num_stages, HAS_WINDOW=window is not None,
                      HAS_SOFTCAP=softcap is not None, HAS_ALIBI=alibi_slopes is not None,
                      KV_CAST=kv_cast, HAS_KV_SCALE=k_scale is not None, V_WORDS=v_words)
        return (batch, triton.cdiv(max_q, cfg["BLOCK_Q"]), hkv * num_splits), args, kwargs

    def bind(cfg: LaunchConfig) -> Callable[[], None]:
        grid, args, kwargs = launch_args(cfg)
        kernel = paged_attn_kernel[grid]
        if not split:
            return lambda: kernel(*args, **kwargs)
        reduce = split_reduce_kernel[(total_q, hq)]
        r_args = (part_o, part_lse, out, *p_strides, out.stride(0), out.stride(1), num_splits)
        r_kwargs = dict(SPLITS_PAD=max(2, next_pow2(num_splits)), HEAD_DIM=d, BLOCK_D=next_pow2(d),
                        num_warps=4 if d >= 128 else 2)

        def launch() -> None:
            kernel(*args, **kwargs)
            reduce(*r_args, **r_kwargs)

        return launch

    def warm(cfg: LaunchConfig) -> None:  # the attention kernel only: the reduce has one build
        grid, args, kwargs = launch_args(cfg)
        paged_attn_kernel.warmup(*args, grid=grid, **kwargs)

    _TUNER.last_origin = "given"  # a config passed in is not a pick
    if config is None:
        key = (d, kv_block, group, max_q == 1, causal, length_bucket(max_q), length_bucket(max_kv),
               num_splits, q.dtype, str(q.device), window is not None, softcap is not None,
               alibi_slopes is not None, str(k_cache.dtype), k_scale is not None, v_words)
        config = _TUNER.pick(key, candidates, lambda c: bind(c)(), on_gpu, warm=warm)
    return bind(config), out, config, num_splits


def paged_attention(*args, **kwargs) -> tuple[torch.Tensor, LaunchConfig, int]:
    """Attention of packed q against the paged cache. Returns (out, config used, splits used).

    Same arguments as paged_attention_runner; runs the attention once.
    """
    launch, out, config, splits = paged_attention_runner(*args, **kwargs)
    launch()
    return out, config, splits



def last_pick_origin() -> str:
    """Where the latest runner call's launch config came from (Tuner.origin's words, or "given")."""
    return _TUNER.last_origin

# Whether @triton.jit produced interpreter functions (TRITON_INTERPRET=1 at import); see load().
INTERPRETED = type(paged_attn_kernel).__name__ == "InterpretedFunction"
