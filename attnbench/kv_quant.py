"""A quantised KV cache's values: fp8 e4m3 elements with float32 scales, as vLLM stores them.

vLLM's kv_cache_dtype=fp8 (e4m3) keeps each cached K and V element as one float8 byte and a float32
scale beside the cache: one per tensor (K and V each) or one per KV head. The stored value stands for
element * scale. Here the scales are what a calibration would pick for the case's own data,
scale = amax / FP8_MAX over the tensor or over one KV head's (tokens x head_dim) slice, so the largest
element maps to e4m3's largest finite value (448) and nothing saturates.

Layouts: every K/V tensor here has its KV heads on the second-to-last axis, (tokens, Hkv, D) packed or
(blocks, block_size, Hkv, D) paged; a scale tensor is float32 of shape (1,) (per-tensor) or (Hkv,)
(per-head) and broadcasts over that axis (scale_view).
"""

from __future__ import annotations

import torch

FP8_MAX = 448.0  # largest finite float8_e4m3fn value
TORCH_KV_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn}


def scale_view(scale: torch.Tensor, ndim: int, head_axis: int = -2) -> torch.Tensor:
    """The (1,) or (Hkv,) scale shaped to broadcast over a tensor of ndim axes with heads at head_axis."""
    shape = [1] * ndim
    shape[head_axis] = scale.numel()
    return scale.reshape(shape)


def quantise(x: torch.Tensor, kv_dtype: str, kv_scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(x stored as kv_dtype, its float32 scale): x is (..., Hkv, D); the scale is (1,) or (Hkv,).

    x / scale is rounded to nearest by the cast; the clamp only guards the amax element against a
    division that lands a hair above FP8_MAX (a cast out of range would give NaN, e4m3fn has no inf).
    """
    if kv_dtype not in TORCH_KV_DTYPES:
        raise ValueError(f"kv_dtype {kv_dtype!r} is not a quantised type: {', '.join(TORCH_KV_DTYPES)}")
    wide = x.float()
    if kv_scale == "per-head":
        amax = wide.abs().transpose(0, -2).reshape(x.shape[-2], -1).amax(dim=1)  # (Hkv,)
    else:
        amax = wide.abs().amax().reshape(1)
    # an all-zero slice would give scale 0 and 0/0 = NaN; any positive scale stores its zeros exactly
    scale = (amax / FP8_MAX).clamp_min(torch.finfo(torch.float32).tiny).to(torch.float32)
    stored = (wide / scale_view(scale, x.ndim)).clamp(-FP8_MAX, FP8_MAX).to(TORCH_KV_DTYPES[kv_dtype])
    return stored, scale


def dequantise(stored: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype,
               head_axis: int = -2) -> torch.Tensor:
    """stored * scale in `dtype`: the product is formed in float64 for a float64 result (exact: 4 + 24
    significant bits) and in float32 otherwise, then rounded once to dtype."""
    wide = torch.float64 if dtype == torch.float64 else torch.float32
    s = scale_view(scale.to(device=stored.device, dtype=wide), stored.ndim, head_axis)
    return (stored.to(wide) * s).to(dtype)


def stale_values(kv_dtype: str, shape: tuple[int, ...], scale: torch.Tensor, gen: torch.Generator,
                 device: torch.device, stale_scale: float) -> torch.Tensor:
    """Stale slots of a quantised pool: finite values stale_scale times the live data's spread once
    dequantised (clamped to the type's range), the fp8 counterpart of attnbench.paged_pool.stale_pool."""
    t = torch.randn(shape, generator=gen, dtype=torch.float32, device=device) * stale_scale
    t = t / scale_view(scale.to(device), len(shape))
    return t.clamp(-FP8_MAX, FP8_MAX).to(TORCH_KV_DTYPES[kv_dtype])
