"""Build the CUDA kernels (kernels/cuda/*.cu) into one shared library with nvcc, and check they compile.

The library exposes a plain C ABI (kernels/cuda/api.h): launch functions take raw device pointers, sizes
and a cudaStream_t as an integer, so no CUDA build of torch (and no torch headers) is needed to compile;
attnbench.cuda_lib loads it (ctypes). Builds are cached under ~/.cache/attnbench/cuda/<key>-<arch>/
(ATTNBENCH_CUDA_CACHE overrides), the key hashing the sources, the target architecture, the compiler
flags and `nvcc --version`; the first use builds with a message on stderr, `make kernels` builds ahead
of time. That folder keeps the objects too (obj/), and the compile check writes its objects there:
-Werror changes what nvcc reports, not the code it emits, so a checked object is the library's object,
and the sources compile once for the check and the build together. The check remembers which sources
passed (check.json, with the warning flags and the host compiler), so checking an unchanged tree again
compiles nothing.

    python -m attnbench.cuda_build build [--arch sm_90a]   # build (GPU's arch, or sm_80 + sm_90a)
    python -m attnbench.cuda_build check                   # every .cu, sm_80 and sm_90a, -Werror
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from attnbench.paths import kernels_dir

LIB_NAME = "libattnbench_cuda.so"
# mirrors attnbench_abi_version() in kernels/cuda/api.cu (2: window, softcap, ALiBi; 3: tc paged decode;
# 4: the paged decode's kv_dtype and fp8 scales)
ABI_VERSION = 4
SOURCE_SUFFIXES = (".cu", ".cuh", ".h")
# -lineinfo keeps source lines for profilers and compute-sanitizer at no run-time cost.
COMMON_FLAGS = ["-O3", "-std=c++17", "-lineinfo", "-Xcompiler", "-fPIC"]
WERROR_FLAGS = ["-Werror", "all-warnings", "-Xcompiler", "-Wall,-Werror"]
CHECK_ARCHS = ("sm_80", "sm_90a")
OBJ_DIR = "obj"  # inside a build's folder: one object per .cu, from the build or the compile check
CHECK_STAMP = "check.json"  # inside a build's folder: the sources that passed the compile check
NO_NVCC_HINT = (
    "nvcc not found: install the CUDA toolkit, or point CUDA_HOME / ATTNBENCH_NVCC at it, "
    "then run `make kernels`"
)


class BuildError(RuntimeError):
    """nvcc failed, or no usable compiler or GPU architecture was found."""


# ---- toolchain ----------------------------------------------------------------------------------
def cuda_src_dir() -> Path:
    return kernels_dir() / "cuda"


def sources(src_dir: Path | None = None) -> list[Path]:
    """The translation units, sorted (each .cu compiles on its own)."""
    return sorted((src_dir or cuda_src_dir()).glob("*.cu"))


def find_nvcc() -> str | None:
    """nvcc from ATTNBENCH_NVCC, $CUDA_HOME/bin, PATH or /usr/local/cuda/bin, in that order."""
    candidates = [os.environ.get("ATTNBENCH_NVCC")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(str(Path(os.environ["CUDA_HOME"]) / "bin" / "nvcc"))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


@lru_cache(maxsize=8)
def nvcc_version(nvcc: str) -> str:
    """The full `nvcc --version` text (part of the cache key: another compiler, another build)."""
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@lru_cache(maxsize=8)
def host_compiler_version() -> str:
    """`--version` of the host compiler nvcc runs (NVCC_CCBIN, else g++): -Wall's warnings are its own."""
    try:
        cxx = os.environ.get("NVCC_CCBIN") or "g++"
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    except OSError:
        return ""
    return out.stdout.strip()


def nvcc_release(nvcc: str) -> str:
    """Short form, e.g. '13.0' (for messages)."""
    for line in nvcc_version(nvcc).splitlines():
        if "release" in line:
            return line.split("release", 1)[1].split(",")[0].strip()
    return "unknown"


def arch_for_capability(major: int, minor: int) -> str:
    """nvcc target for a compute capability; Hopper gets sm_90a (wgmma/setmaxnreg-capable target)."""
    if major < 8:
        raise BuildError(f"compute capability {major}.{minor}: the kernels need sm_80 or newer")
    if (major, minor) == (9, 0):
        return "sm_90a"
    return f"sm_{major}{minor}"


def gencode(arch: str) -> list[str]:
    """-gencode flags for one target: machine code only (the arch is known at build time)."""
    if not arch.startswith("sm_") or not arch[3:].rstrip("a").isdigit():
        raise BuildError(f"arch {arch!r}: expected sm_XY or sm_XYa, e.g. sm_80, sm_90a")
    num = arch[3:]
    return [f"-gencode=arch=compute_{num},code=sm_{num}"]


