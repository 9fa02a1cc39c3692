"""Build the CPU kernels (kernels/cpu/*.cpp) into one shared library (g++ -O3 -fopenmp); load it with ctypes.

The library exposes a plain C ABI (kernels/cpu/api.h) over raw host pointers, so no torch headers are
needed to compile. Builds are cached under ~/.cache/attnbench/cpu/<key>/ (ATTNBENCH_CPU_CACHE
overrides), the key hashing the sources, the flags, `g++ --version` and the CPU that -march=native
resolves to (a library built for one CPU may not run on another that shares the home folder); the first
use builds with a message on stderr, `make kernels` builds ahead of time.

    python -m attnbench.cpu_build build    # build into the cache, print the library's path
    python -m attnbench.cpu_build check    # compile every .cpp with warnings as errors
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from attnbench.paths import kernels_dir

LIB_NAME = "libattnbench_cpu.so"
ABI_VERSION = 2  # mirrors kAbiVersion in kernels/cpu/paged_attention.cpp (2: window, softcap, ALiBi)
SOURCE_SUFFIXES = (".cpp", ".h")
FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fPIC", "-march=native"]
WERROR_FLAGS = ["-Wall", "-Wextra", "-Werror"]
DTYPE_CODES = {"fp32": 0, "fp16": 1, "bf16": 2}
NO_CXX_HINT = "g++ not found: install a C++ compiler with OpenMP (apt install g++), or set ATTNBENCH_CXX"


class BuildError(RuntimeError):
    """The compiler failed or none was found."""


class KernelError(RuntimeError):
    """A kernel entry point returned a non-zero code (the message comes from the library)."""


def cpu_src_dir() -> Path:
    return kernels_dir() / "cpu"


def sources(src_dir: Path | None = None) -> list[Path]:
    return sorted((src_dir or cpu_src_dir()).glob("*.cpp"))


def find_cxx() -> str | None:
    """The compiler from ATTNBENCH_CXX, $CXX or g++ on PATH, in that order."""
    for name in (os.environ.get("ATTNBENCH_CXX"), os.environ.get("CXX"), "g++"):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


@lru_cache(maxsize=4)
def compiler_identity(cxx: str) -> str:
    """`cxx --version` and the -march=native target it resolves on this machine (both in the cache key)."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    target = subprocess.run([cxx, "-march=native", "-Q", "--help=target"], capture_output=True, text=True)
    lines = [line.split() for line in target.stdout.splitlines()]
    march = next((words[-1] for words in lines if words and words[0] == "-march="), "unknown")
    return f"{version}\nmarch={march}"


