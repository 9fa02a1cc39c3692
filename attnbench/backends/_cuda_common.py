"""What the two CUDA backends share: availability, the stream, dtype codes (not a backend itself)."""

from __future__ import annotations

import torch

from attnbench import cuda_build, cuda_lib

DTYPES = ("fp16", "bf16")


def cuda_available(device: str) -> tuple[bool, str]:
    """Compiler present, and (on a CUDA device) an sm_80+ GPU."""
    ok, reason = cuda_build.toolchain_status()
    if not ok:
        return False, reason
    if device == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        if major < 8:
            return False, f"needs an sm_80+ GPU (cp.async, bf16 tensor cores); this one is sm_{major}{minor}"
    return True, ""


def current_stream() -> int:
    """torch's current stream as the integer the C ABI takes (a CUDA-graph capture sees our launches)."""
    return torch.cuda.current_stream().cuda_stream


def dtype_code(dtype: str) -> int:
    return cuda_lib.DTYPE_CODES[dtype]
