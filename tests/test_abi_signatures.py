"""The ctypes declarations match the C headers, and the ABI versions mirrored in Python match the C++.

ctypes trusts argtypes blindly: a header that gains an argument (window, softcap) while Python keeps
the old list would shift every later argument by one slot, with no error. So the headers are parsed
here and each function's parameter kinds compared with the lists the loaders install, without
compiling or loading anything.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from attnbench import cpu_build, cuda_build
from attnbench.paths import kernels_dir

C_TO_CTYPES = {"int": ctypes.c_int, "float": ctypes.c_float, "int64_t": ctypes.c_int64}


def header_signatures(header: Path) -> dict[str, list[type]]:
    """Every `T name(args);` declaration in the header: name -> ctypes kind of each parameter."""
    text = re.sub(r"//[^\n]*", "", header.read_text())
    found = {}
    for name, params in re.findall(r"\b(attnbench_\w+)\s*\(([^)]*)\)\s*;", text):
        kinds = []
        for param in (p.strip() for p in params.split(",")):
            if param in ("void", ""):
                continue
            ctype = param.rsplit(None, 1)[0] if "*" not in param else "*"
            kinds.append(ctypes.c_void_p if ctype == "*" else C_TO_CTYPES[ctype.replace("const ", "")])
        found[name] = kinds
    return found


CUDA = header_signatures(kernels_dir() / "cuda" / "api.h")
CPU = header_signatures(kernels_dir() / "cpu" / "api.h")


@pytest.mark.parametrize("name, declared", [
    ("attnbench_paged_decode", cuda_build.PAGED_DECODE_ARGTYPES),
    ("attnbench_paged_decode_blocks_per_sm", cuda_build.BLOCKS_PER_SM_ARGTYPES),
    ("attnbench_flash_fwd", cuda_build.FLASH_FWD_ARGTYPES),
])
def test_cuda_argtypes_match_the_header(name, declared):
    assert CUDA[name] == declared


@pytest.mark.parametrize("name, declared", [
    ("attnbench_cpu_paged_attention", cpu_build.PAGED_ATTENTION_ARGTYPES),
    ("attnbench_cpu_paged_scratch_floats", cpu_build.SCRATCH_FLOATS_ARGTYPES),
])
def test_cpu_argtypes_match_the_header(name, declared):
    assert CPU[name] == declared


def test_every_header_function_is_parsed():
    assert set(CUDA) >= {"attnbench_abi_version", "attnbench_last_error", "attnbench_paged_decode",
                         "attnbench_flash_fwd", "attnbench_flash_num_configs"}
    assert CPU["attnbench_cpu_paged_attention"][17:20] == [ctypes.c_int, ctypes.c_float, ctypes.c_void_p]


def test_abi_versions_mirror_the_sources():
    api_cu = (kernels_dir() / "cuda" / "api.cu").read_text()
    cuda_v = re.search(r"attnbench_abi_version\(void\)\s*\{\s*return\s+(\d+);", api_cu)
    cpu_src = (kernels_dir() / "cpu" / "paged_attention.cpp").read_text()
    cpu_v = re.search(r"kAbiVersion\s*=\s*(\d+);", cpu_src)
    assert cuda_v and int(cuda_v.group(1)) == cuda_build.ABI_VERSION
    assert cpu_v and int(cpu_v.group(1)) == cpu_build.ABI_VERSION


def test_wrappers_pass_one_value_per_declared_argument(monkeypatch):
    """Each Python wrapper hands the C function exactly as many arguments as the header declares,
    with window/softcap in their slots (None -> -1 and 0.0, the C side's 'none')."""
    calls: dict[str, tuple] = {}

    class Recorder:
        def __getattr__(self, name):
            def record(*args):
                calls[name] = args
                return 0
            return record

    cuda_lib = object.__new__(cuda_build.CudaLib)
    cuda_lib._lib = Recorder()
    cuda_lib.paged_decode(out=1, q=2, k_cache=3, v_cache=4, block_tables=5, kv_lens=6, batch=1, num_q_heads=8,
                          num_kv_heads=2, head_dim=64, block_size=16, table_stride=4, dtype=1, scale=0.125,
                          window=4096, softcap=50.0, alibi_slopes=77)
    cuda_lib.flash_fwd(out=1, q=2, k=3, v=4, cu_q=5, cu_k=6, batch=1, max_q_len=8, num_q_heads=8,
                       num_kv_heads=2, head_dim=64, dtype=1, causal=True, scale=0.125)
    cpu_lib = object.__new__(cpu_build.CpuLib)
    cpu_lib._lib = Recorder()
    cpu_lib.paged_attention(out=1, q=2, k_cache=3, v_cache=4, block_tables=5, kv_lens=6, cu_seqlens_q=7,
                            batch=1, num_q_heads=8, num_kv_heads=2, head_dim=64, num_blocks=4, block_size=16,
                            table_stride=4, dtype=0, causal=True, scale=0.125, query_tile=1, num_threads=1,
                            scratch=8, scratch_floats=100, window=7, softcap=2.0)
    decode, flash = calls["attnbench_paged_decode"], calls["attnbench_flash_fwd"]
    cpu = calls["attnbench_cpu_paged_attention"]
    assert len(decode) == len(CUDA["attnbench_paged_decode"])
    assert len(flash) == len(CUDA["attnbench_flash_fwd"])
    assert len(cpu) == len(CPU["attnbench_cpu_paged_attention"])
    assert decode[14:17] == (4096, 50.0, 77)
    assert flash[14:17] == (-1, 0.0, None)
    assert cpu[17:19] == (7, 2.0)
