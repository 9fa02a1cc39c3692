"""The public API for backends that live outside attnbench (see docs/plugins.md).

Everything a plugin needs, from one module whose names stay stable: the interface and its registry,
the case and its inputs, and the helpers the shipped backends use to adapt the harness's packed
inputs (padding, masks, paged-KV gathering) and to say why they cannot run here.

    from attnbench.plugin import Backend, Prepared, register, padded_qkv, unpad

Importing it imports torch (the helpers work on tensors); the read-only commands never import it.
"""

from __future__ import annotations

from attnbench.backends._cuda_common import cuda_available
from attnbench.backends._padded import (
    PaddedQKV,
    gather_paged,
    keep_mask,
    pad_packed,
    padded_qkv,
    uniform,
    unpad,
)
from attnbench.backends._triton_common import triton_available
from attnbench.backends.base import FAMILIES, IMPLS, Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs, PagedKV

__all__ = [
    "FAMILIES", "IMPLS", "Backend", "Case", "Inputs", "PagedKV", "PaddedQKV", "Prepared", "Unsupported",
    "cuda_available", "gather_paged", "keep_mask", "pad_packed", "padded_qkv", "register",
    "triton_available", "uniform", "unpad",
]
