#!/usr/bin/env python3
"""GPU check of the flashinfer backends (issue 23): correct per sequence, timed, cross-timed.

Installs nothing: FlashInfer must be importable (scripts/flashinfer_wheels.sh makes the carry folders;
`source .fib/install.sh` on the GPU machine installs them and sets FLASHINFER_WORKSPACE_BASE).
Every point goes through attnbench.point.run_point as in a sweep: checked against the reference of
attnbench.inputs per sequence and query head (an `incorrect` row is not timed), then timed by
attnbench's measure under a short policy. The row keeps fi_path, fi_version and compile_s (the JIT
seconds of plan() and the first run(), large on a module's first use, small once cached).
Cases (bf16, head dim 128, shuffled 16-token pages):
  decode-main    B64 Hq32/Hkv8 ctx4096                     decode-long   B4 ctx32768
  decode-mixed   B32, contexts 256..8192 (seeded random)   prefill       B4 N4096 causal (ragged)
  prefill-paged  B4 N4096 causal, prompt in the cache      chunked       B8 chunk 512 at the end of ctx4096
Cross-check: decode-main (each decode path), prefill and chunked are timed again with FlashInfer's own
flashinfer.testing.bench_gpu_time (CUDA events, cold L2) on the same prepared callable; the ratio of
the two medians says whether attnbench times FlashInfer as its authors do.

  PYTHONPATH=.:$PYTHONPATH python3 scripts/gpu_flashinfer_check.py OUT_DIR      (on the GPU machine)
  python3 scripts/gpu_flashinfer_check.py OUT_DIR --dry-run                       (anywhere: the plan)
Writes OUT_DIR/flashinfer_rows.jsonl (a row per point, as it finishes) and OUT_DIR/flashinfer_check.json
(environment, rows, cross-check). Exit 0 when no row is failed or incorrect, 1 otherwise, 2 without a
GPU (unless --dry-run).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attnbench.backends import _flashinfer_api as api  # noqa: E402
from attnbench.backends import get_backend  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.config.sweep_config import TimingPolicy  # noqa: E402
from attnbench.inputs import build_inputs  # noqa: E402
from attnbench.point import base_row, run_point, skipped  # noqa: E402

BACKENDS = ("flashinfer", "flashinfer-notc", "flashinfer-fa3")
CROSS_CHECK = ("decode-main", "prefill", "chunked")  # cases timed again with bench_gpu_time
HQ, HKV, D, BS = 32, 8, 128, 16
# flashinfer.testing.bench_gpu_time's keywords (CUDA events, cold L2; tests/test_flashinfer_api.py
# binds them to the installed signature)
BENCH_KWARGS = {"dry_run_time_ms": 25, "repeat_time_ms": 200, "cold_l2_cache": True, "enable_cupti": False,
                "use_cuda_graph": False}


def cases() -> list[tuple[str, Case]]:
    rng = random.Random(23)
    mixed = tuple(rng.randint(256, 8192) for _ in range(32))

    def c(phase: str, q: tuple[int, ...], kv: tuple[int, ...], causal: bool, paged: bool) -> Case:
        base = Case("fi-check", phase, q, kv, HQ, HKV, D, "bf16", causal, "list")
        return replace(base, block_size=BS, kv_layout="shuffled") if paged else base

    return [
        ("decode-main", c("decode", (1,) * 64, (4096,) * 64, False, True)),
        ("decode-long", c("decode", (1,) * 4, (32768,) * 4, False, True)),
        ("decode-mixed", c("decode", (1,) * 32, mixed, False, True)),
        ("prefill", c("prefill", (4096,) * 4, (4096,) * 4, True, False)),
        ("prefill-paged", c("prefill", (4096,) * 4, (4096,) * 4, True, True)),
        ("chunked", c("mixed", (512,) * 8, (4096,) * 8, True, True)),
    ]


# The keywords the backend passes (attnbench/backends/_flashinfer_calls.py), per wrapper method.
KEYWORDS = {
    "BatchDecodeWithPagedKVCacheWrapper": {
        "__init__": {"float_workspace_buffer", "kv_layout", "use_tensor_cores", "backend"},
        "_plan_impl": {"indptr", "indices", "last_page_len", "num_qo_heads", "num_kv_heads", "head_dim",
                       "page_size", "sm_scale", "pos_encoding_mode", "window_left", "logits_soft_cap",
                       "q_data_type", "kv_data_type"},
        "run": {"q", "paged_kv_cache", "out"}},
    "BatchPrefillWithPagedKVCacheWrapper": {
        "__init__": {"float_workspace_buffer", "kv_layout", "backend"},
        "plan": {"qo_indptr", "paged_kv_indptr", "paged_kv_indices", "paged_kv_last_page_len", "num_qo_heads",
                 "num_kv_heads", "head_dim_qk", "page_size", "causal", "sm_scale", "pos_encoding_mode",
                 "window_left", "logits_soft_cap", "q_data_type", "kv_data_type"},
        "run": {"q", "paged_kv_cache", "out"}},
    "BatchPrefillWithRaggedKVCacheWrapper": {
        "__init__": {"float_workspace_buffer", "kv_layout", "backend"},
        "plan": {"qo_indptr", "kv_indptr", "num_qo_heads", "num_kv_heads", "head_dim_qk", "causal",
                 "sm_scale", "pos_encoding_mode", "window_left", "logits_soft_cap", "q_data_type",
                 "kv_data_type"},
        "run": {"q", "k", "v", "out"}},
}


def missing_keywords(module: Any) -> dict[str, list[str]]:
    """Keywords the backend passes that the installed wrappers' signatures lack (empty: all there)."""
    import inspect

    missing = {}
    for cls_name, methods in KEYWORDS.items():
        cls = getattr(module, cls_name)
        for method, wanted in methods.items():
            fn = getattr(cls, method, None) or cls.plan
            have = set(inspect.signature(inspect.unwrap(fn)).parameters)
            if wanted - have:
                missing[f"{cls_name}.{method}"] = sorted(wanted - have)
    return missing


