"""The ctypes declarations match the C headers, and the ABI versions mirrored in Python match the C++.

ctypes trusts argtypes blindly: a header that gains an argument (window, softcap) while Python keeps
the old list would shift every later argument by one slot, with no error, and a function whose
restype is left at ctypes' default (int) truncates an int64_t or a pointer. So the headers are parsed
here and each function's return and parameter kinds compared with what the loaders install, and the
definitions in the .cu/.cpp sources with the headers, without compiling or loading anything. The
other constants Python mirrors from the kernels: tests/test_abi_constants.py.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from attnbench import cpu_build, cuda_build, cuda_lib
from attnbench.paths import kernels_dir

C_TO_CTYPES = {"int": ctypes.c_int, "float": ctypes.c_float, "int64_t": ctypes.c_int64}
C_RETURN_TO_CTYPES = {"int": ctypes.c_int, "int64_t": ctypes.c_int64, "const char*": ctypes.c_char_p,
                      "void": None}


def c_functions(text: str, end: str) -> dict[str, tuple[type | None, list[type]]]:
    """Every `T attnbench_name(args)` followed by `end` (";" declarations, "{" definitions):
    name -> (ctypes kind of the return value, ctypes kind of each parameter)."""
    text = re.sub(r"//[^\n]*", "", text)
    found = {}
    pattern = rf"((?:const\s+)?\w+\s*\**)\s*\b(attnbench_\w+)\s*\(([^)]*)\)\s*{re.escape(end)}"
    for ret, name, params in re.findall(pattern, text):
        kinds = []
        for param in (p.strip() for p in params.split(",")):
            if param in ("void", ""):
                continue
            ctype = param.rsplit(None, 1)[0] if "*" not in param else "*"
            kinds.append(ctypes.c_void_p if ctype == "*" else C_TO_CTYPES[ctype.replace("const ", "")])
        assert name not in found, f"{name} declared twice"
        found[name] = (C_RETURN_TO_CTYPES[re.sub(r"\s*\*", "*", ret.strip())], kinds)
    return found


def header_signatures(header: Path) -> dict[str, list[type]]:
    """Every `T name(args);` declaration in the header: name -> ctypes kind of each parameter."""
    return {name: params for name, (_, params) in c_functions(header.read_text(), ";").items()}


def source_definitions(folder: Path, suffix: str) -> dict[str, tuple[type | None, list[type]]]:
    """The extern "C" definitions in every source of folder, as c_functions gives them."""
    found: dict[str, tuple[type | None, list[type]]] = {}
    for path in sorted(folder.glob(f"*{suffix}")):
        defs = c_functions(path.read_text(), "{")
        assert not set(defs) & set(found), f"{path.name} defines a function another source defines"
        found.update(defs)
    return found


CUDA = header_signatures(kernels_dir() / "cuda" / "api.h")
CPU = header_signatures(kernels_dir() / "cpu" / "api.h")


@pytest.mark.parametrize("name, declared", [
    ("attnbench_paged_decode", cuda_lib.PAGED_DECODE_ARGTYPES),
    ("attnbench_paged_decode_tc", cuda_lib.PAGED_DECODE_ARGTYPES),
    ("attnbench_paged_decode_blocks_per_sm", cuda_lib.BLOCKS_PER_SM_ARGTYPES),
    ("attnbench_paged_decode_tc_blocks_per_sm", cuda_lib.TC_BLOCKS_PER_SM_ARGTYPES),
    ("attnbench_flash_fwd", cuda_lib.FLASH_FWD_ARGTYPES),
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

    gpu_lib = object.__new__(cuda_lib.CudaLib)
    gpu_lib._lib = Recorder()
    for impl in ("tc", "simt"):
        gpu_lib.paged_decode(out=1, q=2, k_cache=3, v_cache=4, block_tables=5, kv_lens=6, batch=1,
                              num_q_heads=8, num_kv_heads=2, head_dim=64, block_size=16, table_stride=4,
                              dtype=1, scale=0.125, window=4096, softcap=50.0, alibi_slopes=77, kv_dtype=1,
                              k_scale=88, v_scale=99, kv_scales=2, impl=impl)
    gpu_lib.flash_fwd(out=1, q=2, k=3, v=4, cu_q=5, cu_k=6, batch=1, max_q_len=8, num_q_heads=8,
                       num_kv_heads=2, head_dim=64, dtype=1, causal=True, scale=0.125)
    cpu_lib = object.__new__(cpu_build.CpuLib)
    cpu_lib._lib = Recorder()
    cpu_lib.paged_attention(out=1, q=2, k_cache=3, v_cache=4, block_tables=5, kv_lens=6, cu_seqlens_q=7,
                            batch=1, num_q_heads=8, num_kv_heads=2, head_dim=64, num_blocks=4, block_size=16,
                            table_stride=4, dtype=0, causal=True, scale=0.125, query_tile=1, num_threads=1,
                            scratch=8, scratch_floats=100, window=7, softcap=2.0)
    decode, flash = calls["attnbench_paged_decode_tc"], calls["attnbench_flash_fwd"]
    cpu = calls["attnbench_cpu_paged_attention"]
    assert calls["attnbench_paged_decode"] == decode  # impl picks the entry point, the arguments are equal
    assert len(decode) == len(CUDA["attnbench_paged_decode_tc"]) == len(CUDA["attnbench_paged_decode"])
    assert len(flash) == len(CUDA["attnbench_flash_fwd"])
    assert len(cpu) == len(CPU["attnbench_cpu_paged_attention"])
    assert decode[14:17] == (4096, 50.0, 77)
    assert decode[21:] == (1, 88, 99, 2, None)  # kv_dtype, k_scale, v_scale, kv_scales, stream
    assert flash[14:17] == (-1, 0.0, None)
    assert cpu[17:19] == (7, 2.0)


@pytest.mark.parametrize("folder, suffix", [("cuda", ".cu"), ("cpu", ".cpp")])
def test_definitions_match_the_header(folder, suffix):
    """Each extern "C" function the sources define is declared in api.h with the same kinds, and each
    declared one is defined (ctypes would bind a mismatched or missing definition without a word)."""
    declared = c_functions((kernels_dir() / folder / "api.h").read_text(), ";")
    defined = source_definitions(kernels_dir() / folder, suffix)
    assert defined == declared


class _FakeFunction:
    """Stands in for a ctypes function: records the restype / argtypes a loader sets."""

    def __init__(self, result: int):
        self.restype: object = "unset"
        self.argtypes: object = None
        self._result = result

    def __call__(self, *args):
        return self._result


class _FakeLibrary:
    def __init__(self, abi: int):
        self.functions: dict[str, _FakeFunction] = {}
        self._abi = abi

    def __getattr__(self, name: str) -> _FakeFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.functions.setdefault(name, _FakeFunction(self._abi))


@pytest.mark.parametrize("folder, loader", [("cuda", cuda_lib.CudaLib), ("cpu", cpu_build.CpuLib)])
def test_loaders_bind_every_function_as_declared(monkeypatch, folder, loader):
    """The loader sets restype and argtypes of every function api.h declares, as declared (argtypes
    may be left unset for a function without parameters)."""
    module = cuda_lib if folder == "cuda" else cpu_build
    fake = _FakeLibrary(module.ABI_VERSION)
    monkeypatch.setattr(module.ctypes, "CDLL", lambda path: fake)
    loader(Path("libfake.so"))
    declared = c_functions((kernels_dir() / folder / "api.h").read_text(), ";")
    assert set(fake.functions) == set(declared)
    for name, (restype, params) in declared.items():
        fn = fake.functions[name]
        assert fn.restype == restype, name
        assert fn.argtypes == params or (fn.argtypes is None and not params), name
