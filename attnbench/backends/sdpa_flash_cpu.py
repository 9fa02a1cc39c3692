"""sdpa-flash-cpu: PyTorch's flash-style CPU kernel, aten::_scaled_dot_product_flash_attention_for_cpu.

Called directly (not through F.scaled_dot_product_attention's dispatcher), so the row always times
this kernel: it tiles queries and keys, keeps a running max and sum per query row (online softmax)
and never holds the N x N scores; GQA is native (fewer K/V heads than query heads). Inputs are padded
(B, H, L, D) views built in prepare. Equal lengths need no mask (is_causal for square causal
prefill); variable lengths and bottom-right causal (decode, chunked prefill) take an additive mask
in the query dtype (the kernel refuses boolean masks), built untimed.
"""

from __future__ import annotations

import torch

from attnbench.backends._padded import keep_mask, padded_qkv, uniform, unpad
from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import TORCH_DTYPES, Inputs
from attnbench.metrics import padding_waste

DTYPES = ("fp32", "bf16", "fp16")


def _op():
    """The kernel, or None where this torch build lacks it."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def additive_mask(case: Case, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, max_q, max_kv) in the query dtype: 0 where a query may attend a key, -inf elsewhere."""
    keep = keep_mask(case, torch.device("cpu"))
    return torch.zeros(keep.shape, dtype=dtype).masked_fill_(~keep, float("-inf"))


@register
class SdpaFlashCpu(Backend):
    name = "sdpa-flash-cpu"
    family = "flash"
    impl = "torch"
    purpose = "PyTorch's flash-style CPU attention kernel (tiled, online softmax)"
    memory_model = "Query x key tiles per thread, no N x N scores (O(N) working memory: the log-sum-exp)"
    kv_inputs = ("contiguous",)
    devices = ("cpu",)

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = super().available(device)
        if not ok:
            return ok, why
        if _op() is None:
            return False, f"torch {torch.__version__} lacks aten::_scaled_dot_product_flash_attention_for_cpu"
        return True, ""

    def supports(self, case: Case) -> tuple[bool, str]:
        if case.dtype not in DTYPES:
            return False, f"dtype {case.dtype}: allowed {', '.join(DTYPES)}"
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        op = _op()
        if op is None:
            raise Unsupported(self.available("cpu")[1])
        pq = padded_qkv(case, inputs)
        q, k, v = pq.q, pq.k, pq.v
        mask, is_causal = None, False
        if not uniform(case):
            mode = "padded-masked"
        elif not case.causal or case.phase == "decode":
            mode = "dense"  # a decode query sees its whole context: causal masks nothing
        elif case.max_q == case.max_kv:
            mode, is_causal = "dense-causal", True
        else:
            mode = "dense-causal-lower-right-mask"  # is_causal aligns top-left; the case is bottom-right
        if mode in ("padded-masked", "dense-causal-lower-right-mask"):
            mask = additive_mask(case, TORCH_DTYPES[case.dtype])
        scale = case.softmax_scale

        def run() -> torch.Tensor:
            return op(q, k, v, 0.0, is_causal, attn_mask=mask, scale=scale)[0]  # [1] is the log-sum-exp

        info = {"input_mode": mode, "padding_waste": padding_waste(case.kv_lens)}
        return Prepared(run=run, to_packed=lambda out: unpad(out, case.q_lens), info=info)