def bench_cross_check(backend_name: str, case: Case, inputs: Any, row: dict) -> dict:
    """FlashInfer's own timing of the same prepared call (JIT cached by now)."""
    from flashinfer.testing import bench_gpu_time

    prepared = get_backend(backend_name).prepare(case, inputs)
    times = bench_gpu_time(fn=prepared.run, **BENCH_KWARGS)
    fi_ms = statistics.median(times)
    ours = row.get("latency_ms_p50")
    return {"case": row["_label"], "backend": backend_name, "fi_path": prepared.info["fi_path"],
            "bench_gpu_time_ms_p50": fi_ms, "bench_gpu_time_samples": len(times),
            "attnbench_ms_p50": ours, "attnbench_over_bench_gpu_time": (ours / fi_ms) if ours else None}


def run(out_dir: Path, policy: TimingPolicy) -> tuple[list[dict], list[dict]]:
    dev = torch.device("cuda")
    rows: list[dict] = []
    cross: list[dict] = []
    sink = (out_dir / "flashinfer_rows.jsonl").open("a")
    previous = None
    for label, case in cases():
        t0 = time.perf_counter()
        # a paged case right after its contiguous twin reuses its tensors and reference
        inputs = build_inputs(case, dev, base=previous)
        previous = inputs if not case.paged else None
        build_s = round(time.perf_counter() - t0, 2)
        for name in BACKENDS:
            b = get_backend(name)
            if not b.wants(case):
                continue
            ok, why = b.available(dev.type)
            if ok:
                ok, why = b.supports(case)
            row = run_point(case, b, inputs, policy, {}) if ok else skipped(base_row(case, b, dev.type), why)
            row = {**row, "_label": label, "_inputs_build_s": build_s}
            rows.append(row)
            sink.write(json.dumps({k: v for k, v in row.items() if k != "samples_ms"}, default=str) + "\n")
            sink.flush()
            print(line(row), flush=True)
            if row["status"] == "ok" and label in CROSS_CHECK:
                try:
                    cross.append(bench_cross_check(name, case, inputs, row))
                except Exception as err:  # noqa: BLE001 - the cross-check must not lose the rows
                    cross.append({"case": label, "backend": name, "error": " ".join(str(err).split())[:300]})
                print(f"    bench_gpu_time: {cross[-1]}", flush=True)
        del inputs
        if previous is None:
            torch.cuda.empty_cache()
    sink.close()
    return rows, cross


