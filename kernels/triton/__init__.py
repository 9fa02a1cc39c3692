"""attnbench's Triton kernels: FlashAttention-2 forward over packed varlen sequences (flash_fwd) and
paged attention over a block-table KV cache for decode and chunked prefill (paged_attn); both take
their online-softmax step and pattern scores from online_softmax.

Free of attnbench imports. With TRITON_INTERPRET=1 they run on CPU tensors through Triton's
interpreter (slow, for correctness only). `load(name)` returns a kernel module compiled or interpreted
to match TRITON_INTERPRET as it is now: @triton.jit decides at import time, so a module imported
before the variable was set is re-imported (its helper modules first, or it would import their stale
@triton.jit functions).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

KERNEL_MODULES = ("flash_fwd", "paged_attn")
HELPER_MODULES = ("online_softmax",)  # @triton.jit functions the kernel modules import


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def load(name: str) -> ModuleType:
    if name not in KERNEL_MODULES:
        raise ValueError(f"unknown kernel module {name!r}; known: {', '.join(KERNEL_MODULES)}")
    want = interpreting()
    if want:
        from ._interp_compat import apply

        apply()
    for helper in HELPER_MODULES:
        _import_as(helper, want)
    return _import_as(name, want)


def _import_as(name: str, interpreted: bool) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{name}")
    if interpreted != module.INTERPRETED:
        module = importlib.reload(module)
    return module


if interpreting():
    from ._interp_compat import apply as _apply_interp_compat

    _apply_interp_compat()