def cache_root() -> Path:
    env = os.environ.get("ATTNBENCH_CPU_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "attnbench" / "cpu"


def build_key(identity: str, src_dir: Path | None = None) -> str:
    """Hash of every source and header, the flags and the compiler's identity."""
    h = hashlib.sha256()
    root = src_dir or cpu_src_dir()
    for path in sorted(p for p in root.iterdir() if p.suffix in SOURCE_SUFFIXES):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{' '.join(FLAGS)}\0{identity}\0abi{ABI_VERSION}".encode())
    return h.hexdigest()[:16]


def library_path(cxx: str) -> Path:
    return cache_root() / build_key(compiler_identity(cxx)) / LIB_NAME


def _compile(cxx: str, srcs: list[Path], target: Path, extra: list[str]) -> None:
    res = subprocess.run([cxx, *FLAGS, *extra, "-shared", *map(str, srcs), "-o", str(target)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise BuildError(f"{Path(cxx).name} failed for {', '.join(s.name for s in srcs)}:\n"
                         f"{(res.stdout + res.stderr).strip()}")


def build(cxx: str | None = None, quiet: bool = False) -> Path:
    """The cached library, building it first if absent."""
    cxx = cxx or find_cxx()
    if cxx is None:
        raise BuildError(NO_CXX_HINT)
    target = library_path(cxx)
    if target.is_file():
        return target
    srcs = sources()
    if not quiet:
        print(f"attnbench: compiling {len(srcs)} CPU kernel source(s) with {Path(cxx).name} (once; cached in "
              f"{target.parent})", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target, then rename: a concurrent builder never loads a half-written library.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        lib_tmp = Path(tmp) / LIB_NAME
        _compile(cxx, srcs, lib_tmp, [])
        os.replace(lib_tmp, target)
    meta = {"compiler": compiler_identity(cxx), "flags": FLAGS, "sources": [s.name for s in srcs],
            "build_s": time.perf_counter() - t0}
    (target.parent / "build.json").write_text(json.dumps(meta, indent=1))
    return target


def compile_check(cxx: str | None = None) -> list[tuple[str, bool, str]]:
    """(source, ok, compiler output) per .cpp, compiled with warnings as errors into a temporary folder."""
    cxx = cxx or find_cxx()
    if cxx is None:
        raise BuildError(NO_CXX_HINT)
    results = []
    with tempfile.TemporaryDirectory(prefix="attnbench-cpu-check-") as tmp:
        for src in sources():
            try:
                _compile(cxx, [src], Path(tmp) / (src.stem + ".so"), WERROR_FLAGS)
                results.append((src.name, True, ""))
            except BuildError as err:
                results.append((src.name, False, str(err)))
    return results


_P, _I, _F, _I64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_int64
# attnbench_cpu_paged_attention in kernels/cpu/api.h, in order (tests/test_abi_signatures.py compares them).
# One annotated literal: the type checker joins the classes of a bare list of them to `object`.
PAGED_ATTENTION_ARGTYPES: list[type[ctypes.c_void_p | ctypes.c_int | ctypes.c_float | ctypes.c_int64]] = [
    *[_P] * 7, *[_I] * 9, _F, _I, _F, _P, _I, _I, _P, _I64,
]
SCRATCH_FLOATS_ARGTYPES = [_I] * 5


class CpuLib:
    """The loaded library: thin wrappers over the C functions that raise KernelError on failure."""

    def __init__(self, path: Path):
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.attnbench_cpu_abi_version.restype = _I
        lib.attnbench_cpu_last_error.restype = ctypes.c_char_p
        lib.attnbench_cpu_paged_scratch_floats.restype = _I64
        lib.attnbench_cpu_paged_scratch_floats.argtypes = SCRATCH_FLOATS_ARGTYPES
        lib.attnbench_cpu_paged_attention.restype = _I
        lib.attnbench_cpu_paged_attention.argtypes = PAGED_ATTENTION_ARGTYPES
        version = lib.attnbench_cpu_abi_version()
        if version != ABI_VERSION:
            raise BuildError(f"{path}: ABI {version}, expected {ABI_VERSION}; rebuild with `make kernels`")
        self._lib = lib

    def last_error(self) -> str:
        return (self._lib.attnbench_cpu_last_error() or b"").decode(errors="replace")

    def paged_scratch_floats(self, num_q_heads: int, num_kv_heads: int, head_dim: int, block_size: int,
                             query_tile: int) -> int:
        n = self._lib.attnbench_cpu_paged_scratch_floats(num_q_heads, num_kv_heads, head_dim, block_size,
                                                         query_tile)
        if n <= 0:
            raise KernelError(f"paged_scratch_floats: {self.last_error()}")
        return n

    def paged_attention(self, *, out: int, q: int, k_cache: int, v_cache: int, block_tables: int,
                        kv_lens: int, cu_seqlens_q: int, batch: int, num_q_heads: int, num_kv_heads: int,
                        head_dim: int,
                        num_blocks: int, block_size: int, table_stride: int, dtype: int, causal: bool,
                        scale: float, query_tile: int, num_threads: int, scratch: int,
                        scratch_floats: int, window: int | None = None, softcap: float | None = None,
                        alibi_slopes: int = 0) -> None:
        """window None = full, softcap None = none, alibi_slopes 0 = none (else a float32 pointer)."""
        rc = self._lib.attnbench_cpu_paged_attention(
            out, q, k_cache, v_cache, block_tables, kv_lens, cu_seqlens_q, batch, num_q_heads, num_kv_heads,
            head_dim, num_blocks, block_size, table_stride, dtype, int(causal), scale,
            -1 if window is None else window, softcap or 0.0, alibi_slopes or None, query_tile,
            num_threads, scratch, scratch_floats,
        )
        if rc != 0:
            raise KernelError(f"paged_attention: {self.last_error()} (code {rc})")


_LOADED: dict[str, CpuLib] = {}


def load() -> CpuLib:
    """Build if needed and load the library, once per process."""
    cxx = find_cxx()
    if cxx is None:
        raise BuildError(NO_CXX_HINT)
    if cxx not in _LOADED:
        _LOADED[cxx] = CpuLib(build(cxx))
    return _LOADED[cxx]


def toolchain_status() -> tuple[bool, str]:
    """(True, '') if the kernels can be built here, else (False, why, with the fix)."""
    return (True, "") if find_cxx() is not None else (False, NO_CXX_HINT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnbench.cpu_build", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the library into the cache and print its path")
    sub.add_parser("check", help="compile every .cpp with warnings as errors")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            print(build())
            return 0
        results = compile_check()
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, ok, output in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            print(output, file=sys.stderr)
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
