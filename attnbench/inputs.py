"""The tensors of one case, built once and shared by every backend that runs it.

Layouts (the one convention every backend adapts from):
- q: (total_q, num_q_heads, head_dim), the sequences packed one after another (varlen, no padding).
- k, v: (total_kv, num_kv_heads, head_dim), packed the same way (contiguous KV).
- cu_seqlens_q / cu_seqlens_k: int32 (batch + 1,) cumulative offsets into the packed tensors.
- Paged KV (cases with a block size): k_cache, v_cache of shape
  (num_blocks, block_size, num_kv_heads, head_dim) ("NHD" blocks, the flash-attn / vLLM-flash
  layout), block_tables int32 (batch, max_blocks_per_seq) padded with 0, kv_lens int32 (batch,).
  The pool and tables come from the KV-cache manager (attnbench.kvcache) via build_paged_kv
  (attnbench.paged_pool).
- Quantised KV (kv_dtype fp8_e4m3): k, v and the paged k_cache, v_cache hold torch.float8_e4m3fn
  elements, quantised from the case's random bf16/fp16 K/V, and k_scale / v_scale their float32 scales
  ((1,) per tensor or (Hkv,) per KV head; attnbench.kv_quant); the stored value is element * scale.
  Q stays in dtype. The reference and the error baseline are computed from the dequantised cache, so
  a kernel reading the same fp8 bytes owes nothing to the quantisation and is held to the dtype's bar.
- The reference output: float32 (total_q, num_q_heads, head_dim), computed in float64 on a CPU
  and float32 (no TF32) on a GPU from the same (rounded) inputs, and the error baseline the
  correctness check judges against (attnbench.reference: per sequence and head, the error of a
  plain PyTorch implementation in the case's dtype).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from attnbench.case import Case
from attnbench.kv_quant import quantise
from attnbench.paged_pool import PagedKV, paged_pool_for_case
from attnbench.reference import ErrorBaseline, error_baseline, reference_attention

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass
class Inputs:
    case: Case
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    cu_seqlens_q: torch.Tensor
    cu_seqlens_k: torch.Tensor
    reference: torch.Tensor
    error_baseline: ErrorBaseline
    paged: PagedKV | None = None
    # float32 scales of a quantised K/V ((1,) or (Hkv,), on the device); None for kv_dtype auto
    k_scale: torch.Tensor | None = None
    v_scale: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.q.device

    def seq_slices(self) -> list[tuple[slice, slice]]:
        """Per sequence: its rows in the packed q and in the packed k/v."""
        cq = self.cu_seqlens_q.tolist()
        ck = self.cu_seqlens_k.tolist()
        return [(slice(cq[i], cq[i + 1]), slice(ck[i], ck[i + 1])) for i in range(self.case.batch)]

    def input_bytes(self) -> int:
        tensors = [self.q, self.k, self.v]
        if self.paged is not None:
            tensors += [self.paged.k_cache, self.paged.v_cache, self.paged.block_tables]
        tensors += [s for s in (self.k_scale, self.v_scale) if s is not None]
        return sum(t.numel() * t.element_size() for t in tensors)


def cumulative(lengths: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    return torch.tensor(offsets, dtype=torch.int32, device=device)


def random_qkv(case: Case, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fresh random Q/K/V for the case's seed (never zeros: they hide unwritten outputs).

    Drawn on the case's device with that device's generator: a 64 x 4096-token decode batch is
    half a billion numbers, seconds on one CPU core and milliseconds on a GPU, and a sweep draws
    them for every case. The values are fixed by (seed, device type), so a GPU run and a CPU run
    of one seed hold different numbers; each point is checked against a reference made from its
    own tensors, and timings do not depend on the values.
    """
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(case.seed * 1_000_003 + 17)
    dtype = TORCH_DTYPES[case.dtype]

    def make(rows: int, heads: int) -> torch.Tensor:
        t = torch.randn(rows, heads, case.head_dim, generator=gen, dtype=torch.float32, device=device)
        return t.to(dtype=dtype)

    q = make(case.total_q, case.num_q_heads)
    k = make(case.total_kv, case.num_kv_heads)
    v = make(case.total_kv, case.num_kv_heads)
    if case.prefix_len:
        # Shared prompt prefix: every sequence's first prefix_len keys/values equal sequence 0's.
        offsets = cumulative(case.kv_lens, "cpu").tolist()
        n = case.prefix_len
        for i in range(1, case.batch):
            k[offsets[i] : offsets[i] + n] = k[:n]
            v[offsets[i] : offsets[i] + n] = v[:n]
    return q, k, v


def build_paged_kv(case: Case, k: torch.Tensor, v: torch.Tensor, cu_k: list[int],
                   k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> PagedKV:
    """Scatter the packed K/V into a block pool through the KV-cache manager."""
    return paged_pool_for_case(case, k, v, cu_k, k_scale, v_scale)


def build_inputs(case: Case, device: torch.device | str, base: Inputs | None = None) -> Inputs:
    """Inputs for a case. `base` (the same case without paging) lends its tensors and reference."""
    if base is not None and base.case == case.without_paging():
        q, k, v, ref, errs = base.q, base.k, base.v, base.reference, base.error_baseline
        cu_q, cu_k = base.cu_seqlens_q, base.cu_seqlens_k
        k_scale, v_scale = base.k_scale, base.v_scale
    else:
        q, k, v = random_qkv(case, device)
        k_scale = v_scale = None
        if case.kv_quantised:
            assert case.kv_scale is not None
            k, k_scale = quantise(k, case.kv_dtype, case.kv_scale)
            v, v_scale = quantise(v, case.kv_dtype, case.kv_scale)
        cu_q = cumulative(case.q_lens, device)
        cu_k = cumulative(case.kv_lens, device)
        ref = reference_attention(case, q, k, v, cu_q.tolist(), cu_k.tolist(), k_scale, v_scale)
        errs = error_baseline(case, q, k, v, cu_q, cu_k, ref, k_scale, v_scale)
    paged = build_paged_kv(case, k, v, cu_k.tolist(), k_scale, v_scale) if case.paged else None
    return Inputs(case=case, q=q, k=k, v=v, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, reference=ref,
                  error_baseline=errs, paged=paged, k_scale=k_scale, v_scale=v_scale)


def clone_inputs(inputs: Inputs) -> Inputs:
    """The same values at other device addresses, sharing the reference and its error baseline.

    Timing rotates over such copies (attnbench.point.input_copies): a launch-bound kernel's time
    depends by a few percent on where its inputs lie. Cloning instead of building again keeps the
    values (build_inputs with the case's seed would draw the same numbers anyway) and skips a
    reference per copy, the cost of which grows with the case.
    """
    paged = inputs.paged
    if paged is not None:
        paged = replace(paged, k_cache=paged.k_cache.clone(), v_cache=paged.v_cache.clone(),
                        block_tables=paged.block_tables.clone(), kv_lens=paged.kv_lens.clone())
    return replace(
        inputs, q=inputs.q.clone(), k=inputs.k.clone(), v=inputs.v.clone(),
        cu_seqlens_q=inputs.cu_seqlens_q.clone(), cu_seqlens_k=inputs.cu_seqlens_k.clone(), paged=paged,
        k_scale=None if inputs.k_scale is None else inputs.k_scale.clone(),
        v_scale=None if inputs.v_scale is None else inputs.v_scale.clone(),
    )