def detect_arch() -> str:
    """ATTNBENCH_CUDA_ARCH, else the arch of the current CUDA device (needs torch with CUDA)."""
    env = os.environ.get("ATTNBENCH_CUDA_ARCH")
    if env:
        gencode(env)  # validates
        return env
    import torch

    if not torch.cuda.is_available():
        raise BuildError("no CUDA device to build for; set ATTNBENCH_CUDA_ARCH (e.g. sm_90a)")
    return arch_for_capability(*torch.cuda.get_device_capability())


def cache_root() -> Path:
    env = os.environ.get("ATTNBENCH_CUDA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "attnbench" / "cuda"


def build_key(arch: str, nvcc_text: str, src_dir: Path | None = None) -> str:
    """Hash of every source and header, the arch, the flags and the compiler's version text."""
    h = hashlib.sha256()
    root = src_dir or cuda_src_dir()
    for path in sorted(p for p in root.iterdir() if p.suffix in SOURCE_SUFFIXES):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{arch}\0{' '.join(COMMON_FLAGS)}\0{nvcc_text}\0abi{ABI_VERSION}".encode())
    return h.hexdigest()[:16]


# ---- building -------------------------------------------------------------------------------------
def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _compile_cmd(nvcc: str, arch: str, src: Path, obj: Path, extra: list[str]) -> list[str]:
    return [nvcc, *COMMON_FLAGS, *extra, *gencode(arch), "-c", str(src), "-o", str(obj)]


def _pool_size(jobs: int) -> int:
    return max(1, min(jobs, os.cpu_count() or 1))


def _raise_if_failed(arch: str, srcs: list[Path], results: list[subprocess.CompletedProcess]) -> None:
    failed = [(s, r) for s, r in zip(srcs, results, strict=True) if r.returncode != 0]
    if failed:
        msg = "\n".join(f"--- {s.name} ({arch}):\n{r.stderr.strip()}" for s, r in failed)
        raise BuildError(f"nvcc failed for {', '.join(s.name for s, _ in failed)}:\n{msg}")


def _compile_objects(nvcc: str, arch: str, srcs: list[Path], out_dir: Path, extra: list[str]) -> list[Path]:
    """Compile each .cu to an object in parallel; raise BuildError with nvcc's output on failure."""
    objs = [out_dir / (s.stem + ".o") for s in srcs]
    cmds = [_compile_cmd(nvcc, arch, s, o, extra) for s, o in zip(srcs, objs, strict=True)]
    with ThreadPoolExecutor(max_workers=_pool_size(len(cmds))) as pool:
        results = list(pool.map(_run, cmds))
    _raise_if_failed(arch, srcs, results)
    return objs


def build_dir(arch: str, nvcc: str) -> Path:
    """The cache folder of one build: the library, its objects (obj/), build.json and check.json."""
    return cache_root() / f"{build_key(arch, nvcc_version(nvcc))}-{arch}"


def library_path(arch: str, nvcc: str) -> Path:
    return build_dir(arch, nvcc) / LIB_NAME


def object_path(folder: Path, src: Path) -> Path:
    return folder / OBJ_DIR / (src.stem + ".o")


def _compile_cached_object(
    nvcc: str, arch: str, src: Path, folder: Path, extra: list[str]
) -> subprocess.CompletedProcess:
    """Compile `src` into the build folder's obj/: written in a private folder, renamed on success, so
    concurrent builders and checkers never see half an object (they write the same bytes)."""
    target = object_path(folder, src)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj = Path(tmp) / target.name
        r = _run(_compile_cmd(nvcc, arch, src, obj, extra))
        if r.returncode == 0:
            os.replace(obj, target)
    return r


def build(arch: str | None = None, nvcc: str | None = None, quiet: bool = False) -> Path:
    """The cached library for `arch` (default: the GPU's), building it first if absent. Objects the
    compile check (or an interrupted build) left in the build folder are linked, not compiled again."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise BuildError(NO_NVCC_HINT)
    arch = arch or detect_arch()
    target = library_path(arch, nvcc)
    if target.is_file():
        return target
    folder = target.parent
    srcs = sources()
    missing = [s for s in srcs if not object_path(folder, s).is_file()]
    if not quiet:
        what = f"compiling {len(missing)} CUDA sources" if missing else f"linking {len(srcs)} cached objects"
        print(
            f"attnbench: {what} for {arch} with nvcc {nvcc_release(nvcc)} (once; cached in {folder})",
            file=sys.stderr,
            flush=True,
        )
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=_pool_size(len(missing))) as pool:
        results = list(pool.map(lambda s: _compile_cached_object(nvcc, arch, s, folder, []), missing))
    _raise_if_failed(arch, missing, results)
    # Link in a private folder beside the target, then rename: concurrent builders never see a
    # half-written library.
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        lib_tmp = Path(tmp) / LIB_NAME
        objs = [str(object_path(folder, s)) for s in srcs]
        link = _run([nvcc, "-shared", *gencode(arch), *objs, "-o", str(lib_tmp)])
        if link.returncode != 0:
            raise BuildError(f"nvcc link failed:\n{link.stderr.strip()}")
        os.replace(lib_tmp, target)
    seconds = time.perf_counter() - t0
    meta = {
        "arch": arch,
        "nvcc": nvcc_release(nvcc),
        "sources": [s.name for s in srcs],
        "compiled": [s.name for s in missing],
        "build_s": seconds,
    }
    (folder / "build.json").write_text(json.dumps(meta, indent=1))
    if not quiet:
        print(f"attnbench: CUDA kernels built in {seconds:.0f} s", file=sys.stderr, flush=True)
    return target


@dataclass
class CheckResult:
    source: str
    arch: str
    ok: bool
    output: str
    cached: bool = False  # passed an earlier check of the same sources, flags and compilers


def _check_identity() -> dict:
    return {"werror_flags": WERROR_FLAGS, "host_compiler": host_compiler_version()}


def _passed_before(folder: Path) -> set[str]:
    """The sources an earlier check of this build folder passed, if it checked as this one would."""
    try:
        stamp = json.loads((folder / CHECK_STAMP).read_text())
    except (OSError, ValueError):
        return set()
    if not isinstance(stamp, dict) or {k: stamp.get(k) for k in _check_identity()} != _check_identity():
        return set()
    return set(stamp.get("passed", []))


def _write_stamp(folder: Path, passed: set[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=CHECK_STAMP + ".")
    with os.fdopen(fd, "w") as f:
        json.dump({**_check_identity(), "passed": sorted(passed)}, f, indent=1)
    os.replace(tmp, folder / CHECK_STAMP)


def compile_check(archs: tuple[str, ...] = CHECK_ARCHS, nvcc: str | None = None) -> list[CheckResult]:
    """Compile every .cu for each arch with warnings as errors (no GPU), into the build folders' obj/
    (where build() links them); a source that passed an earlier check of the same key is not compiled
    again."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise BuildError(NO_NVCC_HINT)
    srcs = sources()
    folders = {a: build_dir(a, nvcc) for a in archs}
    passed = {a: _passed_before(folders[a]) for a in archs}
    jobs = [(s, a) for a in archs for s in srcs if s.name not in passed[a]]

    def one(job: tuple[Path, str]) -> CheckResult:
        src, arch = job
        r = _compile_cached_object(nvcc, arch, src, folders[arch], WERROR_FLAGS)
        return CheckResult(src.name, arch, r.returncode == 0, (r.stdout + r.stderr).strip())

    with ThreadPoolExecutor(max_workers=_pool_size(len(jobs))) as pool:
        fresh = {(r.source, r.arch): r for r in pool.map(one, jobs)}
    for a in archs:
        now = {s for (s, arch), r in fresh.items() if arch == a and r.ok}
        if now:
            _write_stamp(folders[a], passed[a] | now)
    return [
        fresh.get((s.name, a)) or CheckResult(s.name, a, True, "", cached=True) for a in archs for s in srcs
    ]


def toolchain_status() -> tuple[bool, str]:
    """(True, '') if the kernels can be built and run here, else (False, why, with the fix)."""
    if find_nvcc() is None:
        return False, NO_NVCC_HINT
    return True, ""



# ---- command line (make kernels / make kernels-check) -------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m attnbench.cuda_build", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the library into the cache (GPU's arch, or sm_80 and sm_90a)")
    b.add_argument("--arch", action="append", help="target, e.g. sm_90a (repeatable)")
    c = sub.add_parser("check", help="compile every .cu with warnings as errors (no GPU needed)")
    c.add_argument("--arch", action="append", help=f"target (repeatable; default {' '.join(CHECK_ARCHS)})")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "build":
            archs = args.arch
            if not archs:
                try:
                    archs = [detect_arch()]
                except BuildError:
                    archs = list(CHECK_ARCHS)
                    print(f"attnbench: no CUDA device here; building for {', '.join(archs)}", file=sys.stderr)
            for arch in archs:
                print(build(arch))
            return 0
        results = compile_check(tuple(args.arch or CHECK_ARCHS))
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for r in results:
        cached = " (passed before: cached)" if r.cached else ""
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.source} {r.arch}{cached}")
        if not r.ok:
            print(r.output, file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
