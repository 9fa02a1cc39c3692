"""triton-paged: attnbench's own paged attention in Triton (kernels/triton/paged_attn.py).

Decode and chunked prefill ("mixed") over the block-table cache; prefill (q_len == kv_len, the whole
prompt already in the cache) runs through the same kernel, correct but not tuned for long prompts.
An fp8 KV cache (kv_dtype fp8_e4m3, per-tensor or per-KV-head scales) is read as one byte per element
and dequantised in registers: the tiles are converted to Q's type, K's scale folds into the softmax
scale and V's into the output (one program owns one KV head, so a per-head scale is one number too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnbench.backends._triton_common import (
    common_limits,
    compile_info,
    device_info,
    fp8_kv_reason,
    kernel_cache_size,
    kernels_module,
    triton_available,
)
from attnbench.backends.base import Backend, Prepared, register
from attnbench.patterns import slopes_tensor

if TYPE_CHECKING:
    from attnbench.case import Case
    from attnbench.inputs import Inputs

MAX_BLOCK_SIZE = 256


@register
class TritonPaged(Backend):
    name = "triton-paged"
    family = "paged"
    impl = "triton"
    purpose = "paged attention in Triton: block-table KV cache, GQA-packed tiles, split-KV for long contexts"
    memory_model = "paged KV blocks gathered through the block table; split-KV adds O(splits * q * d) scratch"
    kv_inputs = ("paged",)
    devices = ("cuda", "cpu")
    patterns = frozenset({"window", "softcap", "alibi"})
    kv_dtypes = frozenset({"auto", "fp8_e4m3"})

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = super().available(device)
        return (ok, why) if not ok else triton_available(device)

    def supports(self, case: Case) -> tuple[bool, str]:
        if not case.paged:
            return False, "reads a paged KV cache; needs a case with a block_size"
        assert case.block_size is not None
        if case.block_size > MAX_BLOCK_SIZE:
            return False, f"block_size {case.block_size} not supported: 1..{MAX_BLOCK_SIZE}"
        fp8_why = fp8_kv_reason(case)
        if fp8_why:
            return False, fp8_why
        return common_limits(case)

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        import torch

        mod = kernels_module("paged_attn")
        paged = inputs.paged
        assert paged is not None
        q = inputs.q
        out = torch.empty_like(q)
        args = (q, paged.k_cache, paged.v_cache, paged.block_tables, paged.kv_lens, inputs.cu_seqlens_q,
                case.max_q, case.max_kv, case.causal, case.softmax_scale)
        splits = None if q.device.type == "cuda" else 1
        # Untimed: picks the split count, allocates its scratch, compiles, tunes the tile, binds the launch.
        slopes = slopes_tensor(case.num_q_heads, q.device) if case.alibi else None
        kernels_before = kernel_cache_size(mod.paged_attn_kernel)
        launch, _, config, splits = mod.paged_attention_runner(
            *args, num_splits=splits, out=out, window=case.window, softcap=case.softcap, alibi_slopes=slopes,
            k_scale=inputs.k_scale, v_scale=inputs.v_scale,
        )
        launch()

        def run():
            launch()
            return out

        variant = f"split-kv x{splits}" if splits > 1 else "one-pass"
        if case.kv_quantised:
            variant += f" kv-{case.kv_dtype}"
            if mod.reads_v_as_words(q, paged.v_cache):
                variant += " v-words"
        info = {"variant": f"{variant} {config.describe()}", "num_splits": splits,
                "tuned_by": mod.last_pick_origin()}
        info.update(device_info(q.device.type))
        info.update(compile_info(mod.paged_attn_kernel, kernels_before))
        return Prepared(run=run, info=info)