def line(row: dict) -> str:
    parts = [f"{row['_label']:14s} {row['backend']:16s} {row['status']:9s}"]
    for key, unit in (("latency_ms_p50", "ms"), ("hbm_gbps", "GB/s"), ("tflops", "TFLOP/s"),
                      ("rel_err", "rel_err"), ("compile_s", "s JIT")):
        if row.get(key) is not None:
            parts.append(f"{row[key]:.4g} {unit}")
    if row.get("fi_path"):
        parts.append(f"[{row['fi_path']}/{row.get('fi_backend')}] built={row.get('fi_jit_built')}")
    if row["status"] != "ok":
        parts.append(str(row.get("reason", ""))[:200])
    return "  ".join(parts)


def dry_run() -> int:
    lib, why = api.detect()
    print(f"flashinfer: {lib.version if lib else why}")
    if lib:
        print(f"keywords the installed wrappers lack: {missing_keywords(lib.module) or 'none'}")
    cache = api.jit_dir(lib.version if lib else None, lib)
    print(f"JIT: nvcc {api.find_nvcc()}, ninja {api.find_ninja()}, cache {cache}")
    for label, case in cases():
        cross = " (+ bench_gpu_time)" if label in CROSS_CHECK else ""
        print(f"{label:14s} {case.case_id}{cross}")
        for name in BACKENDS:
            b = get_backend(name)
            if b.wants(case):
                ok, why = b.supports(case) if lib else (True, "")
                print(f"    {name:16s} {b.path(case) if ok else 'skip: ' + why}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="print the plan; no GPU needed")
    ap.add_argument("--max-time", type=float, default=0.3, help="attnbench sampling seconds per point")
    args = ap.parse_args()
    if args.dry_run:
        return dry_run()
    if not torch.cuda.is_available():
        print("no CUDA GPU visible: this check runs on the GPU machine (--dry-run prints the plan)",
              file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    lib, why = api.detect()
    major, minor = torch.cuda.get_device_capability()
    env = {"gpu": torch.cuda.get_device_name(), "arch": f"sm_{major}{minor}", "torch": torch.__version__,
           "cuda": torch.version.cuda, "flashinfer": lib.version if lib else why,
           "status": api.status_line(), "missing_keywords": missing_keywords(lib.module) if lib else None}
    print(env, flush=True)
    policy = TimingPolicy(max_time_s=args.max_time, max_samples=100, target_rel_ci=0.02)
    t0 = time.perf_counter()
    rows, cross = run(args.out_dir, policy)
    env["wall_s"] = round(time.perf_counter() - t0, 1)
    env["jit_s_total"] = round(sum(r.get("compile_s") or 0.0 for r in rows), 1)
    slim = [{k: v for k, v in r.items() if k != "samples_ms"} for r in rows]
    (args.out_dir / "flashinfer_check.json").write_text(
        json.dumps({"env": env, "rows": slim, "cross_check": cross}, indent=1, default=str))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print(f"rows by status: {counts}; wall {env['wall_s']} s of which JIT+first calls {env['jit_s_total']} s")
    return 1 if any(r["status"] in ("failed", "incorrect") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
