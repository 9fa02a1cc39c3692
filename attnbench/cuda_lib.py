"""The CUDA kernels' library, loaded with ctypes: thin wrappers over the C ABI of kernels/cuda/api.h.

attnbench.cuda_build builds the library (cached, once per source tree, compiler and architecture);
this module loads it once per process and per architecture, checks its ABI version, binds every C
function's argument types and turns a non-zero return code into KernelError with the kernel's
own message.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from attnbench import cuda_build
from attnbench.cuda_build import ABI_VERSION, BuildError


class KernelError(RuntimeError):
    """A launch function returned a non-zero code (the message comes from the library)."""


_P, _I, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
# Argument types of the C functions in kernels/cuda/api.h, in order (tests/test_abi_signatures.py
# parses the header and compares).
# Annotated literals: the type checker joins the classes of a bare list of them to `object`.
_Arg = type[ctypes.c_void_p | ctypes.c_int | ctypes.c_float]
PAGED_DECODE_ARGTYPES: list[_Arg] = [
    *[_P] * 6, *[_I] * 7, _F, _I, _F, _P, _I, _P, _P, _I,  # ... max_partitions
    _I, _P, _P, _I, _P,  # kv_dtype, k_scale, v_scale, kv_scales, stream
]
BLOCKS_PER_SM_ARGTYPES: list[_Arg] = [_I, _I, _I, _I]
TC_BLOCKS_PER_SM_ARGTYPES: list[_Arg] = [_I, _I, _I]
PAGED_IMPLS = ("tc", "simt")  # tensor-core dot products | FP32 CUDA-core dot products (the first kernel)
FLASH_FWD_ARGTYPES: list[_Arg] = [*[_P] * 6, *[_I] * 7, _F, _I, _F, _P, _I, _P]


class CudaLib:
    """The loaded library: thin wrappers over the C functions that raise KernelError on failure."""

    def __init__(self, path: Path):
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.attnbench_abi_version.restype = _I
        lib.attnbench_last_error.restype = ctypes.c_char_p
        lib.attnbench_paged_decode.restype = _I
        lib.attnbench_paged_decode.argtypes = PAGED_DECODE_ARGTYPES
        lib.attnbench_paged_decode_tc.restype = _I
        lib.attnbench_paged_decode_tc.argtypes = PAGED_DECODE_ARGTYPES
        lib.attnbench_paged_decode_blocks_per_sm.restype = _I
        lib.attnbench_paged_decode_blocks_per_sm.argtypes = BLOCKS_PER_SM_ARGTYPES
        lib.attnbench_paged_decode_tc_blocks_per_sm.restype = _I
        lib.attnbench_paged_decode_tc_blocks_per_sm.argtypes = TC_BLOCKS_PER_SM_ARGTYPES
        lib.attnbench_flash_fwd.restype = _I
        lib.attnbench_flash_fwd.argtypes = FLASH_FWD_ARGTYPES
        lib.attnbench_flash_num_configs.restype = _I
        version = lib.attnbench_abi_version()
        if version != ABI_VERSION:
            raise BuildError(f"{path}: ABI {version}, expected {ABI_VERSION}; rebuild with `make kernels`")
        self._lib = lib
        self.flash_num_configs = lib.attnbench_flash_num_configs()

    def last_error(self) -> str:
        return (self._lib.attnbench_last_error() or b"").decode(errors="replace")

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise KernelError(f"{what}: {self.last_error()} (code {rc})")

    def paged_decode(
        self,
        *,
        out: int,
        q: int,
        k_cache: int,
        v_cache: int,
        block_tables: int,
        kv_lens: int,
        batch: int,
        num_q_heads: int,
        num_kv_heads: int,
        head_dim: int,
        block_size: int,
        table_stride: int,
        dtype: int,
        scale: float,
        window: int | None = None,
        softcap: float | None = None,
        alibi_slopes: int = 0,
        partition_tokens: int = 0,
        part_acc: int = 0,
        part_ml: int = 0,
        max_partitions: int = 0,
        kv_dtype: int = 0,
        k_scale: int = 0,
        v_scale: int = 0,
        kv_scales: int = 0,
        stream: int = 0,
        impl: str = "tc",
    ) -> None:
        """kv_dtype: KV_DTYPE_CODES; an fp8 cache's k_scale / v_scale are device float32 pointers of
        kv_scales entries (1: per tensor, num_kv_heads: per KV head)."""
        launch = self._lib.attnbench_paged_decode_tc if impl == "tc" else self._lib.attnbench_paged_decode
        rc = launch(
            out,
            q,
            k_cache,
            v_cache,
            block_tables,
            kv_lens,
            batch,
            num_q_heads,
            num_kv_heads,
            head_dim,
            block_size,
            table_stride,
            dtype,
            scale,
            -1 if window is None else window,
            softcap or 0.0,
            alibi_slopes or None,
            partition_tokens,
            part_acc or None,
            part_ml or None,
            max_partitions,
            kv_dtype,
            k_scale or None,
            v_scale or None,
            kv_scales,
            stream or None,
        )
        self._check(rc, "paged_decode")

    def paged_blocks_per_sm(
        self, head_dim: int, num_q_heads: int, num_kv_heads: int, dtype: int, impl: str = "tc",
        kv_dtype: int = 0,
    ) -> int:
        if impl == "tc":
            return self._lib.attnbench_paged_decode_tc_blocks_per_sm(head_dim, dtype, kv_dtype)
        return self._lib.attnbench_paged_decode_blocks_per_sm(head_dim, num_q_heads, num_kv_heads, dtype)

    def flash_fwd(
        self,
        *,
        out: int,
        q: int,
        k: int,
        v: int,
        cu_q: int,
        cu_k: int,
        batch: int,
        max_q_len: int,
        num_q_heads: int,
        num_kv_heads: int,
        head_dim: int,
        dtype: int,
        causal: bool,
        scale: float,
        window: int | None = None,
        softcap: float | None = None,
        alibi_slopes: int = 0,
        config: int = 0,
        stream: int = 0,
    ) -> None:
        rc = self._lib.attnbench_flash_fwd(
            out,
            q,
            k,
            v,
            cu_q,
            cu_k,
            batch,
            max_q_len,
            num_q_heads,
            num_kv_heads,
            head_dim,
            dtype,
            int(causal),
            scale,
            -1 if window is None else window,
            softcap or 0.0,
            alibi_slopes or None,
            config,
            stream or None,
        )
        self._check(rc, "flash_fwd")


_LOADED: dict[str, CudaLib] = {}


def load(arch: str | None = None) -> CudaLib:
    """Build if needed and load the library for `arch` (default: the current GPU's), once per process."""
    arch = arch or cuda_build.detect_arch()
    if arch not in _LOADED:
        _LOADED[arch] = CudaLib(cuda_build.build(arch))
    return _LOADED[arch]


DTYPE_CODES = {"fp16": 0, "bf16": 1}
KV_DTYPE_CODES = {"auto": 0, "fp8_e4m3": 1}  # the paged decode's K/V storage (ATTNBENCH_KV_* in api.h)


