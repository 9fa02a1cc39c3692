"""flex: FlexAttention (torch.nn.attention.flex_attention) on the packed sequences.

Variable lengths without padding: all sequences sit in one packed row and a document mask keeps
each query inside its own sequence (bottom-right causal within it). The kernel is compiled once per
shape in prepare; the compile time is excluded from timing and recorded as compile_s.
"""

from __future__ import annotations

import time

import torch

from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs

_compiled = None


def compiled_flex():
    global _compiled
    if _compiled is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def document_ids(lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(lengths), device=device), torch.tensor(lengths, device=device))


def positions(lengths: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.cat([torch.arange(n, device=device) for n in lengths])


@register
class Flex(Backend):
    name = "flex"
    family = "flash"
    impl = "torch"
    purpose = "FlexAttention: a compiled Triton flash kernel generated from a mask function"
    memory_model = "Tiled, scores stay on chip; a block mask skips empty tiles (O(N) working memory)"
    kv_inputs = ("contiguous",)
    devices = ("cuda",)

    def available(self, device: str) -> tuple[bool, str]:
        ok, why = super().available(device)
        if not ok:
            return ok, why
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
        except ImportError as err:
            return False, f"torch {torch.__version__} lacks FlexAttention ({err})"
        return True, ""

    def supports(self, case: Case) -> tuple[bool, str]:
        if case.dtype == "fp32":
            return False, "fp32 is not benchmarked for flex (allowed: bf16, fp16)"
        if case.head_dim % 16 or case.head_dim > 256:
            return False, f"head_dim {case.head_dim}: flex needs a multiple of 16 up to 256"
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        from torch.nn.attention.flex_attention import create_block_mask

        dev = inputs.device
        q_doc, k_doc = document_ids(case.q_lens, dev), document_ids(case.kv_lens, dev)
        # Shift each query's position by kv_len - q_len so causal aligns bottom-right.
        shift = torch.tensor([k - q for q, k in zip(case.q_lens, case.kv_lens)], device=dev)
        q_pos = positions(case.q_lens, dev) + shift[q_doc]
        k_pos = positions(case.kv_lens, dev)
        causal = case.causal

        def mask_mod(b, h, q_idx, kv_idx):
            same = q_doc[q_idx] == k_doc[kv_idx]
            if causal:
                return same & (k_pos[kv_idx] <= q_pos[q_idx])
            return same

        t0 = time.perf_counter()
        block_mask = create_block_mask(mask_mod, 1, None, case.total_q, case.total_kv, device=dev)
        q = inputs.q.transpose(0, 1).unsqueeze(0)  # (1, Hq, total_q, D)
        k = inputs.k.transpose(0, 1).unsqueeze(0)
        v = inputs.v.transpose(0, 1).unsqueeze(0)
        fn = compiled_flex()
        gqa = case.gqa_ratio > 1

        def run() -> torch.Tensor:
            return fn(q, k, v, block_mask=block_mask, scale=case.softmax_scale, enable_gqa=gqa)

        try:
            run()
            torch.cuda.synchronize(dev)
        except Exception as err:  # noqa: BLE001 - inductor errors come in many types
            raise Unsupported(f"FlexAttention failed to compile: {' '.join(str(err).split())[:300]}") from None
        compile_s = time.perf_counter() - t0
        return Prepared(
            run=run,
            to_packed=lambda out: out[0].transpose(0, 1),
            info={"compile_s": round(compile_s, 3), "input_mode": "packed-document-mask"},
        )
