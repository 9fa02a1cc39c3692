"""Sliding window, logit soft-cap and ALiBi in cuda-flash and cuda-paged (v1/v2), checked and timed on a GPU.

    PYTHONPATH=. python3 scripts/gpu_cuda_patterns_check.py OUT_DIR            # on the GPU machine
    PYTHONPATH=. python3 scripts/gpu_cuda_patterns_check.py OUT_DIR --dry-run  # CPU: cases and checks only

1. build: the CUDA library for this GPU (attnbench.cuda_build, cached), and its build time;
2. correctness through the backends' prepare()/run() (the harness's path), outputs NaN-poisoned between
   a first and a checked call, each (sequence, query head) against a float64 rule: attnbench.reference
   check_output when the reference already implements the patterns (decided at start-up by comparing
   it with tests/pattern_oracle.py on a small windowed soft-capped case), else the local float64
   oracle with a per-cell relative L2 bound per dtype (recorded in every row).
   cuda-paged: v1 and v2 (small partitions, so partitions before the window exist), shuffled and
   contiguous block layouts, block sizes 8/16/32, GQA 32:8 and MHA, contexts 1 .. 32k mixed in one
   batch, window 4096 + softcap 50 (+ ALiBi), window 0, window 100 + softcap 1, softcap 1 alone;
   cuda-flash: prefill and chunked prefill (q at the end of 8k-16k contexts), every tile config,
   windows 0/100/4096, softcap 50 and 1, ALiBi with window 4096;
3. timing with attnbench.measure.time_callable (the harness's timer): decode at 8k-32k contexts, full
   vs window 4096 (vs + softcap 50, and softcap alone), with the speed-up and the KV bytes each reads;
   the first call of a new window size, showing the same library serves it (no rebuild);
4. planted faults: tests/mutation.py CUDA_PATTERN_MUTANTS (window edge off by one, first window
   partition not merged, partial tile skipped, soft-cap ignored, ALiBi wrong head or distance), each
   built into its own library and run on small windowed soft-capped (and ALiBi) cases; each must
   fail the check (--skip-mutants to leave out);
5. compute-sanitizer memcheck on one small windowed case of each kernel (when it is on PATH).
Writes OUT_DIR/cuda_patterns.json (after every section) and OUT_DIR/log.txt; exit 1 if a check failed.
--dry-run (no GPU) runs the same case lists, small, through cpu-paged (window/softcap/alibi in C++),
shows a planted wrong window is caught, and checks the script's bookkeeping, not the CUDA kernels.

One file (~470 lines) on purpose: it is one device call's whole check, carried and run as one command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench.case import Case  # noqa: E402
from attnbench.inputs import Inputs, build_inputs  # noqa: E402
from attnbench.patterns import alibi_slopes  # noqa: E402
from tests.pattern_oracle import pattern_attention, worst_cell_error  # noqa: E402

# Per-(sequence, head) relative L2 error allowed by the local oracle rule: a few times what rounding
# the output and P to the dtype costs (bf16 2^-9, fp16 2^-12 per element), with room for tanh.approx's
# ~5e-4 relative logit error (common.cuh).
TOL = {"bf16": 1.2e-2, "fp16": 3e-3, "fp32": 1e-5}
LOG: list[str] = []


def log(msg: str) -> None:
    print(msg, flush=True)
    LOG.append(msg)


# ---- the rule ------------------------------------------------------------------------------------
def reference_has_patterns() -> bool:
    """Whether attnbench.reference already applies window and soft-cap (then check_output is the rule)."""
    case = Case("probe", "prefill", (9, 40), (9, 40), 4, 2, 64, "fp32", True, window=5, softcap=0.5)
    inputs = build_inputs(case, "cpu")
    cu_q, cu_k = inputs.cu_seqlens_q.tolist(), inputs.cu_seqlens_k.tolist()
    want = pattern_attention(case, inputs.q, inputs.k, inputs.v, cu_q, cu_k)
    return bool(torch.allclose(inputs.reference.double().cpu(), want, atol=1e-6, rtol=1e-6))


class Rule:
    def __init__(self, use_reference: bool):
        self.use_reference = use_reference
        self._expected: dict[Case, torch.Tensor] = {}  # the oracle's output for the last case checked
        self.name = "attnbench.reference.check_output" if use_reference else "tests/pattern_oracle.py float64"

    def check(self, case: Case, inputs: Inputs, out: torch.Tensor) -> dict[str, Any]:
        if self.use_reference:
            from attnbench.reference import check_output

            c = check_output(out, inputs)
            return {"ok": bool(c.ok), "rule": self.name, "detail": str(c)[:300]}
        cu_q, cu_k = inputs.cu_seqlens_q.tolist(), inputs.cu_seqlens_k.tolist()
        if case not in self._expected:
            slopes = alibi_slopes(case.num_q_heads) if case.alibi else None
            self._expected = {case: pattern_attention(case, inputs.q, inputs.k, inputs.v, cu_q, cu_k, slopes)}
        want = self._expected[case]
        err, seq, head = worst_cell_error(out, want, cu_q)
        tol = TOL[case.dtype]
        return {"ok": err <= tol, "rule": self.name, "worst_rel_err": err, "tol": tol, "worst_seq": seq,
                "worst_head": head, "worst_kv_len": case.kv_lens[seq] if seq >= 0 else None}


# ---- cases ---------------------------------------------------------------------------------------
# Gemma-2's cap of 50 barely bends scores of size ~1 (50 tanh(s / 50) - s ~ s^3 / 7500), so a kernel
# that ignored it would pass; the cases with a cap of 1 are the ones that test the soft-cap itself.
PAGED_PATTERNS = [dict(window=4096, softcap=50.0), dict(window=0), dict(window=100, softcap=1.0),
                  dict(softcap=1.0), dict(window=4096, softcap=50.0, alibi=True)]
FLASH_PATTERNS = [dict(window=4096, softcap=50.0), dict(window=0), dict(window=100, softcap=1.0),
                  dict(window=4096, alibi=True)]


def paged_cases(small: bool) -> list[tuple[str, Case]]:
    kv = (1, 17, 300, 1000, 2500) if small else (1, 17, 300, 4097, 8192, 20000, 32768)
    win_scale = 0.1 if small else 1.0  # the dry run's contexts are 10x shorter, so are its windows
    cases = []
    for pattern in PAGED_PATTERNS:
        pat = {k: (max(0, int(v * win_scale)) if k == "window" else v) for k, v in pattern.items()}
        if small and pat.get("alibi"):
            continue  # cpu-paged's ALiBi has its own tests; the dry run keeps to window and soft-cap
        for bs in (8, 16, 32):
            for layout in ("shuffled", "contiguous"):
                for hq, hkv, d, dtype in ((32, 8, 128, "bf16"), (8, 8, 64, "fp16")):
                    if small and (hq, bs) != (32, 16) and layout == "contiguous":
                        continue  # the dry run thins the grid (CPU time); the GPU runs all of it
                    case = Case("patterns", "decode", (1,) * len(kv), kv, hq, hkv, d, dtype, True,
                                block_size=bs, kv_layout=layout, **pat)
                    cases.append((f"decode bs{bs} {layout} {hq}:{hkv} d{d} {dtype} {case.pattern}", case))
    return cases


def flash_cases(small: bool) -> list[tuple[str, Case]]:
    scale = 0.1 if small else 1.0
    shapes = [("prefill", (1, 129, 1500), (1, 129, 1500)),
              ("mixed", (64, 130, 1), (8192, 16000, 9000))]
    cases = []
    for pattern in FLASH_PATTERNS:
        pat = {k: (max(0, int(v * scale)) if k == "window" else v) for k, v in pattern.items()}
        for phase, q, kv in shapes:
            if small:
                kv = tuple(max(qq, int(k * scale)) for qq, k in zip(q, kv, strict=True))
                q = tuple(min(qq, k) for qq, k in zip(q, kv, strict=True))
            for hq, hkv, d, dtype in ((16, 4, 128, "bf16"), (8, 8, 64, "fp16")):
                case = Case("patterns", phase, q, kv, hq, hkv, d, dtype, True, **pat)
                cases.append((f"{phase} {hq}:{hkv} d{d} {dtype} {case.pattern}", case))
    return cases


# ---- running --------------------------------------------------------------------------------------
def set_env(**kw: Any) -> None:
    for k, v in kw.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)


def poisoned_run(backend, case: Case, inputs: Inputs) -> tuple[torch.Tensor, dict]:
    """prepare, one call, NaN into its output buffer, a second call: what that second call wrote."""
    prepared = backend.prepare(case, inputs)
    first = prepared.run()
    first.fill_(float("nan"))
    out = prepared.to_packed(prepared.run())
    if out.is_cuda:
        torch.cuda.synchronize()
    return out, dict(prepared.info)


def check_all(rule: Rule, runs: list[tuple[str, Any, Case, dict]], device: str) -> list[dict]:
    """runs: (label, backend, case, env); inputs are built once per case and shared by its runs."""
    rows, cache = [], {}
    for label, backend, case, env in runs:
        set_env(**env)
        if case not in cache:
            cache = {case: build_inputs(case, device)}  # one case's inputs alive at a time
        inputs = cache[case]
        row: dict[str, Any] = {"label": label, "backend": backend.name, "pattern": case.pattern,
                               "env": {k: v for k, v in env.items() if v is not None}}
        t0 = time.perf_counter()
        try:
            out, info = poisoned_run(backend, case, inputs)
            row.update(rule.check(case, inputs, out))
            row["info"] = {k: v for k, v in info.items() if k != "kv_layout_used"}
        except Exception as e:  # a failing point is a row with its reason
            row.update(ok=False, error=f"{type(e).__name__}: {e}"[:400])
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        err = row.get("worst_rel_err")
        err_text = "" if err is None else f"err {err:.2e} (bound {row['tol']:.1e})"
        status = "ok  " if row["ok"] else "FAIL"
        log(f"{status} {backend.name:10s} {label} {row['env'] or ''} {err_text} {row.get('error', '')}")
    set_env(ATTNBENCH_CUDA_PAGED_VARIANT=None, ATTNBENCH_CUDA_PAGED_PARTITION=None,
            ATTNBENCH_CUDA_FLASH_CONFIG=None)
    return rows


def gpu_runs() -> list[tuple[str, Any, Case, dict]]:
    from attnbench.backends.cuda_flash import CONFIGS, CudaFlash
    from attnbench.backends.cuda_paged import CudaPaged

    runs = []
    for label, case in paged_cases(small=False):
        for variant, part in (("v1", None), ("v2", 256)):
            env = dict(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
            runs.append((f"{label} {variant}", CudaPaged(), case, env))
    for label, case in flash_cases(small=False):
        for cfg in CONFIGS:
            runs.append((f"{label} config{cfg}", CudaFlash(), case, dict(ATTNBENCH_CUDA_FLASH_CONFIG=cfg)))
    return runs


def dry_runs() -> list[tuple[str, Any, Case, dict]]:
    """The paged case list through cpu-paged (fp32/bf16 on CPU), the flash shapes as cpu-paged prefill."""
    from dataclasses import replace

    from attnbench.backends.cpu_paged import CpuPaged

    runs = [(label, CpuPaged(), case, {}) for label, case in paged_cases(small=True)]
    for label, case in flash_cases(small=True)[::2]:
        runs.append((label + " (as cpu-paged)", CpuPaged(), replace(case, block_size=16), {}))
    return runs


def gpu_plan_unsupported() -> list[str]:
    """Labels of GPU runs (checks and mutant cases) their backend's supports() would refuse (want none)."""
    return [f"{label}: {backend.supports(case)[1]}" for label, backend, case, _ in gpu_runs() + mutant_runs()
            if not backend.supports(case)[0]]


