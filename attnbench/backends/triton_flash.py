"""triton-flash: attnbench's own FlashAttention-2 forward in Triton (kernels/triton/flash_fwd.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnbench.backends._triton_common import (
    common_limits,
    compile_info,
    device_info,
    kernel_cache_size,
    kernels_module,
    triton_available,
)
from attnbench.backends.base import Backend, Prepared, register
from attnbench.patterns import slopes_tensor

if TYPE_CHECKING:
    from attnbench.case import Case
    from attnbench.inputs import Inputs


@register
class TritonFlash(Backend):
    name = "triton-flash"
    family = "flash"
    impl = "triton"
    purpose = "FlashAttention-2 forward in Triton: packed varlen, causal/full, GQA, TMA on Hopper"
    memory_model = "streaming: Q tile on chip, K/V tiles through shared memory; O and LSE written once"
    kv_inputs = ("contiguous",)
    devices = ("cuda", "cpu")
    patterns = frozenset({"window", "softcap", "alibi"})

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = super().available(device)
        return (ok, why) if not ok else triton_available(device)

    def supports(self, case: Case) -> tuple[bool, str]:
        if case.paged:
            return False, "reads contiguous K/V; paged caches go to triton-paged"
        return common_limits(case)

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        import torch

        mod = kernels_module("flash_fwd")
        q, k, v = inputs.q, inputs.k, inputs.v
        out = torch.empty_like(q)
        lse = torch.empty((case.num_q_heads, case.total_q), dtype=torch.float32, device=q.device)
        args = (q, k, v, inputs.cu_seqlens_q, inputs.cu_seqlens_k, case.max_q, case.causal,
                case.softmax_scale)
        # Untimed: compiles, on a GPU times the candidate tiles once per shape class, binds the launch.
        slopes = slopes_tensor(case.num_q_heads, q.device) if case.alibi else None
        kernels_before = kernel_cache_size(mod.flash_fwd_kernel)
        launch, _, _, config, use_tma = mod.flash_attn_varlen_runner(
            *args, out=out, lse=lse, window=case.window, softcap=case.softcap, alibi_slopes=slopes
        )
        launch()

        def run():
            launch()
            return out

        variant = f"fa2 {'tma' if use_tma else 'ptr'} {config.describe()}"
        info = {"variant": variant, "tuned_by": mod.last_pick_origin(), **device_info(q.device.type),
                **compile_info(mod.flash_fwd_kernel, kernels_before)}
        return Prepared(run=run, info=info)
