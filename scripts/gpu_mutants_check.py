"""Planted faults in the CUDA and compiled Triton kernels must come out `incorrect` on the GPU.

    PYTHONPATH=. python3 scripts/gpu_mutants_check.py OUT_DIR [--dtypes bf16,fp16] [--max-context 32768]

Every mutant of tests/mutation.py (CUDA_MUTANTS, TRITON_MUTANTS) is planted into a copy of its kernel
source, built (CUDA: the mutated translation unit recompiled, the others reused, linked into a library
of its own; Triton: a mutated module compiled by Triton), and run through the backend's prepare()/run()
on batches that mix contexts from 1 to 32768 tokens in bf16 and fp16. The honest kernels run on the same
batches first and must pass. The tc paged kernel also runs those batches over an fp8 e4m3 cache with
per-KV-head scales, honest and with the fp8 mutants (FP8_CUDA_MUTANTS), which only such a cache reaches.
Verdicts come from attnbench.reference.check_output, the harness's rule.
Writes OUT_DIR/mutants.json and prints a table; exits 1 if a mutant passes or an honest kernel fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from attnbench import cuda_build, cuda_lib  # noqa: E402
from attnbench.backends import get_backend  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.inputs import build_inputs  # noqa: E402
from attnbench.reference import check_output  # noqa: E402
from tests.mutation import (  # noqa: E402
    CUDA_MUTANTS,
    FP8_CUDA_MUTANTS,
    TRITON_MUTANTS,
    load_triton_mutant,
    paged_mutant_impls,
    write_cuda_mutant,
)


def contexts(max_context: int) -> tuple[int, ...]:
    # Longest first: a read past its table row lands on the next row's blocks, not outside the table.
    return (max_context, 1, 2, 17, 129, 1000, 4096)


def decode_case(dtype: str, ctx: tuple[int, ...], block_size: int | None) -> Case:
    return Case("mutants", "decode", (1,) * len(ctx), ctx, 32, 8, 128, dtype, False, block_size=block_size)


def fp8_decode_case(dtype: str, ctx: tuple[int, ...]) -> Case:
    """decode_case over an fp8 e4m3 cache scaled per KV head (cuda-paged's tc implementation)."""
    return replace(decode_case(dtype, ctx, 16), kv_dtype="fp8_e4m3", kv_scale="per-head")


def mixed_case(dtype: str, ctx: tuple[int, ...]) -> Case:
    q = (1, 1, 2, 17, 129, 3, 64)
    return Case("mutants", "mixed", q, ctx, 32, 8, 128, dtype, True)


# ---- building the CUDA mutants -------------------------------------------------------------------------
def build_cuda_mutants(work: Path) -> tuple[dict[str, Path], Path, float]:
    """One library per mutant (key 'unit:mutant') and the honest one; returns them and build seconds."""
    nvcc = cuda_build.find_nvcc()
    assert nvcc, cuda_build.NO_NVCC_HINT
    arch = cuda_build.detect_arch()
    src = cuda_build.cuda_src_dir()
    units = cuda_build.sources()
    t0 = time.perf_counter()
    honest_dir = work / "honest"
    honest_dir.mkdir(parents=True)
    honest_objs = dict(zip([u.name for u in units],
                           cuda_build._compile_objects(nvcc, arch, units, honest_dir, []), strict=True))
    jobs = []
    for unit, mutants in CUDA_MUTANTS.items():
        for mutant in mutants:
            d = work / f"{Path(unit).stem}__{mutant}"
            d.mkdir()
            jobs.append((unit, mutant, write_cuda_mutant(src, unit, mutant, d), d))

    def compile_one(job: tuple[str, str, Path, Path]) -> tuple[str, Path]:
        unit, mutant, path, d = job
        (obj,) = cuda_build._compile_objects(nvcc, arch, [path], d, ["-I", str(src)])
        objs = [obj if name == unit else o for name, o in honest_objs.items()]
        lib = d / cuda_build.LIB_NAME
        link = cuda_build._run([nvcc, "-shared", *cuda_build.gencode(arch), *map(str, objs), "-o", str(lib)])
        if link.returncode:
            raise cuda_build.BuildError(link.stderr)
        return f"{unit}:{mutant}", lib

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 4) as pool:
        libs = dict(pool.map(compile_one, jobs))
    honest = work / "honest" / cuda_build.LIB_NAME
    link = cuda_build._run([nvcc, "-shared", *cuda_build.gencode(arch), *map(str, honest_objs.values()),
                            "-o", str(honest)])
    assert link.returncode == 0, link.stderr
    return libs, honest, time.perf_counter() - t0