def planted_fault_caught(rule: Rule) -> bool:
    """The rule rejects a kernel whose window is one key too wide (cpu-paged called with window + 1)."""
    from attnbench import cpu_build
    from attnbench.backends.cpu_paged import query_tile

    case = Case("fault", "decode", (1, 1, 1), (5, 60, 300), 8, 2, 64, "fp32", True, block_size=16, window=20)
    inputs = build_inputs(case, "cpu")
    p, lib = inputs.paged, cpu_build.load()
    out = torch.full_like(inputs.q, float("nan"))
    per = lib.paged_scratch_floats(8, 2, 64, 16, query_tile(case))
    scratch = torch.empty(per)
    tables, lens = p.block_tables.to(torch.int32).contiguous(), p.kv_lens.to(torch.int32).contiguous()
    cu_q = inputs.cu_seqlens_q.to(torch.int32).contiguous()
    lib.paged_attention(out=out.data_ptr(), q=inputs.q.data_ptr(), k_cache=p.k_cache.data_ptr(),
                        v_cache=p.v_cache.data_ptr(), block_tables=tables.data_ptr(), kv_lens=lens.data_ptr(),
                        cu_seqlens_q=cu_q.data_ptr(), batch=3, num_q_heads=8, num_kv_heads=2, head_dim=64,
                        num_blocks=p.k_cache.shape[0], block_size=16, table_stride=tables.shape[1], dtype=0,
                        causal=True, scale=case.softmax_scale, query_tile=query_tile(case), num_threads=1,
                        scratch=scratch.data_ptr(), scratch_floats=scratch.numel(), window=21)
    return not rule.check(case, inputs, out)["ok"]


