"""Padded (batch, heads, max_len, head_dim) views of packed inputs, for the baselines that need them.

Padding happens in prepare (untimed); the padded baselines then compute over the padded sizes,
which is the cost they pay for variable lengths (rows record padding_waste).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.patterns import score_bias


def pad_packed(packed: torch.Tensor, lengths: tuple[int, ...], max_len: int) -> torch.Tensor:
    """(total, H, D) packed rows -> (B, H, max_len, D), zero padded."""
    batch, heads, dim = len(lengths), packed.shape[1], packed.shape[2]
    out = packed.new_zeros((batch, max_len, heads, dim))
    start = 0
    for i, n in enumerate(lengths):
        out[i, :n] = packed[start : start + n]
        start += n
    return out.transpose(1, 2).contiguous()


def unpad(padded: torch.Tensor, lengths: tuple[int, ...]) -> torch.Tensor:
    """(B, H, max_len, D) -> packed (total, H, D)."""
    return torch.cat([padded[i, :, :n].transpose(0, 1) for i, n in enumerate(lengths)], dim=0)


def uniform(case: Case) -> bool:
    return len(set(case.q_lens)) == 1 and len(set(case.kv_lens)) == 1


def keep_mask(case: Case, device: torch.device) -> torch.Tensor:
    """(B, 1, max_q, max_kv) bool: True where query i of a sequence may attend key j.

    Valid keys are j < kv_len; causal adds j <= kv_len - q_len + i (bottom-right), a window
    j >= kv_len - q_len + i - window (attnbench.patterns). Padded query
    rows keep key 0 so that softmax stays finite there; those rows are dropped by unpad.
    """
    mq, mk = case.max_q, case.max_kv
    qi = torch.arange(mq, device=device)[:, None]
    kj = torch.arange(mk, device=device)[None, :]
    masks = []
    for nq, nk in zip(case.q_lens, case.kv_lens, strict=True):
        m = kj < nk
        if case.causal:
            m = m & (kj <= nk - nq + qi)
        if case.window is not None:
            m = m & (kj >= nk - nq + qi - case.window)
        m = m | ((qi >= nq) & (kj == 0))
        masks.append(m)
    return torch.stack(masks)[:, None]


def pattern_bias(case: Case, device: torch.device, nk_padded: int | None = None) -> torch.Tensor:
    """(B, Hq or 1, max_q, nk_padded) float32 additive bias: each sequence's attnbench.patterns
    score_bias (mask and ALiBi) in its corner, -inf on padded keys; padded query rows keep key 0."""
    nk_padded = case.max_kv if nk_padded is None else nk_padded
    heads = case.num_q_heads if case.alibi else 1
    bias = torch.full((case.batch, heads, case.max_q, nk_padded), float("-inf"), device=device)
    for i, (nq, nk) in enumerate(zip(case.q_lens, case.kv_lens, strict=True)):
        bias[i, :, :nq, :nk] = score_bias(case, nq, nk, device)
        bias[i, :, nq:, 0] = 0.0
    return bias


@dataclass
class PaddedQKV:
    q: torch.Tensor  # (B, Hq, max_q, D)
    k: torch.Tensor  # (B, Hkv, max_kv, D)
    v: torch.Tensor


def padded_qkv(case: Case, inputs: Inputs) -> PaddedQKV:
    return PaddedQKV(
        q=pad_packed(inputs.q, case.q_lens, case.max_q),
        k=pad_packed(inputs.k, case.kv_lens, case.max_kv),
        v=pad_packed(inputs.v, case.kv_lens, case.max_kv),
    )


def gather_paged(inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather a paged cache into padded (B, Hkv, max_blocks * block_size, D) K and V."""
    paged = inputs.paged
    assert paged is not None
    k = paged.k_cache[paged.block_tables.long()]  # (B, max_blocks, bs, Hkv, D)
    v = paged.v_cache[paged.block_tables.long()]
    b, nb, bs, h, d = k.shape
    return k.view(b, nb * bs, h, d).transpose(1, 2), v.view(b, nb * bs, h, d).transpose(1, 2)
