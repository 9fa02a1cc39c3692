"""FlashInfer (flashinfer-python) as installed here: import, version, JIT toolchain, limits, paths.

FlashInfer builds its kernels just in time: the first plan() of a (path, dtype, head dim, pattern)
generates CUDA sources, compiles them with nvcc through ninja and caches the module on disk under
$FLASHINFER_WORKSPACE_BASE/.cache/flashinfer/<version>/<archs>/cached_ops ($HOME when the variable is
unset, so ~/.cache/flashinfer by default: the user's cache directory, shared with other FlashInfer
users; <archs> is the GPUs' targets, "90a" on an H200).
Without nvcc or ninja only modules already in that cache (or a flashinfer-jit-cache wheel) load.

The limits below are those of flashinfer-python 0.7.2.post1, read from its source:
- dtypes fp16/bf16 (fp32 has no kernel); head dims 64/128/256 (DISPATCH_HEAD_DIM also has 512 for
  FA2, not claimed here);
- the CUDA-core decode kernel (BatchDecodeWithPagedKVCacheWrapper without tensor cores) dispatches
  the GQA group size over {1, 2, 3, 4, 6, 8, 16} (DISPATCH_GQA_GROUP_SIZE, csrc/batch_decode.cu);
- FA3 (backend="fa3") is the sm90 kernel family: Hopper only, head dims 64/128/256, no ALiBi
  (utils.is_fa3_backend_supported / is_fa3_prefill_head_dim_supported);
- ALiBi (pos_encoding_mode="ALIBI") adds slope_h * (j - i) with FlashInfer's own slopes
  (utils.get_alibi_slopes) and is applied before the soft-cap's tanh, where attnbench applies
  it after, so ALiBi with a soft-cap is not the same function and is refused.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

INSTALL_HINT = "pip install 'attnbench[flashinfer]' (flashinfer-python 0.7.x); see README"
WORKSPACE_ENV = "FLASHINFER_WORKSPACE_BASE"  # read once, when flashinfer.jit.env is imported
DTYPES = ("bf16", "fp16")
HEAD_DIMS = (64, 128, 256)
DECODE_GROUP_SIZES = (1, 2, 3, 4, 6, 8, 16)
FA3_ARCH_MAJOR = 9
MIN_ARCH = 80
WORKSPACE_BYTES = 128 * 1024 * 1024  # the float workspace FlashInfer's docs recommend (split-KV partials)


@dataclass(frozen=True)
class FlashInferLib:
    """The imported flashinfer package."""

    version: str
    module: Any = field(compare=False, repr=False)


def detect() -> tuple[FlashInferLib | None, str]:
    """The installed flashinfer, or None with the reason (install hint included). Cached: a failing
    import is not retried per case; reset() forgets it."""
    return _detect()


def reset() -> None:
    _detect.cache_clear()


@functools.cache
def _detect() -> tuple[FlashInferLib | None, str]:
    try:
        mod = importlib.import_module("flashinfer")
    except ImportError as err:
        missing = getattr(err, "name", None)
        if missing is None or missing == "flashinfer" or missing.startswith("flashinfer."):
            return None, f"flashinfer is not installed: {INSTALL_HINT}"
        return None, f"flashinfer failed to import ({missing} missing: {_short(err)}); {INSTALL_HINT}"
    except Exception as err:  # noqa: BLE001 - a broken install raises anything at import
        return None, f"flashinfer failed to import: {_short(err)}"
    for wrapper in ("BatchDecodeWithPagedKVCacheWrapper", "BatchPrefillWithPagedKVCacheWrapper",
                    "BatchPrefillWithRaggedKVCacheWrapper"):
        if not hasattr(mod, wrapper):
            return None, f"flashinfer {getattr(mod, '__version__', '?')} lacks {wrapper}"
    return FlashInferLib(str(getattr(mod, "__version__", "unknown")), mod), ""


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:200]


# ---- the JIT toolchain ---------------------------------------------------------------------------
def find_nvcc() -> str | None:
    """The nvcc FlashInfer's JIT will run, looked up as it does: FLASHINFER_NVCC, CUDA_HOME /
    CUDA_PATH, PATH, /usr/local/cuda."""
    explicit = os.environ.get("FLASHINFER_NVCC")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "nvcc").exists():
            return str(Path(home) / "bin" / "nvcc")
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.exists() else None


def find_ninja() -> str | None:
    return shutil.which("ninja")


def has_prebuilt_cache() -> bool:
    """A flashinfer-jit-cache wheel ships the modules compiled: no nvcc needed then."""
    return importlib.util.find_spec("flashinfer_jit_cache") is not None


def jit_dir(version: str | None, lib: FlashInferLib | None = None) -> Path:
    """Where FlashInfer keeps its compiled modules: the imported package's own
    flashinfer.jit.env.FLASHINFER_JIT_DIR when there is one. In 0.7.x that path has a folder of the
    target archs between the version and cached_ops ("90a" on an H200, from FlashInfer's
    CompilationContext), which only the package knows; without it, the path without that folder."""
    env = getattr(getattr(lib.module, "jit", None), "env", None) if lib is not None else None
    real = getattr(env, "FLASHINFER_JIT_DIR", None)
    if real is not None:
        return Path(real)
    base = Path(os.environ.get(WORKSPACE_ENV, str(Path.home())))
    return base / ".cache" / "flashinfer" / (version or "<version>") / "cached_ops"


def jit_reason() -> str:
    """Why FlashInfer cannot build a module here ("" when it can)."""
    if has_prebuilt_cache():
        return ""
    if find_nvcc() is None:
        return ("no nvcc for FlashInfer's JIT (set CUDA_HOME or put nvcc on PATH; "
                "or install flashinfer-jit-cache)")
    if find_ninja() is None:
        return "no ninja for FlashInfer's JIT (pip install ninja)"
    return ""


def status_line() -> str:
    """One line for `attnbench doctor` and the run manifest: version, importable, JIT toolchain."""
    try:
        version = importlib.metadata.version("flashinfer-python")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
    lib, why = detect()
    if lib is None:
        return f"{version} installed but not importable: {why}"
    nvcc, ninja = find_nvcc(), find_ninja()
    tools = f"nvcc {nvcc or 'missing'}, ninja {ninja or 'missing'}"
    prebuilt = ", prebuilt jit cache" if has_prebuilt_cache() else ""
    return f"{version} (JIT: {tools}{prebuilt}; cache {jit_dir(version, lib)})"


def built_modules(version: str, lib: FlashInferLib | None = None) -> set[str]:
    """Names of the compiled modules in the JIT cache (a listing before and after plan() shows what
    that plan had to compile): folders holding a built .so; FlashInfer's own `tmp` scratch folder
    (seen on an H200 beside the first module) is none."""
    root = jit_dir(version, lib)
    try:
        return {p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.so"))}
    except OSError:
        return set()


# ---- the GPU -------------------------------------------------------------------------------------
def gpu_arch() -> int | None:
    """Compute capability as 90 for sm_90, or None without a visible GPU."""
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return major * 10 + minor


# ---- what each path implements -------------------------------------------------------------------
def slopes_reason(num_q_heads: int, lib: FlashInferLib | None) -> str:
    """ALiBi runs only where FlashInfer's slopes equal attnbench's (attnbench.patterns)."""
    try:
        from attnbench.patterns import alibi_slopes
    except ImportError:
        return "no alibi here: attnbench.patterns (the reference's slopes) is missing"
    ours = torch.as_tensor(alibi_slopes(num_q_heads), dtype=torch.float64).flatten()
    theirs = flashinfer_slopes(num_q_heads, lib).to(torch.float64)
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=1e-6, atol=0.0):
        return f"alibi with {num_q_heads} heads: FlashInfer's slopes differ from attnbench's"
    return ""


def flashinfer_slopes(num_heads: int, lib: FlashInferLib | None) -> torch.Tensor:
    """FlashInfer's ALiBi slopes: its own function when importable, else its formula (the ALiBi
    paper's: 2^(-8k/n) for the largest power of two n <= heads, then every other slope of 2n)."""
    fn = getattr(getattr(lib.module, "utils", None), "get_alibi_slopes", None) if lib else None
    if fn is not None:
        return fn(num_heads).cpu()
    n = 2 ** math.floor(math.log2(num_heads))
    base = [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]
    extra = [2.0 ** (-4.0 * k / n) for k in range(1, 2 * (num_heads - n), 2)]
    return torch.tensor(base + extra, dtype=torch.float32)