def use_cuda_library(path: Path) -> None:
    """Make cuda_lib.load() hand the backends this library (the harness's own loading path)."""
    cuda_lib._LOADED[cuda_build.detect_arch()] = cuda_lib.CudaLib(path)


def run_backend(name: str, case: Case, env: dict[str, str] | None = None) -> dict[str, Any]:
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        inputs = build_inputs(case, "cuda")
        prepared = get_backend(name).prepare(case, inputs)
        out = prepared.run()
        torch.cuda.synchronize()
        check = check_output(prepared.to_packed(out), inputs)
        return {"ok": check.ok, "reason": check.reason, **check.row_fields(), **prepared.info}
    except Exception as err:  # noqa: BLE001 - a crash of a mutant is also a caught fault
        return {"ok": False, "reason": f"{type(err).__name__}: {err}"[:300], "error": True}
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


Run = tuple[str, str, Case, dict]


def cuda_runs(unit: str, mutant: str | None, dtype: str, ctx: tuple[int, ...]) -> list[Run]:
    if unit == "paged_attention.cu":
        runs = []
        for impl in paged_mutant_impls(mutant):  # a mutant runs in the implementation whose code it changes
            for variant in ("v1", "v2"):
                if mutant == "last-split-dropped" and variant == "v1":
                    continue  # v1 has no partitions
                env = {"ATTNBENCH_CUDA_PAGED_VARIANT": variant, "ATTNBENCH_CUDA_PAGED_IMPL": impl}
                if variant == "v2":
                    env["ATTNBENCH_CUDA_PAGED_PARTITION"] = "512"  # many partitions on the long rows
                if mutant not in FP8_CUDA_MUTANTS:
                    runs.append((f"decode {impl} {variant}", "cuda-paged", decode_case(dtype, ctx, 16), env))
                if impl == "tc" and (mutant is None or mutant in FP8_CUDA_MUTANTS):
                    runs.append((f"decode fp8 {variant}", "cuda-paged", fp8_decode_case(dtype, ctx), env))
        return runs
    case = mixed_case(dtype, ctx) if mutant in (None, "causal-diagonal") else decode_like(dtype, ctx)
    label = "mixed causal" if case.causal else "mixed full"
    return [(label, "cuda-flash", case, {})]


