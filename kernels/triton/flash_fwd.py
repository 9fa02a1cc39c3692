"""FlashAttention-2 forward in Triton over packed variable-length sequences.

Layout (no padding): q (total_q, Hq, D), k/v (total_kv, Hkv, D), cu_seqlens_q / cu_seqlens_k int32
(B + 1). One program owns a BLOCK_M x D tile of queries of one query head of one sequence, keeps it on
chip, streams the sequence's K/V in BLOCK_N rows with an online softmax (the step shared with
paged_attn: online_softmax.py), and writes O and the log-sum-exp (natural log, float32, (Hq, total_q))
once.

How it gets its speed (ideas learned from Triton's fused-attention tutorial, written afresh here):
- exp2 with log2(e) folded into the softmax scale, and the row max taken before scaling so that
  `qk * scale - m` is one FMA per score;
- the key range is split into tiles that need no mask (every query row of the tile sees every key)
  and the few tiles on the causal diagonal or at the sequence end that do; the first loop carries no
  mask arithmetic at all;
- on Hopper (USE_TMA) K and V tiles arrive through tensor descriptors (TMA bulk copies, software
  pipelined num_stages deep) straight into the shared-memory layout wgmma reads; the descriptor is a
  2-D view (total_kv, Hkv * D) so a head is a column offset and the packed layout is read as is;
- causal grids start with the heaviest query tiles (last rows see the most keys) to shorten the tail.
Causal masks align bottom-right: query i of a sequence sees keys 0 .. kv_len - q_len + i.
Patterns (attnbench.patterns): a sliding window w keeps keys j >= p - w for the query at p = kv_len -
q_len + i; the key loop starts at the first tile the tile's first row can see, so tiles wholly left of
the window are never loaded (loop bounds, not masks), and tiles every row sees wholly run unmasked.
w is a runtime argument exempt from Triton's integer specialisation (do_not_specialize): a new window
size reuses the compiled kernel. Soft-cap (c * tanh(s / c), runtime c) and ALiBi (-slope_h |p - j|,
per-head slopes from a pointer) act in the score step; HAS_WINDOW / HAS_SOFTCAP / HAS_ALIBI are
constexprs, so a case without patterns runs the original code and each feature combination is one kernel.
GQA/MQA: query head h reads KV head h // (Hq // Hkv); the heads of a group are neighbours on the grid's
head axis, so their shared K/V tiles are mostly served from L2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import triton
import triton.language as tl

from .online_softmax import attend_pattern_tile, attend_tile
from .tuning import LaunchConfig, Tuner, length_bucket, next_pow2


@triton.jit
def _load_kv_tile(
    K, V, desc_k, desc_v, row0, n, kv_len, kv_head, stride_kt, stride_kh, stride_vt, stride_vh,
    offs_n, offs_d,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK_N: tl.constexpr, USE_TMA: tl.constexpr,
):
    """K^T (BLOCK_D x BLOCK_N) and V (BLOCK_N x BLOCK_D) for keys row0 + n .. row0 + n + BLOCK_N."""
    if USE_TMA:
        # Rows past this sequence belong to the next one (or are zero-filled past the tensor); their
        # scores are masked, and a zero probability times a finite V row adds nothing.
        kt = desc_k.load([row0 + n, kv_head * HEAD_DIM]).T
        v = desc_v.load([row0 + n, kv_head * HEAD_DIM])
    else:
        rows = (row0 + n + offs_n).to(tl.int64)
        k_ptrs = K + kv_head * stride_kh + rows[None, :] * stride_kt + offs_d[:, None]
        v_ptrs = V + kv_head * stride_vh + rows[:, None] * stride_vt + offs_d[None, :]
        if MASK_N or BLOCK_D != HEAD_DIM:
            n_ok = (n + offs_n) < kv_len
            d_ok = offs_d < HEAD_DIM
            kt = tl.load(k_ptrs, mask=n_ok[None, :] & d_ok[:, None], other=0.0)
            v = tl.load(v_ptrs, mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        else:
            kt = tl.load(k_ptrs)
            v = tl.load(v_ptrs)
    return kt, v


@triton.jit(do_not_specialize=["window"])
def flash_fwd_kernel(
    Q, K, V, Out, LSE, desc_k, desc_v, cu_q, cu_k, sm_scale, window, softcap, Slopes,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh, stride_lse,
    GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    CAUSAL: tl.constexpr, USE_TMA: tl.constexpr, STORE_LSE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, HAS_ALIBI: tl.constexpr,
):
    pid_m = tl.program_id(0)
    head = tl.program_id(1)
    seq = tl.program_id(2)
    if CAUSAL:
        pid_m = tl.num_programs(0) - 1 - pid_m  # heaviest tiles first
    q_start = tl.load(cu_q + seq)
    q_len = tl.load(cu_q + seq + 1) - q_start
    m0 = pid_m * BLOCK_M
    if m0 >= q_len:
        return
    k_start = tl.load(cu_k + seq)
    kv_len = tl.load(cu_k + seq + 1) - k_start
    kv_head = head // GROUP

    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < q_len
    d_ok = offs_d < HEAD_DIM
    q_rows = (q_start + offs_m).to(tl.int64)
    q = tl.load(Q + head * stride_qh + q_rows[:, None] * stride_qt + offs_d[None, :],
                mask=m_ok[:, None] & d_ok[None, :], other=0.0)

    qk_scale = sm_scale * 1.4426950408889634  # log2(e): exp(x) = exp2(x * log2(e))
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    # Keys [0, full_hi) are seen by every row of this tile; [full_hi, hi) need a mask.
    if CAUSAL:
        diag = kv_len - q_len  # row i sees keys <= diag + i
        hi = tl.minimum(kv_len, diag + m0 + BLOCK_M)
        full_hi = tl.maximum(tl.minimum(kv_len, diag + m0 + 1), 0)
    else:
        diag = kv_len
        hi = kv_len
        full_hi = kv_len
    full_hi = (full_hi // BLOCK_N) * BLOCK_N

    if HAS_WINDOW or HAS_SOFTCAP or HAS_ALIBI:
        qpos = (kv_len - q_len) + offs_m  # absolute positions of the tile's rows
        slope = 0.0
        if HAS_ALIBI:
            slope = tl.load(Slopes + head)
        lo = 0
        full_lo = 0
        if HAS_WINDOW:
            p_first = kv_len - q_len + m0
            p_last = kv_len - q_len + tl.minimum(m0 + BLOCK_M, q_len) - 1
            # Tiles before the first row's window start are never loaded.
            lo = (tl.maximum(p_first - window, 0) // BLOCK_N) * BLOCK_N
            # Keys every row sees (>= the last row's window start) need no mask from full_lo on.
            full_lo = tl.minimum(tl.cdiv(tl.maximum(p_last - window, 0), BLOCK_N) * BLOCK_N, full_hi)
            for n in tl.range(lo, full_lo, BLOCK_N):
                n = tl.multiple_of(n, BLOCK_N)
                kt, v = _load_kv_tile(K, V, desc_k, desc_v, k_start, n, kv_len, kv_head, stride_kt,
                                      stride_kh, stride_vt, stride_vh, offs_n, offs_d, HEAD_DIM, BLOCK_D,
                                      True, USE_TMA)
                cols = n + offs_n
                mask = (cols[None, :] < kv_len) & (cols[None, :] >= qpos[:, None] - window)
                if CAUSAL:
                    mask = mask & (cols[None, :] <= qpos[:, None])
                acc, l_i, m_i = attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos,
                                                    cols, mask, True, HAS_SOFTCAP, HAS_ALIBI)
        for n in tl.range(full_lo, full_hi, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _load_kv_tile(K, V, desc_k, desc_v, k_start, n, kv_len, kv_head, stride_kt, stride_kh,
                                  stride_vt, stride_vh, offs_n, offs_d, HEAD_DIM, BLOCK_D, False, USE_TMA)
            acc, l_i, m_i = attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos,
                                                n + offs_n, None, False, HAS_SOFTCAP, HAS_ALIBI)
        for n in tl.range(tl.maximum(full_hi, lo), hi, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _load_kv_tile(K, V, desc_k, desc_v, k_start, n, kv_len, kv_head, stride_kt, stride_kh,
                                  stride_vt, stride_vh, offs_n, offs_d, HEAD_DIM, BLOCK_D, True, USE_TMA)
            cols = n + offs_n
            mask = cols[None, :] < kv_len
            if CAUSAL:
                mask = mask & (cols[None, :] <= qpos[:, None])
            if HAS_WINDOW:
                mask = mask & (cols[None, :] >= qpos[:, None] - window)
            acc, l_i, m_i = attend_pattern_tile(acc, l_i, m_i, q, kt, v, sm_scale, softcap, slope, qpos, cols,
                                                mask, True, HAS_SOFTCAP, HAS_ALIBI)
    else:
        for n in tl.range(0, full_hi, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _load_kv_tile(K, V, desc_k, desc_v, k_start, n, kv_len, kv_head, stride_kt, stride_kh,
                                  stride_vt, stride_vh, offs_n, offs_d, HEAD_DIM, BLOCK_D, False, USE_TMA)
            acc, l_i, m_i = attend_tile(acc, l_i, m_i, q, kt, v, qk_scale, None, False)

        for n in tl.range(full_hi, hi, BLOCK_N):
            n = tl.multiple_of(n, BLOCK_N)
            kt, v = _load_kv_tile(K, V, desc_k, desc_v, k_start, n, kv_len, kv_head, stride_kt, stride_kh,
                                  stride_vt, stride_vh, offs_n, offs_d, HEAD_DIM, BLOCK_D, True, USE_TMA)
            cols = n + offs_n
            mask = cols[None, :] < kv_len
            if CAUSAL:
                mask = mask & (cols[None, :] <= diag + offs_m[:, None])
            acc, l_i, m_i = attend_tile(acc, l_i, m_i, q, kt, v, qk_scale, mask, True)

    acc = acc / l_i[:, None]
    o_ptrs = Out + head * stride_oh + q_rows[:, None] * stride_ot + offs_d[None, :]
    tl.store(o_ptrs, acc.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
    if STORE_LSE:
        lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # back to natural log
        tl.store(LSE + head * stride_lse + q_start + offs_m, lse, mask=m_ok)


# ---- launch configs ------------------------------------------------------------------------------
def flash_candidates(head_dim: int, causal: bool, max_q: int, on_gpu: bool) -> list[LaunchConfig]:
    """A small search space per head-dim class (Hopper-tuned; also valid on Ampere)."""
    block_d = next_pow2(head_dim)
    if not on_gpu:
        # Interpreter: small tiles keep CPU time down and exercise multi-tile paths on short sequences.
        return [LaunchConfig.of(4, 1, BLOCK_M=16, BLOCK_N=16)]
    if block_d <= 64:
        cands = [(128, 128, 8, 3), (128, 64, 4, 3), (128, 64, 4, 4), (64, 64, 4, 3)]
    elif block_d <= 128 and causal:
        # Causal: smaller tiles waste less on the diagonal; best on H100 (kernels/notes/triton.md, run 1).
        cands = [(64, 64, 4, 3), (128, 128, 8, 3), (64, 64, 4, 4), (128, 64, 8, 3), (64, 128, 4, 3)]
    elif block_d <= 128:
        cands = [(128, 128, 8, 3), (64, 64, 4, 3), (128, 128, 8, 2), (128, 64, 4, 3)]
    else:
        cands = [(128, 64, 8, 2), (128, 32, 8, 2), (64, 64, 4, 2), (64, 32, 4, 3)]
    out = []
    for bm, bn, w, s in cands:
        if bm > max(16, next_pow2(max_q)):  # tiny query lengths: no point in 128-row tiles
            bm = max(16, next_pow2(max_q))
        out.append(LaunchConfig.of(w, s, BLOCK_M=bm, BLOCK_N=bn))
    return list(dict.fromkeys(out))


_TUNER = Tuner("flash_fwd")


def tma_usable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """TMA needs Hopper+, a power-of-two head dim (the tile is the whole head) and 16-byte strides."""
    if q.device.type != "cuda" or torch.cuda.get_device_capability(q.device)[0] < 9:
        return False
    d = q.shape[-1]
    if d != next_pow2(d):
        return False
    for t in (k, v):
        if t.stride(-1) != 1 or t.stride(1) != d or (t.stride(0) * t.element_size()) % 16:
            return False
        if t.data_ptr() % 16:
            return False
    return True


def _descriptors(k: torch.Tensor, v: torch.Tensor, block_n: int):
    from triton.tools.tensor_descriptor import TensorDescriptor

    total, heads, d = k.shape
    descs = []
    for t in (k, v):
        descs.append(TensorDescriptor(t, [total, heads * d], [t.stride(0), 1], [block_n, d]))
    return descs


def flash_attn_varlen_runner(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_q: int,
    causal: bool,
    sm_scale: float | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
    use_tma: bool | None = None,
    config: LaunchConfig | None = None,
    store_lse: bool = True,
    window: int | None = None,
    softcap: float | None = None,
    alibi_slopes: torch.Tensor | None = None,
) -> tuple[Callable[[], None], torch.Tensor, torch.Tensor | None, LaunchConfig, bool]:
    """Tune (first call per shape class) and return (launch, out, lse, config, tma used).

    `launch()` runs the kernel with every argument bound in advance (descriptors, strides, grid), so
    a timed call spends as little host time as Triton's dispatch allows.
    max_q: the longest query length (sizes the grid). lse: float32 (Hq, total_q), natural log.
    window / softcap / alibi_slopes (float32 (Hq,)): the patterns (module docstring); None = off.
    """
    total_q, hq, d = q.shape
    hkv = k.shape[1]
    if hq % hkv:
        raise ValueError(f"query heads {hq} not a multiple of kv heads {hkv}")
    if d % 16 or d > 256:
        raise ValueError(f"head dim {d} must be a multiple of 16 and at most 256")
    batch = cu_seqlens_q.numel() - 1
    sm_scale = 1.0 / math.sqrt(d) if sm_scale is None else sm_scale
    out = torch.empty_like(q) if out is None else out
    if store_lse and lse is None:
        lse = torch.empty((hq, total_q), dtype=torch.float32, device=q.device)
    on_gpu = q.device.type == "cuda"
    if use_tma is None:
        use_tma = tma_usable(q, k, v)

    def launch_args(cfg: LaunchConfig) -> tuple[tuple[int, int, int], tuple, dict]:
        """(grid, positional arguments, keyword arguments) of cfg's launch."""
        bm, bn = cfg["BLOCK_M"], cfg["BLOCK_N"]
        desc_k, desc_v = _descriptors(k, v, bn) if use_tma else (k, v)
        args = (q, k, v, out, lse if store_lse else out, desc_k, desc_v, cu_seqlens_q, cu_seqlens_k, sm_scale,
                -1 if window is None else window, 1.0 if softcap is None else float(softcap),
                out if alibi_slopes is None else alibi_slopes,
                q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                out.stride(0), out.stride(1), lse.stride(0) if store_lse else 0)
        kwargs = dict(GROUP=hq // hkv, HEAD_DIM=d, BLOCK_D=next_pow2(d), CAUSAL=causal, USE_TMA=use_tma,
                      STORE_LSE=store_lse, BLOCK_M=bm, BLOCK_N=bn, num_warps=cfg.num_warps,
                      num_stages=cfg.num_stages, HAS_WINDOW=window is not None,
                      HAS_SOFTCAP=softcap is not None, HAS_ALIBI=alibi_slopes is not None)
        return (triton.cdiv(max_q, bm), hq, batch), args, kwargs

    def bind(cfg: LaunchConfig) -> Callable[[], None]:
        grid, args, kwargs = launch_args(cfg)
        kernel = flash_fwd_kernel[grid]
        return lambda: kernel(*args, **kwargs)

    def warm(cfg: LaunchConfig) -> None:
        grid, args, kwargs = launch_args(cfg)
        flash_fwd_kernel.warmup(*args, grid=grid, **kwargs)

    _TUNER.last_origin = "given"  # a config passed in is not a pick
    if config is None:
        key = (d, causal, use_tma, hq // hkv, length_bucket(max_q), q.dtype, str(q.device),
               window is not None, softcap is not None, alibi_slopes is not None)
        config = _TUNER.pick(key, flash_candidates(d, causal, max_q, on_gpu), lambda c: bind(c)(), on_gpu,
                             warm=warm)
    return bind(config), out, lse, config, use_tma


def flash_attn_varlen_fwd(*args, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None, LaunchConfig, bool]:
    """Attention of packed varlen q against packed k/v. Returns (out, lse, config used, tma used).

    Same arguments as flash_attn_varlen_runner; runs the kernel once.
    """
    launch, out, lse, config, use_tma = flash_attn_varlen_runner(*args, **kwargs)
    launch()
    return out, lse, config, use_tma



def last_pick_origin() -> str:
    """Where the latest runner call's launch config came from (Tuner.origin's words, or "given")."""
    return _TUNER.last_origin

# Whether @triton.jit produced interpreter functions (TRITON_INTERPRET=1 at import); see load().
INTERPRETED = type(flash_fwd_kernel).__name__ == "InterpretedFunction"