# ---- timing ---------------------------------------------------------------------------------------
def time_decode() -> list[dict]:
    from attnbench import cuda_lib
    from attnbench.backends.cuda_paged import CudaPaged
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.measure import time_callable

    policy = TimingPolicy(max_time_s=0.5, thermal=False)
    device = torch.device("cuda")
    rows = []
    lib_before = cuda_lib.load()
    for kv in ((8192,) * 16, (32768,) * 8, (8192, 16384, 32768, 32768)):
        base = None
        for pattern in (dict(), dict(window=4096), dict(window=4096, softcap=50.0), dict(softcap=50.0)):
            case = Case("patterns-time", "decode", (1,) * len(kv), kv, 32, 8, 128, "bf16", True,
                        block_size=16, **pattern)
            inputs = build_inputs(case, "cuda")
            t0 = time.perf_counter()
            prepared = CudaPaged().prepare(case, inputs)
            prepared.run()
            torch.cuda.synchronize()
            first_ms = (time.perf_counter() - t0) * 1e3
            timing = time_callable(prepared.run, device, policy)
            med = timing.summary()["latency_ms_p50"]
            attended = sum(min(k, (case.window if case.window is not None else k) + 1) for k in kv)
            kv_bytes = attended * 8 * 128 * 2 * 2  # K and V, Hkv heads x D x 2 bytes, per attended token
            row = {"kv_lens": list(kv), "pattern": case.pattern, "p50_ms": med, "first_call_ms": first_ms,
                   "variant": prepared.info.get("variant"),
                   "partition_tokens": prepared.info.get("partition_tokens"),
                   "kv_bytes_attended": kv_bytes, "gbps": kv_bytes / med / 1e6,
                   "same_library": cuda_lib.load() is lib_before, "samples": len(timing.samples_ms),
                   "stop": timing.stop_reason}
            if base is None:
                base = med
            row["speedup_vs_full"] = base / med
            rows.append(row)
            log(f"time decode kv={kv[0]}..{kv[-1]} x{len(kv)} {case.pattern:18s} {med:8.4f} ms "
                f"({row['gbps']:.0f} GB/s of attended KV) x{row['speedup_vs_full']:.2f} vs full, "
                f"{row['variant']}, first call {first_ms:.1f} ms, same library: {row['same_library']}")
    return rows


