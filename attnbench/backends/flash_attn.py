"""flash-attn: the flash-attn package, whichever generation is installed (4, 3 or 2).

One backend, two KV forms: contiguous K/V through flash_attn_func / flash_attn_varlen_func
(prefill, and decode or chunks against a contiguous context), and the paged pool through the
library's own block-table path (FA4/FA3 page_table, FA2 block_table), so a paged row measures
flash-attn's kernel reading pages, not a gather. The row records which library and version ran
(flash_attn_impl, flash_attn_version), the entry point and the KV path. Detection, the libraries'
limits and the argument mapping live in _flash_attn_api.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from attnbench.backends import _flash_attn_api as api
from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs


@register
class FlashAttn(Backend):
    name = "flash-attn"
    family = "flash"
    impl = "external"
    purpose = "flash-attn package (FA4 CuTe / FA3 / FA2): varlen prefill and its paged-KV path"
    memory_model = "Streaming tiles (O(N)); paged rows read the block pool through the page table"
    kv_inputs = ("contiguous", "paged")
    devices = ("cuda",)
    # Listed so the base check lets patterned cases through; supports() then asks the installed
    # entry point for each keyword (api.pattern_reason) and names the ones it lacks.
    patterns = frozenset({"window", "softcap", "alibi"})
    # fp8 KV is not wired: no flash-attn was at hand to verify which entry points take an fp8 cache with
    # a bf16/fp16 query and how their descale arguments are laid out (base.kv_dtype_reason says so).
    kv_dtype_note = "no fp8 KV call wired: not verified against an installed flash-attn"

    def available(self, device: str) -> tuple[bool, str]:
        # The library first: "not installed, here is how" tells more than "needs a GPU".
        lib, why = api.detect()
        if lib is None:
            return False, why
        ok, why = super().available(device)
        if not ok:
            return ok, why
        arch = api.gpu_arch()
        if arch is not None and arch < 80:
            return False, f"{lib.impl} {lib.version} needs an sm_80+ GPU; this one is sm_{arch}"
        return True, ""

    def supports(self, case: Case) -> tuple[bool, str]:
        lib, why = api.detect()
        if lib is None:
            return False, why
        if case.dtype not in api.DTYPES:
            return False, f"dtype {case.dtype}: flash-attn takes {', '.join(api.DTYPES)}"
        arch = api.gpu_arch()
        reason = api.head_dim_reason(lib, case.head_dim, arch) or api.pattern_reason(lib, case)
        if not reason and case.paged:
            reason = api.paged_reason(lib, case, arch)
        return (False, reason) if reason else (True, "")

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        ok, why = self.supports(case)
        if not ok:
            raise Unsupported(why)
        lib, _ = api.detect()
        assert lib is not None
        call = api.paged_call(lib, case, inputs) if case.paged else api.contiguous_call(lib, case, inputs)
        info: dict[str, Any] = {
            **lib.info(),
            "kv_path": "paged" if case.paged else "varlen",
            "fa_entry": call.entry,
            "input_mode": "batched-views" if len(call.out_shape) == 4 else "packed-varlen",
        }
        if case.paged:
            info["kv_layout_used"] = "NHD pages (num_blocks, block_size, Hkv, D), as given"
        if lib.generation == 4:
            # FA4 compiles a kernel per shape on its first call: do it here, untimed, and record it.
            t0 = time.perf_counter()
            call.run()
            if inputs.device.type == "cuda":
                torch.cuda.synchronize(inputs.device)
            info["compile_s"] = round(time.perf_counter() - t0, 3)
        total_q, hq, d = case.total_q, case.num_q_heads, case.head_dim
        return Prepared(run=call.run, to_packed=lambda out: out.reshape(total_q, hq, d), info=info)
