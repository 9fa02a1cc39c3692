"""flashinfer: FlashInfer's paged and ragged attention (flashinfer-python), the serving engines' kernels.

One library, three kernel choices that a serving engine makes and that the study compares, each a
registered name so that a sweep measures all of them side by side (as sdpa-flash / sdpa-efficient
are names for PyTorch's choices):
- `flashinfer`: the FA2 kernels. Paged decode through BatchDecodeWithPagedKVCacheWrapper on tensor
  cores (decode-fa2-tc), paged prefill and chunked prefill through BatchPrefillWithPagedKVCacheWrapper
  (prefill-paged), contiguous varlen prefill through BatchPrefillWithRaggedKVCacheWrapper
  (prefill-ragged).
- `flashinfer-notc`: paged decode on FlashInfer's CUDA-core decode kernel (decode-fa2); decode only.
- `flashinfer-fa3`: the sm90 FA3 kernels (backend="fa3") for the same three paths; Hopper only.
Each row records fi_path, fi_backend (fa2 | fa3), fi_version (flashinfer.__version__) and the JIT:
compile_s (plan() plus the first run(), which compile a module on its first use), fi_jit_built (the
modules that prepare had to compile) and fi_jit_dir. Calls and page metadata: _flashinfer_calls.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch

from attnbench.backends import _flashinfer_api as api
from attnbench.backends import _flashinfer_calls as calls
from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs


@register
class FlashInfer(Backend):
    name = "flashinfer"
    family = "paged"
    impl = "external"
    purpose = "FlashInfer FA2 kernels: paged decode on tensor cores, paged/chunked prefill, ragged prefill"
    memory_model = "paged KV pages read through a CSR page table (indptr, indices, last-page lengths); O(N)"
    kv_inputs: ClassVar[tuple[str, ...]] = ("contiguous", "paged")
    devices = ("cuda",)
    patterns = frozenset({"window", "softcap", "alibi"})
    # fp8 KV is not wired: its plan/run arguments for an fp8 cache were not verified against an installed
    # FlashInfer (base.kv_dtype_reason puts this in the skip reason).
    kv_dtype_note = "no fp8 KV call wired: not verified against an installed flashinfer"
    # Each process pays the import (about 2 s on an H200) and loads its JIT modules from the disk
    # cache; with --devices the worker that has paid it takes the FlashInfer points.
    warmup_key = "flashinfer"
    warmup_s = 2.0
    # fa2-tc | fa2-notc | fa3: which FlashInfer kernels this name runs
    kernels: ClassVar[str] = "fa2-tc"

    def available(self, device: str) -> tuple[bool, str]:
        lib, why = api.detect()
        if lib is None:
            return False, why
        ok, why = super().available(device)
        if not ok:
            return ok, why
        arch = api.gpu_arch()
        if arch is not None and arch < api.MIN_ARCH:
            return False, f"flashinfer {lib.version} needs an sm_{api.MIN_ARCH}+ GPU; this one is sm_{arch}"
        if self.kernels == "fa3" and arch is not None and arch // 10 != api.FA3_ARCH_MAJOR:
            return False, f"FlashInfer's FA3 kernels are sm90 (Hopper) only; this GPU is sm_{arch}"
        jit = api.jit_reason()
        return (False, jit) if jit else (True, "")

    def path(self, case: Case) -> str:
        """The FlashInfer path this name takes for a case (fi_path in the row)."""
        if not case.paged:
            return calls.PREFILL_RAGGED
        if case.phase == "decode" and case.max_q == 1:
            return {"fa2-tc": calls.DECODE_TC, "fa2-notc": calls.DECODE_CUDA_CORE,
                    "fa3": calls.DECODE_FA3}[self.kernels]
        return calls.PREFILL_PAGED

    def supports(self, case: Case) -> tuple[bool, str]:
        lib, why = api.detect()
        if lib is None:
            return False, why
        if case.dtype not in api.DTYPES:
            return False, f"dtype {case.dtype}: FlashInfer takes {', '.join(api.DTYPES)}"
        if case.head_dim not in api.HEAD_DIMS:
            return False, f"head_dim {case.head_dim}: allowed {', '.join(map(str, api.HEAD_DIMS))}"
        path = self.path(case)
        if self.kernels == "fa2-notc":
            if path != calls.DECODE_CUDA_CORE:
                return False, "decode only (one query token per sequence over a paged KV cache)"
            if case.gqa_ratio not in api.DECODE_GROUP_SIZES:
                return False, (f"GQA group {case.gqa_ratio}: the CUDA-core decode kernel takes "
                               f"{', '.join(map(str, api.DECODE_GROUP_SIZES))}")
        if self.kernels == "fa3":
            arch = api.gpu_arch()
            if arch is not None and arch // 10 != api.FA3_ARCH_MAJOR:
                return False, f"FlashInfer's FA3 kernels are sm90 (Hopper) only; this GPU is sm_{arch}"
        if case.alibi:
            if not case.causal and case.max_q > 1:
                # FlashInfer's bias is slope * (j - i), signed (variants.cuh); attnbench's is
                # -slope * |p - j|: they differ on keys right of the query, which only a
                # non-causal query before the last position sees.
                return False, ("alibi without causal masking: FlashInfer's bias is slope * (j - i), "
                               "attnbench's -slope * |i - j| (keys right of the query differ)")
            if case.softcap is not None:
                return False, ("alibi with softcap: FlashInfer adds the ALiBi bias before the soft-cap's "
                               "tanh, attnbench after it")
            reason = api.slopes_reason(case.num_q_heads, lib)
            if reason:
                return False, reason
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        ok, why = self.supports(case)
        if not ok:
            raise Unsupported(why)
        lib, _ = api.detect()
        assert lib is not None
        path = self.path(case)
        backend = "fa3" if self.kernels == "fa3" else "fa2"
        before = api.built_modules(lib.version, lib)
        t0 = time.perf_counter()
        planned = calls.plan_for(lib, case, inputs, path, backend)
        t_plan = time.perf_counter() - t0
        # The first run() loads (and with some versions compiles) the kernel: untimed, recorded.
        planned.run()
        if inputs.device.type == "cuda":
            torch.cuda.synchronize(inputs.device)
        compile_s = time.perf_counter() - t0
        info: dict[str, Any] = {
            "fi_version": lib.version,
            "fi_path": planned.path,
            "fi_backend": planned.backend,
            "variant": _variant(planned.path, planned.backend),
            "compile_s": round(compile_s, 3),
            "fi_plan_s": round(t_plan, 3),
            "fi_jit_built": sorted(api.built_modules(lib.version, lib) - before),
            "fi_jit_dir": str(api.jit_dir(lib.version, lib)),
        }
        if case.paged:
            info.update(kv_layout_used=calls.KV_LAYOUT_USED, fi_pages=planned.pages)
        return Prepared(run=planned.run, info=info)


def _variant(path: str, backend: str) -> str:
    """The row's variant: decode paths name their kernels already, prefill paths add fa2 / fa3."""
    return path if path.startswith("decode") else f"{path}-{backend}"


@register
class FlashInferNoTensorCores(FlashInfer):
    name = "flashinfer-notc"
    purpose = "FlashInfer paged decode on its CUDA-core decode kernel (no tensor cores)"
    kv_inputs = ("paged",)
    kernels = "fa2-notc"


@register
class FlashInferFA3(FlashInfer):
    name = "flashinfer-fa3"
    purpose = "FlashInfer's sm90 FA3 kernels: paged decode, paged/chunked prefill, ragged prefill"
    patterns = frozenset({"window", "softcap"})  # FA3 has no ALiBi (utils.is_fa3_backend_supported)
    kernels = "fa3"