# ---- planted faults ----------------------------------------------------------------------------------
def mutant_runs() -> list[tuple[str, Any, Case, dict]]:
    from attnbench.backends.cuda_flash import CudaFlash
    from attnbench.backends.cuda_paged import CudaPaged

    paged = Case("mut", "decode", (1,) * 4, (1, 130, 700, 5000), 32, 8, 128, "bf16", True, block_size=16,
                 window=300, softcap=1.0)
    flash = Case("mut", "prefill", (300, 1000), (300, 1000), 16, 4, 128, "bf16", True, window=100,
                 softcap=1.0)
    # ALiBi apart: its steep slopes would hide faults 300 tokens back from most heads.
    paged_alibi = Case("mut", "decode", (1,) * 3, (40, 700, 3000), 32, 8, 128, "bf16", True, block_size=16,
                       alibi=True)
    flash_alibi = Case("mut", "mixed", (30, 200), (500, 900), 16, 4, 128, "bf16", True, alibi=True)
    paged_runs = []
    for impl in ("tc", "simt"):  # check_mutants keeps the runs of the implementation a mutant is in
        one = dict(ATTNBENCH_CUDA_PAGED_VARIANT="v1", ATTNBENCH_CUDA_PAGED_IMPL=impl)
        split = dict(one, ATTNBENCH_CUDA_PAGED_VARIANT="v2", ATTNBENCH_CUDA_PAGED_PARTITION=64)
        paged_runs += [(f"paged {impl} v1", CudaPaged(), paged, one),
                       (f"paged {impl} v2", CudaPaged(), paged, split),
                       (f"paged {impl} alibi", CudaPaged(), paged_alibi, one)]
    return [*paged_runs, ("flash", CudaFlash(), flash, {}), ("flash alibi", CudaFlash(), flash_alibi, {})]


