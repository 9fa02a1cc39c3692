"""Shared adapter for torch's scaled_dot_product_attention pinned to one SDPA backend.

Inputs are padded (B, H, L, D) views built in prepare. Equal lengths need no mask: causal prefill
uses is_causal, causal chunked prefill the lower-right causal bias, decode nothing. Variable
lengths need a boolean mask, which only the math, efficient and cuDNN kernels take.
A window or ALiBi goes in as an additive float bias (attnbench.patterns), which only the math
path is declared to take (SdpaMath.patterns); the fused kernels keep patterns empty and are skipped.
GQA uses enable_gqa; if the pinned kernel refuses it, K/V heads are repeated in prepare (recorded).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import torch
import torch.nn.functional as F

from attnbench.backends._padded import keep_mask, padded_qkv, pattern_bias, uniform, unpad
from attnbench.backends.base import Backend, Prepared, Unsupported
from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.metrics import padding_waste
from attnbench.patterns import needs_bias


class SdpaBackend(Backend):
    family = "flash"
    impl = "torch"
    kv_inputs = ("contiguous",)
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    sdpa_backend: str  # name in torch.nn.attention.SDPBackend
    takes_mask: bool = True
    dtypes: tuple[str, ...] = ("bf16", "fp16")

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = super().available(device)
        if not ok:
            return ok, why
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: F401
        except ImportError as err:
            return False, f"torch {torch.__version__} lacks torch.nn.attention ({err})"
        return True, ""

    def supports(self, case: Case) -> tuple[bool, str]:
        if case.dtype not in self.dtypes:
            return (
                False,
                f"dtype {case.dtype} not supported by SDPA {self.sdpa_backend}; "
                f"allowed: {', '.join(self.dtypes)}",
            )
        if not uniform(case) and not self.takes_mask:
            return False, (
                f"variable lengths need a mask, which SDPA {self.sdpa_backend} does not take "
                "(padding without a mask would be wrong)"
            )
        return True, ""

    def _mode(self, case: Case):
        """(is_causal, attn_mask or bias factory, label) for the case."""
        if needs_bias(case):  # a window or ALiBi: an additive float bias (mask and slopes)
            return False, lambda device: pattern_bias(case, device), "padded-pattern-bias"
        if uniform(case):
            if not case.causal or case.phase == "decode":
                return False, None, "dense"
            if case.max_q == case.max_kv:
                return True, None, "dense-causal"
            from torch.nn.attention.bias import causal_lower_right

            return (
                False,
                lambda device: causal_lower_right(case.max_q, case.max_kv),
                "dense-causal-lower-right",
            )
        return False, lambda device: keep_mask(case, device), "padded-masked"

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        pq = padded_qkv(case, inputs)
        is_causal, mask_factory, mode = self._mode(case)
        mask = mask_factory(inputs.device) if mask_factory is not None else None
        # SDPA takes a float mask in the query's dtype. A CausalBias (a Tensor subclass that holds no
        # mask) is left alone: it reports itself floating point, and on torch 2.11 its .to() copy lost
        # seq_len_q (AttributeError on the H200 study's chunked-prefill rows).
        if type(mask) is torch.Tensor and mask.is_floating_point():
            mask = mask.to(inputs.q.dtype)
        backend = getattr(SDPBackend, self.sdpa_backend)
        q, k, v = pq.q, pq.k, pq.v
        info = {"input_mode": mode, "padding_waste": padding_waste(case.kv_lens)}

        def call(k_: torch.Tensor, v_: torch.Tensor, gqa: bool) -> torch.Tensor:
            # A refused kernel raises below; its "kernel not used because" warnings add nothing.
            with sdpa_kernel([backend]), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return F.scaled_dot_product_attention(
                    q, k_, v_, attn_mask=mask, is_causal=is_causal, scale=case.softmax_scale, enable_gqa=gqa
                )

        gqa = case.gqa_ratio > 1
        try:
            call(k, v, gqa)
        except RuntimeError as err:
            if not gqa:
                raise Unsupported(_first_line(err)) from None
            k = k.repeat_interleave(case.gqa_ratio, dim=1)
            v = v.repeat_interleave(case.gqa_ratio, dim=1)
            try:
                call(k, v, False)
            except RuntimeError as err2:
                raise Unsupported(_first_line(err2)) from None
            gqa = False
            info["gqa"] = "kv heads repeated in prepare (kernel refused enable_gqa)"
        return Prepared(run=lambda: call(k, v, gqa), to_packed=lambda out: unpad(out, case.q_lens), info=info)


def _first_line(err: Exception) -> str:
    text = " ".join(str(err).split())
    return f"SDPA refused the case: {text[:300]}"
