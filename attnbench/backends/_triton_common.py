"""What the two Triton backends share: availability (GPU or interpreter) and case limits."""

from __future__ import annotations

import importlib.util
import os
import sys

from attnbench.case import Case

MAX_HEAD_DIM = 256


def triton_available(device: str) -> tuple[bool, str]:
    if importlib.util.find_spec("triton") is None:
        return False, "triton is not installed (pip install triton)"
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if device == "cpu":
        if not interpret:
            return False, "on cpu the Triton kernels run only through the interpreter: " \
                "set TRITON_INTERPRET=1"
        if compiled_triton_loaded():
            return False, "TRITON_INTERPRET=1 was set after triton was imported: set it before starting"
        return True, ""
    if interpret:
        return False, "TRITON_INTERPRET=1 is set: the kernels would be interpreted, unset it for GPU runs"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device visible"
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        return False, f"needs compute capability 8.0+ (bf16 tensor cores), device has {major}.{minor}"
    return True, ""


def compiled_triton_loaded() -> bool:
    """triton.language imported without the interpreter: its @jit helpers cannot be interpreted later."""
    lang = sys.modules.get("triton.language")
    return lang is not None and type(lang.zeros).__name__ != "InterpretedFunction"


def common_limits(case: Case) -> tuple[bool, str]:
    if case.dtype == "fp32":
        return False, "fp32 inputs not supported: the kernels feed fp16/bf16 tensor cores (use bf16 or fp16)"
    if case.head_dim % 16 or case.head_dim > MAX_HEAD_DIM:
        return False, f"head_dim {case.head_dim} not supported: needs a multiple of 16, <= {MAX_HEAD_DIM}"
    return True, ""


# Triton's float8 e4m3 type (fp8e4nv) compiles for sm_89 and newer only (sm_80 has e5m2 and e4m3b15).
FP8_E4M3_MIN_CAPABILITY = (8, 9)


def fp8_kv_reason(case: Case) -> str:
    """Why a Triton kernel cannot read the case's fp8 KV cache on this machine's GPU ("" when it can,
    and on a CPU, where the interpreter runs it)."""
    if not case.kv_quantised or os.environ.get("TRITON_INTERPRET") == "1":
        return ""
    import torch

    if not torch.cuda.is_available():
        return ""
    cap = torch.cuda.get_device_capability()
    if cap < FP8_E4M3_MIN_CAPABILITY:
        need = ".".join(map(str, FP8_E4M3_MIN_CAPABILITY))
        return f"kv_dtype {case.kv_dtype}: Triton's e4m3 type needs compute capability {need}+, " \
               f"the GPU has {cap[0]}.{cap[1]}"
    return ""


def kernels_module(name: str):
    """The kernel module (flash_fwd | paged_attn), interpreted or compiled to match TRITON_INTERPRET."""
    from attnbench.paths import import_kernels

    import_kernels()
    triton_pkg = importlib.import_module("attnbench_kernels.triton")
    return triton_pkg.load(name)


def device_info(device_type: str) -> dict[str, object]:
    return {"interpreted": True} if device_type == "cpu" else {}


def kernel_cache_size(kernel: object) -> int | None:
    """Compiled variants a @triton.jit function holds over all devices; None when interpreted."""
    caches = getattr(kernel, "device_caches", None)
    if caches is None:
        return None
    return sum(len(entry[0]) for entry in caches.values())


def compile_info(kernel: object, before: int | None) -> dict[str, object]:
    """Row fields saying whether prepare's calls compiled a new kernel variant.

    The window size is a runtime argument exempt from specialisation, so a new window value should
    leave new_kernel False once the feature combination has compiled; the soft-cap / ALiBi / window
    switches are constexprs (one variant per combination).
    """
    after = kernel_cache_size(kernel)
    how: dict[str, object] = {"pattern_args": "window, softcap runtime; feature switches constexpr"}
    if before is None or after is None:
        return how
    return {"new_kernel": after > before, **how}