def build_mutants(work: Path) -> tuple[dict[str, Path], float]:
    """One library per pattern mutant ('unit:mutant'), the other units' objects shared honest ones."""
    from concurrent.futures import ThreadPoolExecutor

    from attnbench import cuda_build
    from tests.mutation import CUDA_PATTERN_MUTANTS, write_cuda_mutant

    nvcc, arch, src = cuda_build.find_nvcc(), cuda_build.detect_arch(), cuda_build.cuda_src_dir()
    units = cuda_build.sources()
    t0 = time.perf_counter()
    (work / "honest").mkdir(parents=True, exist_ok=True)
    honest_objs = cuda_build._compile_objects(nvcc, arch, units, work / "honest", [])
    honest = dict(zip([u.name for u in units], honest_objs, strict=True))

    def one(job: tuple[str, str]) -> tuple[str, Path]:
        unit, mutant = job
        d = work / f"{Path(unit).stem}__{mutant}"
        d.mkdir(exist_ok=True)
        planted = write_cuda_mutant(src, unit, mutant, d)
        (obj,) = cuda_build._compile_objects(nvcc, arch, [planted], d, ["-I", str(src)])
        lib = d / cuda_build.LIB_NAME
        objs = [obj if name == unit else o for name, o in honest.items()]
        link = cuda_build._run([nvcc, "-shared", *cuda_build.gencode(arch), *map(str, objs), "-o", str(lib)])
        if link.returncode:
            raise cuda_build.BuildError(link.stderr)
        return f"{unit}:{mutant}", lib

    jobs = [(u, m) for u, ms in CUDA_PATTERN_MUTANTS.items() for m in ms]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        return dict(pool.map(one, jobs)), time.perf_counter() - t0


def check_mutants(rule: Rule, work: Path) -> list[dict]:
    """Each mutant library in turn behind cuda_lib.load() (the backends' path); caught = a check fails."""
    from attnbench import cuda_build, cuda_lib
    from tests.mutation import paged_mutant_impls

    arch = cuda_build.detect_arch()
    honest = cuda_lib.load()
    try:
        libs, seconds = build_mutants(work)
    except Exception as e:  # a failed build is a row, not a lost run
        log(f"mutants: build failed: {e}"[:400])
        return [{"mutant": None, "caught": False, "error": f"build: {e}"[:400]}]
    log(f"mutants: {len(libs)} built in {seconds:.0f} s")
    rows = []
    for name, lib in libs.items():
        cuda_lib._LOADED[arch] = cuda_lib.CudaLib(lib)
        unit = name.split(":")[0]
        paged = unit == "paged_attention.cu"
        impls = paged_mutant_impls(name.split(":")[1]) if paged else ()
        runs = [r for r in mutant_runs() if (r[1].name == "cuda-paged") == paged
                and (not paged or r[3]["ATTNBENCH_CUDA_PAGED_IMPL"] in impls)]
        if not runs:  # a mutant no case reaches proves nothing: a failure of this script, not a catch
            raise AssertionError(f"mutant {name}: no run of mutant_runs() exercises it")
        checks = check_all(rule, runs, "cuda")
        caught = any(not c["ok"] for c in checks)
        rows.append({"mutant": name, "caught": caught, "checks": checks})
        log(f"{'caught  ' if caught else 'SURVIVED'} {name}")
    cuda_lib._LOADED[arch] = honest
    return rows


# ---- sanitizer ------------------------------------------------------------------------------------
def sanitize_case() -> int:
    from attnbench.backends.cuda_flash import CudaFlash
    from attnbench.backends.cuda_paged import CudaPaged

    rule = Rule(False)
    paged = Case("san", "decode", (1, 1, 1), (1, 130, 700), 8, 2, 128, "bf16", True, block_size=16,
                 window=100, softcap=50.0)
    flash = Case("san", "mixed", (5, 70), (9, 400), 4, 2, 64, "fp16", True, window=50, softcap=50.0)
    runs = [(f"paged {impl} {v}", CudaPaged(), paged,
             dict(ATTNBENCH_CUDA_PAGED_VARIANT=v, ATTNBENCH_CUDA_PAGED_PARTITION=64 if v == "v2" else None,
                  ATTNBENCH_CUDA_PAGED_IMPL=impl))
            for impl in ("tc", "simt") for v in ("v1", "v2")]
    runs.append(("flash", CudaFlash(), flash, {}))
    rows = check_all(rule, runs, "cuda")
    return 0 if all(r["ok"] for r in rows) else 3


