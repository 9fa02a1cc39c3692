"""The host-side plan of a paged-attention launch (kernels/triton/paged_attn.py): how many KV splits,
how long each split's chunk is, which tile configurations the tuner tries, and the checks and buffers
the launch needs (the fp8 scales' stride, the split-K workspace).

Plain Python over shapes and tensors: no @triton.jit function, so nothing here depends on
TRITON_INTERPRET and the kernels package never has to re-import it. The split count follows
FlashInfer/FA2-style reasoning: fill the machine's resident-program slots in one wave, never cut a
context into chunks so short that the reduce step dominates.
"""

from __future__ import annotations

import torch
import triton

from .tuning import LaunchConfig, next_pow2

MIN_SPLIT_TOKENS = 512  # a split streams at least this many keys, else the reduce step is not worth it
SPLIT_ALIGN = 128  # chunk lengths are multiples of the largest BLOCK_N


def choose_num_splits(programs: int, max_kv: int, num_sms: int, programs_per_sm: int = 2) -> int:
    """KV splits so that programs * splits fills the resident slots (num_sms * programs_per_sm) once.

    No split once the unsplit grid already fills the slots; otherwise the largest split count that
    still fits one wave (a second, partial wave would cost a whole extra wave of time), capped so
    each split streams at least MIN_SPLIT_TOKENS keys.
    """
    slots = num_sms * programs_per_sm
    if programs >= slots:
        return 1
    splits = max(1, slots // programs)
    splits = min(splits, max(1, max_kv // MIN_SPLIT_TOKENS))
    chunk = split_chunk(max_kv, splits)
    return triton.cdiv(max_kv, chunk)


def window_span(max_kv: int, max_q: int, window: int | None) -> int:
    """Keys one query tile's programs must cover: the whole context, or with a window at most the
    window plus the tile's rows plus one tile of alignment (what split-KV cuts into chunks)."""
    if window is None:
        return max_kv
    return min(max_kv, window + max_q + SPLIT_ALIGN)


def split_chunk(max_kv: int, splits: int) -> int:
    return triton.cdiv(triton.cdiv(max_kv, splits), SPLIT_ALIGN) * SPLIT_ALIGN


def paged_candidates(
    head_dim: int, group: int, max_q: int, on_gpu: bool, kv_block: int = 16
) -> list[LaunchConfig]:
    group_pad = next_pow2(group)
    if max_q == 1:
        block_q = 1
    else:
        block_q = max(1, min(next_pow2(max_q), (64 if on_gpu else 16) // group_pad))

    def cfg(bn: int, w: int, s: int) -> LaunchConfig:
        return LaunchConfig.of(w, s, BLOCK_Q=block_q, BLOCK_M=max(16, block_q * group_pad), BLOCK_N=bn)

    if not on_gpu:
        return [cfg(16, 4, 1)]
    if next_pow2(head_dim) <= 128:
        cands = [cfg(64, 4, 3), cfg(64, 4, 4), cfg(128, 4, 3), cfg(32, 4, 4)]
    else:
        cands = [cfg(32, 4, 3), cfg(64, 4, 2), cfg(64, 8, 3), cfg(32, 4, 4)]
    if 16 <= kv_block <= 64 and kv_block == next_pow2(kv_block):
        # One block per tile: a single table read per tile, at the price of shorter tiles.
        cands.append(cfg(kv_block, 4, 6 if kv_block <= 32 else 4))
    return list(dict.fromkeys(cands))



def kv_scale_stride(k_scale: torch.Tensor | None, v_scale: torch.Tensor | None, hkv: int,
                    kv_cast: bool) -> int:
    """The scales' stride per KV head (0: one per tensor, 1: one per head); ValueError for scales that
    do not fit the cache, or a cache of another type than q without them."""
    if k_scale is None and v_scale is None:
        if kv_cast:
            raise ValueError("a KV cache of another type than q (fp8) needs k_scale and v_scale")
        return 0
    if k_scale is None or v_scale is None:
        raise ValueError("give both k_scale and v_scale, or neither")
    for name, t in (("k_scale", k_scale), ("v_scale", v_scale)):
        if t.dtype != torch.float32 or t.numel() not in (1, hkv) or not t.is_contiguous():
            raise ValueError(f"{name} must be a contiguous float32 tensor of 1 or {hkv} (KV heads) elements, "
                             f"got {t.dtype} {tuple(t.shape)}")
    if k_scale.numel() != v_scale.numel():
        raise ValueError("k_scale and v_scale must have the same granularity (per tensor or per head)")
    return 0 if k_scale.numel() == 1 else 1


def split_workspace(q: torch.Tensor, num_splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    total_q, hq, d = q.shape
    part_o = torch.empty((num_splits, total_q, hq, d), dtype=torch.float32, device=q.device)
    part_lse = torch.empty((num_splits, total_q, hq), dtype=torch.float32, device=q.device)
    return part_o, part_lse

