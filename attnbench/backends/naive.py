"""naive: eager attention that materialises the (heads, N_q, N_kv) score matrix, as textbooks write it.

Contiguous KV: padded K/V. Paged KV: the blocks are gathered into a padded K/V inside the timed
call first, as a framework without a paged kernel would have to. An fp8 KV cache is dequantised to
the dtype inside the timed call too (element * scale in float32, rounded to dtype), as a framework
without an fp8 attention kernel would have to.
"""

from __future__ import annotations

import torch

from attnbench.backends._padded import gather_paged, padded_qkv, pattern_bias, uniform, unpad
from attnbench.backends.base import Backend, Prepared, register
from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.kv_quant import dequantise
from attnbench.patterns import apply_softcap, needs_bias


@register
class Naive(Backend):
    name = "naive"
    family = "naive"
    impl = "torch"
    purpose = "Reference: matmul, softmax, matmul with the full score matrix in HBM"
    memory_model = "Materialised N x N scores per head (O(N^2) working memory)"
    kv_inputs = ("contiguous", "paged")
    devices = ("cpu", "cuda")
    patterns = frozenset({"window", "softcap", "alibi"})
    kv_dtypes = frozenset({"auto", "fp8_e4m3"})

    def supports(self, case: Case) -> tuple[bool, str]:
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        pq = padded_qkv(case, inputs)
        q = pq.q
        # Masks are built untimed; the additive -inf bias is applied inside the timed call.
        needs_mask = case.causal or not uniform(case) or case.paged or needs_bias(case)
        # Gathered paged K/V span whole blocks: the bias masks the tail of the last block too.
        nk_padded = None
        if case.paged:
            assert inputs.paged is not None, "a paged case's inputs hold its paged pool"
            nk_padded = inputs.paged.block_tables.shape[1] * inputs.paged.block_size
        bias = pattern_bias(case, q.device, nk_padded)
        group = case.gqa_ratio
        scale = case.softmax_scale
        softcap = case.softcap

        k_scale, v_scale = inputs.k_scale, inputs.v_scale

        def attend(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            if k_scale is not None and v_scale is not None:  # (B, Hkv, N, D): heads on axis 1
                k = dequantise(k, k_scale, q.dtype, head_axis=1)
                v = dequantise(v, v_scale, q.dtype, head_axis=1)
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            scores = apply_softcap(torch.matmul(q, k.transpose(-1, -2)).float() * scale, softcap)
            if needs_mask:
                scores = scores + bias
            probs = torch.softmax(scores, dim=-1).to(q.dtype)
            return torch.matmul(probs, v)

        if case.paged:
            run = lambda: attend(*gather_paged(inputs))
        else:
            run = lambda: attend(pq.k, pq.v)
        return Prepared(run=run, to_packed=lambda out: unpad(out, case.q_lens), info={"input_mode": "padded"})