def run_sanitizer(timeout: int = 240) -> dict:
    if shutil.which("compute-sanitizer") is None:
        log("compute-sanitizer: not on PATH, skipped")
        return {"tool": "memcheck", "skipped": "compute-sanitizer not on PATH"}
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")  # every tensor its own allocation
    cmd = ["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "9", sys.executable, __file__,
           "unused", "--sanitize-case"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        tail = (r.stdout + r.stderr).strip().splitlines()[-8:]
        res = {"tool": "memcheck", "rc": r.returncode, "tail": tail}
    except subprocess.TimeoutExpired as e:
        res = {"tool": "memcheck", "rc": None, "tail": [repr(e)[:300]]}
    res["seconds"] = time.perf_counter() - t0
    log(f"compute-sanitizer memcheck: rc={res['rc']} ({res['seconds']:.0f} s) {' | '.join(res['tail'])}")
    return res


# ---- main -----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="directory for cuda_patterns.json and log.txt")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: cpu-paged stand-in, bookkeeping only")
    parser.add_argument("--sanitize-case", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-sanitizer", action="store_true")
    parser.add_argument("--skip-mutants", action="store_true", help="leave out the planted-fault builds")
    args = parser.parse_args()
    if args.sanitize_case:
        return sanitize_case()
    gpu = torch.cuda.is_available() and not args.dry_run
    if not gpu and not args.dry_run:
        print("error: no CUDA GPU visible; --dry-run checks this script on the CPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"mode": "gpu" if gpu else "dry-run", "torch": torch.__version__}

    def save() -> None:
        (args.out / "cuda_patterns.json").write_text(json.dumps(result, indent=1, default=str))
        (args.out / "log.txt").write_text("\n".join(LOG) + "\n")

    rule = Rule(reference_has_patterns())
    result["rule"] = rule.name
    log(f"rule: {rule.name}")
    if gpu:
        from attnbench import cuda_build

        result["device"] = torch.cuda.get_device_name()
        t0 = time.perf_counter()
        path = cuda_build.build()
        result["build"] = {"library": str(path), "seconds": time.perf_counter() - t0}
        log(f"build: {path} ({result['build']['seconds']:.1f} s)")
        save()
        result["correctness"] = check_all(rule, gpu_runs(), "cuda")
        save()
        result["timing"] = time_decode()
        save()
        if not args.skip_mutants:
            with tempfile.TemporaryDirectory(prefix="attnbench-pattern-mutants-") as work:
                result["mutants"] = check_mutants(rule, Path(work))  # libraries stay out of OUT_DIR
            save()
        if not args.skip_sanitizer:
            result["sanitizer"] = run_sanitizer()
    else:
        result["correctness"] = check_all(rule, dry_runs(), "cpu")
        result["planted_wrong_window_caught"] = planted_fault_caught(rule)
        log(f"planted fault (window one key too wide) caught: {result['planted_wrong_window_caught']}")
        unsupported = gpu_plan_unsupported()
        result["gpu_plan"] = {"runs": len(gpu_runs()) + len(mutant_runs()), "unsupported": unsupported}
        log(f"GPU plan: {result['gpu_plan']['runs']} runs, {len(unsupported)} refused by supports()")
        result["correctness"] += [{"label": u, "ok": False, "error": "refused by supports()"}
                                  for u in unsupported]
    rows = result["correctness"]
    failed = [r for r in rows if not r["ok"]]
    result["summary"] = {"checks": len(rows), "failed": len(failed)}
    san = result.get("sanitizer")
    sanitizer_ok = san is None or "skipped" in san or san.get("rc") == 0  # rc None: it timed out
    mutants_ok = all(m["caught"] for m in result.get("mutants", []))
    ok = not failed and result.get("planted_wrong_window_caught", True) and sanitizer_ok and mutants_ok
    verdict = "PASS" if ok else "FAIL"
    log(f"correctness: {len(rows) - len(failed)}/{len(rows)} ok ({rule.name}); overall {verdict}")
    save()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