def decode_like(dtype: str, ctx: tuple[int, ...]) -> Case:
    """cuda-flash has no decode phase: one query row per sequence as a non-causal mixed batch."""
    return Case("mutants", "mixed", (1,) * len(ctx), ctx, 32, 8, 128, dtype, False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dtypes", default="bf16,fp16")
    ap.add_argument("--max-context", type=int, default=32768)
    ap.add_argument("--skip-cuda", action="store_true")
    ap.add_argument("--skip-triton", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print("gpu_mutants_check: no CUDA device visible", file=sys.stderr)
        return 2
    ctx = contexts(args.max_context)
    dtypes = args.dtypes.split(",")
    results: list[dict[str, Any]] = []

    def record(kind: str, kernel: str, mutant: str | None, label: str, dtype: str, res: dict) -> None:
        want_ok = mutant is None
        row = {"kind": kind, "kernel": kernel, "mutant": mutant or "honest", "run": label, "dtype": dtype,
               **res, "pass": res["ok"] == want_ok}
        results.append(row)
        ratio = res.get("rel_err_ratio")
        mark = "OK " if row["pass"] else "BAD"
        print(f"{mark} {kind:6s} {kernel:20s} {row['mutant']:20s} {label:14s} {dtype} "
              f"ratio={ratio if ratio is None else f'{ratio:.3g}'} seq={res.get('rel_err_seq')} "
              f"{res.get('reason', '')[:90]}", flush=True)

    if not args.skip_cuda:
        with tempfile.TemporaryDirectory() as tmp:
            libs, honest, seconds = build_cuda_mutants(Path(tmp))
            print(f"built {len(libs)} CUDA mutant libraries in {seconds:.0f} s", flush=True)
            for dtype in dtypes:
                use_cuda_library(honest)
                for unit in CUDA_MUTANTS:
                    for label, backend, case, env in cuda_runs(unit, None, dtype, ctx):
                        record("cuda", unit, None, label, dtype, run_backend(backend, case, env))
                for key, lib in libs.items():
                    unit, mutant = key.split(":")
                    use_cuda_library(lib)
                    for label, backend, case, env in cuda_runs(unit, mutant, dtype, ctx):
                        record("cuda", unit, mutant, label, dtype, run_backend(backend, case, env))
    if not args.skip_triton:
        from attnbench.backends import _triton_common, triton_flash, triton_paged

        honest_module = _triton_common.kernels_module
        for dtype in dtypes:
            for module, mutants in TRITON_MUTANTS.items():
                backend, owner = ("triton-paged", triton_paged) if module == "paged_attn" else \
                    ("triton-flash", triton_flash)
                for mutant in [None, *mutants]:
                    mod = honest_module(module) if mutant is None else load_triton_mutant(module, mutant)
                    # The backend module's own name for the loader is what prepare() calls.
                    owner.kernels_module = lambda name, _m=mod, _w=module: (  # type: ignore[attr-defined]
                        _m if name == _w else honest_module(name))
                    for label, case in triton_runs(module, mutant, dtype, ctx):
                        record("triton", module, mutant, label, dtype, run_backend(backend, case))
                    owner.kernels_module = honest_module  # type: ignore[attr-defined]
    (args.out / "mutants.json").write_text(json.dumps(results, indent=1, default=str))
    bad = [r for r in results if not r["pass"]]
    mutants = [r for r in results if r["mutant"] != "honest"]
    honest = [r for r in results if r["mutant"] == "honest"]
    print(f"\n== {len(mutants)} mutant runs: {sum(r['pass'] for r in mutants)} caught; "
          f"{len(honest)} honest runs: {sum(r['pass'] for r in honest)} passed; "
          f"largest honest ratio {max((r.get('rel_err_ratio') or 0) for r in honest):.3f}")
    for r in bad:
        print(f"FAIL {r['kind']} {r['kernel']} {r['mutant']} {r['run']} {r['dtype']}: {r.get('reason')}")
    return 1 if bad else 0


def triton_runs(module: str, mutant: str | None, dtype: str, ctx: tuple[int, ...]) -> list[tuple[str, Case]]:
    if module == "paged_attn":
        if mutant == "causal-diagonal":
            return [("mixed causal", Case("mutants", "mixed", (1, 1, 2, 17, 129, 3, 64), ctx, 32, 8, 128,
                                          dtype, True, block_size=16))]
        runs = [("decode", decode_case(dtype, ctx, 16))]
        if mutant is None:
            runs.append(("mixed causal", Case("mutants", "mixed", (1, 1, 2, 17, 129, 3, 64), ctx, 32, 8, 128,
                                              dtype, True, block_size=16)))
        return runs
    if mutant == "causal-diagonal":
        return [("mixed causal", mixed_case(dtype, ctx))]
    runs = [("decode", decode_case(dtype, ctx, None))]
    if mutant is None:
        runs.append(("mixed causal", mixed_case(dtype, ctx)))
    return runs


if __name__ == "__main__":
    sys.exit(main())
