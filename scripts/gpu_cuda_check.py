"""Correctness and speed of the CUDA kernels (cuda-paged v1/v2, cuda-flash) on the GPU present.

    PYTHONPATH=. python3 scripts/gpu_cuda_check.py [--out DIR] [--sanitizers memcheck,racecheck] [--quick]
    PYTHONPATH=. python3 scripts/gpu_cuda_check.py --dry-run --out DIR   # CPU: inputs and checks only

1. correctness on fresh random inputs (block tails and spare pool blocks hold random junk, outputs are
   poisoned with NaN before each run), judged by attnbench.reference.check_output: every (sequence,
   query head) against the harness's reference, within a small factor of a plain PyTorch
   implementation's error in the case's dtype; each check records its worst (sequence, head) and
   that cell's ratio of error to allowed. Paged decode over every block size x head dim x dtype x
   GQA ratio, odd context lengths (1, 17, 129, 1000, 32768), shuffled tables, v1 and v2 (small
   partitions, so several are merged); flash forward over head dims, dtypes, causal/full, varlen,
   q_len != kv_len, GQA, every tile configuration; paged decode over an fp8 e4m3 cache (per-tensor and
   per-KV-head scales, the pool quantised, junk included), judged against the reference over the
   dequantised cache, where the implementation reads fp8 (tc; under simt it logs the skip);
2. timing (triton do_bench, median, L2 flushed between samples) against the measured copy bandwidth
   and torch SDPA flash: the issue's three targets and a few neighbours; fp8 against bf16 on the decode
   targets (tokens/s ratio, bytes at one per K/V element);
3. compute-sanitizer (memcheck; racecheck on request) on a small case, tables padded with an invalid id.
The fp8 rows have keys of their own (paged_fp8_correctness, paged_fp8_timing): scripts/h200_session/c1.sh
picks the study's implementation from the fp16/bf16 rows as before; the exit code counts them all.
Writes DIR/cuda_check.json and prints a summary table last. Kernels go through the backends'
prepare()/run(), the path the harness takes. --dry-run (no GPU needed) builds small cases through the
same constructors on the CPU and checks the textbook `naive` backend on them, and that poisoned or
truncated outputs are caught: it tests the script's inputs and bookkeeping, not the CUDA kernels.

One file (~650 lines) on purpose: it is one device call's whole check, carried and run as one command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench import (
    cuda_build,  # noqa: E402
    cuda_lib,  # noqa: E402
)
from attnbench.backends.cuda_flash import CONFIGS, CudaFlash  # noqa: E402
from attnbench.backends.cuda_paged import CudaPaged  # noqa: E402
from attnbench.case import KV_SCALES, Case  # noqa: E402
from attnbench.inputs import Inputs, PagedKV, build_inputs, cumulative  # noqa: E402
from attnbench.kv_quant import quantise  # noqa: E402
from attnbench.metrics import min_hbm_bytes  # noqa: E402
from attnbench.reference import ErrorCheck, check_output, error_baseline, reference_attention  # noqa: E402

DT = {"bf16": torch.bfloat16, "fp16": torch.float16}
DEV = "cuda"  # --dry-run switches to "cpu"
LOG: list[str] = []


def log(msg: str) -> None:
    print(msg, flush=True)
    LOG.append(msg)


# ---- inputs and references ------------------------------------------------------------------------
def rand(shape: tuple[int, ...], dtype: str, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=DEV, dtype=torch.float32).to(DT[dtype])


def paged_case(kv_lens, hq, hkv, d, dtype, bs, seed=0, pad_value=0, kv_scale=None):
    """Case + Inputs for a decode step over a shuffled pool with spare junk blocks; returns (case, inputs).

    The reference and error baseline come from attnbench.reference, computed from the packed K/V
    that the table gathers from the pool (the tokens a kernel must read). kv_scale (per-tensor |
    per-head): the pool is stored as fp8 e4m3 with its scales (attnbench.kv_quant), the reference made
    from the dequantised values.
    """
    b = len(kv_lens)
    case = Case(
        workload="check",
        phase="decode",
        q_lens=(1,) * b,
        kv_lens=tuple(kv_lens),
        num_q_heads=hq,
        num_kv_heads=hkv,
        head_dim=d,
        dtype=dtype,
        causal=True,
        block_size=bs,
        seed=seed,
        kv_dtype="auto" if kv_scale is None else "fp8_e4m3",
        kv_scale=kv_scale,
    )
    gen = torch.Generator(device=DEV).manual_seed(seed)
    q = rand((b, hq, d), dtype, gen)
    nbs = [math.ceil(n / bs) for n in kv_lens]
    pool = sum(nbs) + 3  # spare blocks full of junk
    k_cache = rand((pool, bs, hkv, d), dtype, gen)  # junk everywhere until overwritten
    v_cache = rand((pool, bs, hkv, d), dtype, gen)
    k_scale = v_scale = None
    if kv_scale is not None:
        k_cache, k_scale = quantise(k_cache, "fp8_e4m3", kv_scale)
        v_cache, v_scale = quantise(v_cache, "fp8_e4m3", kv_scale)
    perm = torch.randperm(pool, generator=torch.Generator().manual_seed(seed + 1))
    tables = torch.full((b, max(nbs)), pad_value, dtype=torch.int32)
    ks, vs = [], []
    nxt = 0
    for i, n in enumerate(kv_lens):
        ids = perm[nxt : nxt + nbs[i]]
        nxt += nbs[i]
        tables[i, : nbs[i]] = ids.to(torch.int32)
        # token j of sequence i lives at block ids[j // bs], slot j % bs
        kk = k_cache[ids.to(DEV)].reshape(-1, hkv, d)[:n]
        vv = v_cache[ids.to(DEV)].reshape(-1, hkv, d)[:n]
        ks.append(kk)
        vs.append(vv)
    lens = torch.tensor(kv_lens, dtype=torch.int32, device=DEV)
    paged = PagedKV(k_cache, v_cache, tables.to(DEV), lens, bs, {})
    k, v = torch.cat(ks), torch.cat(vs)
    cu_q, cu_k = cumulative((1,) * b, DEV), cumulative(tuple(kv_lens), DEV)
    ref = reference_attention(case, q, k, v, cu_q.tolist(), cu_k.tolist(), k_scale, v_scale)
    inputs = Inputs(
        case=case,
        q=q,
        k=k,
        v=v,
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        reference=ref,
        error_baseline=error_baseline(case, q, k, v, cu_q, cu_k, ref, k_scale, v_scale),
        paged=paged,
        k_scale=k_scale,
        v_scale=v_scale,
    )
    return case, inputs


def flash_case(q_lens, kv_lens, hq, hkv, d, dtype, causal, seed=0):
    """Case + Inputs (the harness's build_inputs: random packed Q/K/V, reference, error baseline)."""
    phase = "prefill" if tuple(q_lens) == tuple(kv_lens) else "mixed"
    case = Case(
        workload="check",
        phase=phase,
        q_lens=tuple(q_lens),
        kv_lens=tuple(kv_lens),
        num_q_heads=hq,
        num_kv_heads=hkv,
        head_dim=d,
        dtype=dtype,
        causal=causal,
        seed=seed,
    )
    return case, build_inputs(case, DEV)


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def run_checked(backend, case, inputs) -> tuple[ErrorCheck, Any, torch.Tensor]:
    """prepare, run once, poison the output with NaN, run again (every element must be rewritten).

    Returns the check, the prepared backend and the packed output.
    """
    prep = backend.prepare(case, inputs)
    out = prep.run()
    out.fill_(float("nan"))
    out = prep.run()
    sync()
    packed = prep.to_packed(out)
    return check_output(packed, inputs), prep, packed


def check_fields(name: str, check: ErrorCheck) -> dict[str, Any]:
    """A check as flat row keys: `name` keeps the (worst cell's) relative error, as rows always had."""
    fields = {
        name: check.rel_err,
        f"{name}_ratio": check.ratio,  # error / allowed in the worst cell; > 1 is incorrect
        f"{name}_allowed": check.allowed,
        f"{name}_seq": check.seq,
        f"{name}_head": check.head,
    }
    if not check.ok:
        fields[f"{name}_reason"] = check.reason
    return fields


def describe(check: ErrorCheck) -> str:
    if check.ratio is None:
        return check.reason
    return (
        f"err {check.rel_err:.1e} = {check.ratio:.2f}x allowed (seq {check.seq}, head {check.head})"
        + ("" if check.ok else " -> incorrect")
    )


def ratio_of(check: ErrorCheck) -> float:
    """The check's ratio for ranking; a non-finite output ranks worst."""
    return math.inf if check.ratio is None or math.isnan(check.ratio) else check.ratio


def set_env(**kw) -> None:
    for k, v in kw.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)


# ---- 1. correctness ---------------------------------------------------------------------------------
def group_row(label: str, base: dict[str, Any], checks: dict[str, ErrorCheck]) -> dict[str, Any]:
    """One correctness group (a case, several variants or configs): its row, logged per check."""
    row: dict[str, Any] = dict(base, label=label, ok=all(c.ok for c in checks.values()))
    for name, check in checks.items():
        row.update(check_fields(name, check))
    worst = max(checks, key=lambda name: ratio_of(checks[name]))
    row.update(worst=worst, worst_ratio=checks[worst].ratio, worst_seq=checks[worst].seq,
               worst_head=checks[worst].head)
    line = ", ".join(f"{name} {describe(check)}" for name, check in checks.items())
    log(f"CHECK {label}: {line}")
    if not row["ok"]:
        log(f"FAIL {label}: " + "; ".join(f"{n} {c.reason}" for n, c in checks.items() if not c.ok))
    return row


def check_paged(quick: bool) -> list[dict]:
    be, rows = CudaPaged(), []
    lens = (1, 17, 129, 1000)
    gqa = ((4, 4), (8, 2), (16, 2)) if not quick else ((8, 2),)  # (Hq, Hkv): ratios 1, 4, 8
    for dtype in ("bf16", "fp16"):
        for d in (64, 128, 256):
            for bs in (8, 16, 32, 64, 128):
                for hq, hkv in gqa:
                    case, inputs = paged_case(lens, hq, hkv, d, dtype, bs, seed=len(rows))
                    checks = {}
                    for variant, part in (("v1", None), ("v2", 256)):
                        set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
                        checks[variant], _, _ = run_checked(be, case, inputs)
                    base = dict(kind="paged", dtype=dtype, d=d, bs=bs, hq=hq, hkv=hkv, lens=lens)
                    rows.append(group_row(f"paged {dtype} d{d} bs{bs} hq{hq}/hkv{hkv}", base, checks))
    # odd groups (padding heads, several head tiles), the long context, and v1 == v2 directly
    extra = [
        ((1, 33, 32768), 24, 4, 128, 16),
        ((17, 1000), 6, 1, 128, 32),
        ((129, 32768), 32, 8, 128, 16),
        ((1000, 5), 32, 1, 64, 16),
    ]
    for lens_x, hq, hkv, d, bs in extra:
        for dtype in ("bf16", "fp16"):
            case, inputs = paged_case(lens_x, hq, hkv, d, dtype, bs, seed=len(rows))
            outs, checks = {}, {}
            for variant, part in (("v1", None), ("v2", 1024), ("v2auto", None)):
                set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant[:2], ATTNBENCH_CUDA_PAGED_PARTITION=part)
                checks[variant], _, outs[variant] = run_checked(be, case, inputs)
            # v2 judged with v1's output in place of the reference (same rule, same allowed error): the
            # two differ only in how partitions are merged. Meaningful only once v1 itself is finite.
            if checks["v1"].ok:
                checks["v1_v2"] = check_output(outs["v2"], replace(inputs, reference=outs["v1"].float()))
            base = dict(kind="paged", dtype=dtype, d=d, bs=bs, hq=hq, hkv=hkv, lens=lens_x)
            rows.append(group_row(f"paged {dtype} d{d} bs{bs} hq{hq}/hkv{hkv} lens {lens_x}", base, checks))
    set_env(ATTNBENCH_CUDA_PAGED_VARIANT=None, ATTNBENCH_CUDA_PAGED_PARTITION=None)
    return rows


def fp8_skip_reason() -> str:
    """Why cuda-paged (under this ATTNBENCH_CUDA_PAGED_IMPL) cannot read an fp8 cache ("" when it can)."""
    probe = Case("check", "decode", (1,), (16,), 8, 2, 128, "bf16", True, block_size=16, kv_dtype="fp8_e4m3")
    return CudaPaged().supports(probe)[1]


def check_paged_fp8(quick: bool) -> list[dict]:
    """fp8 e4m3 K/V: head dims x dtypes x scale granularity x a few block sizes and GQA ratios, v1 and v2,
    then long contexts with padded head rows, v1 == v2 directly."""
    be, rows = CudaPaged(), []
    lens = (1, 17, 129, 1000)
    block_sizes, gqa = ((8, 16, 128), ((4, 4), (16, 2))) if not quick else ((16,), ((16, 2),))
    for dtype in ("bf16", "fp16"):
        for d in (64, 128, 256):
            for bs in block_sizes:
                for hq, hkv in gqa:
                    for scale in KV_SCALES:
                        case, inputs = paged_case(lens, hq, hkv, d, dtype, bs, seed=len(rows), kv_scale=scale)
                        checks = {}
                        for variant, part in (("v1", None), ("v2", 256)):
                            set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
                            checks[variant], _, _ = run_checked(be, case, inputs)
                        base = dict(kind="paged-fp8", kv_scale=scale, dtype=dtype, d=d, bs=bs, hq=hq, hkv=hkv,
                                    lens=lens)
                        label = f"paged fp8 {scale} {dtype} d{d} bs{bs} hq{hq}/hkv{hkv}"
                        rows.append(group_row(label, base, checks))
    for lens_x, hq, hkv in (((1, 33, 32768), 24, 4), ((129, 32768), 32, 8)):
        for dtype in ("bf16", "fp16"):
            for scale in KV_SCALES:
                case, inputs = paged_case(lens_x, hq, hkv, 128, dtype, 16, seed=len(rows), kv_scale=scale)
                outs, checks = {}, {}
                for variant, part in (("v1", None), ("v2", 1024), ("v2auto", None)):
                    set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant[:2], ATTNBENCH_CUDA_PAGED_PARTITION=part)
                    checks[variant], _, outs[variant] = run_checked(be, case, inputs)
                if checks["v1"].ok:
                    checks["v1_v2"] = check_output(outs["v2"], replace(inputs, reference=outs["v1"].float()))
                base = dict(kind="paged-fp8", kv_scale=scale, dtype=dtype, d=128, bs=16, hq=hq, hkv=hkv,
                            lens=lens_x)
                rows.append(group_row(f"paged fp8 {scale} {dtype} d128 bs16 hq{hq}/hkv{hkv} lens {lens_x}",
                                      base, checks))
    set_env(ATTNBENCH_CUDA_PAGED_VARIANT=None, ATTNBENCH_CUDA_PAGED_PARTITION=None)
    return rows


def check_flash(quick: bool) -> list[dict]:
    be, rows = CudaFlash(), []
    shapes = [
        ((1, 17, 129, 300), (1, 17, 129, 300), 8, 2),  # varlen prefill, GQA 4
        ((5, 64, 130), (100, 64, 1000), 4, 4),  # chunk at the end of a longer context
        ((257,), (257,), 8, 1),
    ]  # MQA
    configs = list(CONFIGS) if not quick else [0]
    for dtype in ("bf16", "fp16"):
        for d in (64, 128):
            for causal in (False, True):
                for ql, kl, hq, hkv in shapes:
                    case, inputs = flash_case(ql, kl, hq, hkv, d, dtype, causal, seed=len(rows))
                    checks = {}
                    for cfg in configs:
                        set_env(ATTNBENCH_CUDA_FLASH_CONFIG=cfg)
                        checks[f"cfg{cfg}"], _, _ = run_checked(be, case, inputs)
                    base = dict(kind="flash", dtype=dtype, d=d, causal=causal, q_lens=ql, kv_lens=kl, hq=hq,
                                hkv=hkv)
                    label = f"flash {dtype} d{d} causal={causal} q{ql} k{kl} hq{hq}/hkv{hkv}"
                    rows.append(group_row(label, base, checks))
    set_env(ATTNBENCH_CUDA_FLASH_CONFIG=None)
    return rows


def correctness_summary(kind: str, groups: list[dict]) -> str:
    """One line per kind: groups ok, and the worst check's ratio to allowed and where it was."""
    if not groups:
        return f"correctness {kind}: no groups"
    n_bad = sum(not r["ok"] for r in groups)
    worst = max(groups, key=lambda r: math.inf if r["worst_ratio"] is None else r["worst_ratio"])
    ratio = "non-finite output" if worst["worst_ratio"] is None else f"{worst['worst_ratio']:.2f}x allowed"
    return (
        f"correctness {kind}: {len(groups) - n_bad}/{len(groups)} groups ok, worst {ratio} "
        f"({worst['worst']} of {worst['label']}, seq {worst['worst_seq']}, head {worst['worst_head']})"
    )


# ---- 2. timing --------------------------------------------------------------------------------------
def bench_ms(fn) -> float:
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=150, return_mode="median"))


def copy_gbps() -> float:
    x = torch.empty(1 << 30, dtype=torch.uint8, device=DEV).random_()
    y = torch.empty_like(x)
    ms = bench_ms(lambda: y.copy_(x))
    return 2 * x.numel() / (ms * 1e-3) / 1e9


def paged_bytes(case: Case) -> int:
    """Minimum bytes (the harness model: Q + K + V + O + tables)."""
    return min_hbm_bytes(case)


def time_paged(copy: float, quick: bool) -> list[dict]:
    be, rows = CudaPaged(), []
    runs = [(64, 4096, 16, ("auto", "v1", "v2")), (4, 32768, 16, ("auto", "v1", "v2", 1024, 4096))]
    if not quick:
        runs += [(64, 4096, bs, ("auto",)) for bs in (8, 32, 128)] + [(8, 8192, 16, ("auto", "v1"))]
    for batch, ctx, bs, variants in runs:
        case, inputs = paged_case((ctx,) * batch, 32, 8, 128, "bf16", bs, seed=7)
        nbytes = paged_bytes(case)
        for v in variants:
            part = v if isinstance(v, int) else None
            variant = "v2" if part else (None if v == "auto" else v)
            set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
            check, prep, _ = run_checked(be, case, inputs)
            ms = bench_ms(prep.run)
            gbps = nbytes / (ms * 1e-3) / 1e9
            label = prep.info["variant"]
            if "partition_tokens" in prep.info:
                label += f" P{prep.info['partition_tokens']}"
            rows.append(
                dict(
                    kind="paged",
                    batch=batch,
                    ctx=ctx,
                    bs=bs,
                    asked=str(v),
                    variant=label,
                    ms=ms,
                    gbps=gbps,
                    of_copy=gbps / copy,
                    ok=check.ok,
                    reason=check.reason,
                    **check.row_fields(),
                )
            )
            log(
                f"paged B{batch} ctx{ctx} bs{bs} {v:>6}->{label:<10} {ms:8.4f} ms {gbps:7.0f} GB/s "
                f"{100 * gbps / copy:5.1f}% of copy  {describe(check)}"
            )
            if not check.ok:
                log(f"FAIL paged timing B{batch} ctx{ctx} bs{bs} {v}: {check.reason}")
        del inputs
        torch.cuda.empty_cache()
    set_env(ATTNBENCH_CUDA_PAGED_VARIANT=None, ATTNBENCH_CUDA_PAGED_PARTITION=None)
    return rows


def time_paged_fp8(copy: float, quick: bool) -> list[dict]:
    """The decode targets (Hq32 Hkv8 D128 bf16 queries, automatic variant) with a bf16 cache and an fp8 one:
    time, bandwidth at the byte model's one byte per fp8 element, and tokens/s against bf16's."""
    be, rows = CudaPaged(), []
    runs = [(64, 4096, 16), (4, 32768, 16)] + ([(64, 4096, 128), (8, 8192, 16)] if not quick else [])
    for batch, ctx, bs in runs:
        bf16_ms = None
        for kv_scale in (None, *KV_SCALES):
            case, inputs = paged_case((ctx,) * batch, 32, 8, 128, "bf16", bs, seed=7, kv_scale=kv_scale)
            check, prep, _ = run_checked(be, case, inputs)
            ms = bench_ms(prep.run)
            bf16_ms = ms if kv_scale is None else bf16_ms
            gbps = paged_bytes(case) / (ms * 1e-3) / 1e9
            kv, variant = kv_scale or "bf16", prep.info["variant"]
            rows.append(dict(kind="paged-fp8", batch=batch, ctx=ctx, bs=bs, kv=kv, variant=variant, ms=ms,
                             gbps=gbps, of_copy=gbps / copy, tokens_per_s=batch / (ms * 1e-3),
                             vs_bf16=bf16_ms / ms, ok=check.ok, reason=check.reason, **check.row_fields()))
            log(f"paged fp8 B{batch} ctx{ctx} bs{bs} {kv:>10} {variant} {ms:8.4f} ms {gbps:7.0f} GB/s "
                f"{100 * gbps / copy:5.1f}% of copy, {bf16_ms / ms:4.2f}x bf16 tokens/s  {describe(check)}")
            if not check.ok:
                log(f"FAIL paged fp8 timing B{batch} ctx{ctx} bs{bs} {kv}: {check.reason}")
            del inputs
        torch.cuda.empty_cache()
    return rows


def time_flash(quick: bool) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    be, rows = CudaFlash(), []
    b, h, n, d = 4, 32, 4096, 128
    for causal in (False, True):
        case, inputs = flash_case((n,) * b, (n,) * b, h, h, d, "bf16", causal, seed=3)
        flops = 4 * n * n * d * h * b // (2 if causal else 1)
        qb = inputs.q.view(b, n, h, d).transpose(1, 2)
        kb = inputs.k.view(b, n, h, d).transpose(1, 2)
        vb = inputs.v.view(b, n, h, d).transpose(1, 2)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            ms = bench_ms(lambda q=qb, k=kb, v=vb, c=causal: sdpa(q, k, v, is_causal=c))
        rows.append(dict(kind="flash", impl="sdpa-flash", causal=causal, ms=ms, tflops=flops / ms / 1e9))
        log(
            f"flash B{b} H{h} N{n} D{d} causal={causal} sdpa-flash        {ms:8.3f} ms "
            f"{flops / ms / 1e9:6.1f} TFLOP/s"
        )
        for cfg in CONFIGS if not causal else (0, 2):
            set_env(ATTNBENCH_CUDA_FLASH_CONFIG=cfg)
            check, prep, _ = run_checked(be, case, inputs)
            ms = bench_ms(prep.run)
            rows.append(
                dict(
                    kind="flash",
                    impl=f"cuda cfg{cfg}",
                    causal=causal,
                    ms=ms,
                    tflops=flops / ms / 1e9,
                    ok=check.ok,
                    reason=check.reason,
                    **check.row_fields(),
                )
            )
            log(
                f"flash B{b} H{h} N{n} D{d} causal={causal} cuda cfg{cfg} {CONFIGS[cfg]:<19} {ms:8.3f} ms "
                f"{flops / ms / 1e9:6.1f} TFLOP/s  {describe(check)}"
            )
            if not check.ok:
                log(f"FAIL flash timing causal={causal} cfg{cfg}: {check.reason}")
        del inputs
    set_env(ATTNBENCH_CUDA_FLASH_CONFIG=None)
    return rows


# ---- 3. sanitizer -----------------------------------------------------------------------------------
def sanitize_case() -> int:
    """The small case run under compute-sanitizer: paged v1/v2 with invalid table padding, flash."""
    bad = 1 << 30  # a block id far outside the pool: reading a padding entry would fault
    case, inputs = paged_case((1, 17, 129), 8, 2, 128, "bf16", 16, pad_value=bad)
    checks = []
    for variant, part in (("v1", None), ("v2", 64)):
        set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
        checks.append(run_checked(CudaPaged(), case, inputs)[0])
    if not fp8_skip_reason():  # the fp8 tiles too (D 64: 4 chunks a row, its own swizzle)
        for d in (64, 128):
            case, inputs = paged_case((1, 17, 129), 8, 2, d, "bf16", 16, pad_value=bad, kv_scale="per-head")
            for variant, part in (("v1", None), ("v2", 64)):
                set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
                checks.append(run_checked(CudaPaged(), case, inputs)[0])
    for cfg in CONFIGS:
        set_env(ATTNBENCH_CUDA_FLASH_CONFIG=cfg)
        case, inputs = flash_case((5, 70), (9, 200), 4, 2, 128, "fp16", True)
        checks.append(run_checked(CudaFlash(), case, inputs)[0])
    print("sanitize-case checks:", [describe(c) for c in checks], flush=True)
    return 0 if all(c.ok for c in checks) else 3


def run_sanitizer(tool: str, timeout: int) -> dict:
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")  # every tensor its own allocation
    cmd = [
        "compute-sanitizer",
        "--tool",
        tool,
        "--error-exitcode",
        "9",
        sys.executable,
        __file__,
        "--sanitize-case",
    ]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        tail = (r.stdout + r.stderr).strip().splitlines()[-6:]
        res = dict(tool=tool, rc=r.returncode, seconds=time.perf_counter() - t0, tail=tail)
    except (subprocess.TimeoutExpired, FileNotFoundError) as e:
        res = dict(tool=tool, rc=None, seconds=time.perf_counter() - t0, tail=[repr(e)[:300]])
    log(f"compute-sanitizer {tool}: rc={res['rc']} ({res['seconds']:.0f} s) {' | '.join(res['tail'])}")
    return res


# ---- CPU dry run ------------------------------------------------------------------------------------
def last_key_dropped(case: Case, inputs: Inputs) -> torch.Tensor:
    """The reference with the last sequence's final key and value left out (a planted off-by-one),
    rounded to the case's dtype like a kernel's output."""
    cq, ck = inputs.cu_seqlens_q.tolist(), inputs.cu_seqlens_k.tolist()
    q = inputs.q[cq[-2] : cq[-1]]
    k, v = inputs.k[ck[-2] : ck[-1] - 1], inputs.v[ck[-2] : ck[-1] - 1]
    short = replace(case, q_lens=(q.shape[0],), kv_lens=(k.shape[0],), block_size=None)
    out = inputs.reference.clone()
    out[cq[-2] :] = reference_attention(short, q, k, v, [0, q.shape[0]], [0, k.shape[0]], inputs.k_scale,
                                        inputs.v_scale)
    return out.to(DT[case.dtype])


def dry_run() -> list[dict]:
    """The script's own inputs and bookkeeping on the CPU, with the textbook `naive` backend standing in
    for the kernels: it must pass, and a NaN element or a dropped last key in its output must not."""
    from attnbench.backends import get_backend

    naive, rows = get_backend("naive"), []
    for dtype in ("bf16", "fp16"):
        lens = (1, 17, 129, 1000)
        cases = {
            "paged": paged_case(lens, 8, 2, 64, dtype, 16, seed=len(rows)),
            "paged-fp8": paged_case(lens, 8, 2, 64, dtype, 16, seed=len(rows), kv_scale="per-head"),
            "flash": flash_case((1, 17, 129, 5), (1, 17, 129, 1000), 8, 2, 64, dtype, False, seed=len(rows)),
        }
        for kind, (case, inputs) in cases.items():
            honest, _, out = run_checked(naive, case, inputs)
            poisoned = out.clone()
            poisoned[-1, -1, -1] = float("nan")
            checks = {
                "naive": honest,
                "nan_element": check_output(poisoned, inputs),
                "last_key_dropped": check_output(last_key_dropped(case, inputs), inputs),
            }
            ok = honest.ok and not checks["nan_element"].ok and not checks["last_key_dropped"].ok
            row: dict[str, Any] = dict(kind=kind, dtype=dtype, kv_lens=case.kv_lens, ok=ok)
            for name, check in checks.items():
                row.update(check_fields(name, check))
            rows.append(row)
            line = ", ".join(f"{name} {describe(check)}" for name, check in checks.items())
            log(f"{'dry run' if ok else 'FAIL dry run'} {kind} {dtype}: {line}")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sanitizers", default="memcheck", help="comma list: memcheck,racecheck ('' = none)")
    ap.add_argument("--sanitizer-timeout", type=int, default=90)
    ap.add_argument("--sanitize-case", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: check the script's inputs and correctness bookkeeping on the CPU")
    args = ap.parse_args()
    if args.sanitize_case:
        return sanitize_case()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {}

    def save() -> None:  # after every section: a run cut short still leaves its numbers
        (out / "cuda_check.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "cuda_check.log").write_text("\n".join(LOG) + "\n")

    if args.dry_run:
        global DEV
        DEV = "cpu"
        result.update(device="cpu (dry run: naive backend, no CUDA kernels)", torch=torch.__version__)
        result["dry_run"] = dry_run()
        save()
        n_bad = sum(not r["ok"] for r in result["dry_run"])
        log(f"==== summary ====\ndry run: {len(result['dry_run']) - n_bad}/{len(result['dry_run'])} ok")
        save()
        return 0 if n_bad == 0 else 1

    props = torch.cuda.get_device_properties(0)
    t0 = time.perf_counter()
    lib = cuda_lib.load()
    log(
        f"device {props.name} ({props.multi_processor_count} SMs), torch {torch.__version__}, "
        f"nvcc {cuda_build.nvcc_release(cuda_build.find_nvcc())}, library {lib.path} "
        f"(load/build {time.perf_counter() - t0:.1f} s)"
    )
    result.update(device=props.name, sms=props.multi_processor_count, torch=torch.__version__)
    t = time.perf_counter()
    result["paged_correctness"] = check_paged(args.quick)
    save()
    result["flash_correctness"] = check_flash(args.quick)
    for kind in ("paged", "flash"):
        log(correctness_summary(kind, result[f"{kind}_correctness"]))
    log(f"correctness checked in {time.perf_counter() - t:.0f} s")
    save()
    copy = copy_gbps()
    result["copy_gbps"] = copy
    log(f"copy bandwidth (1 GiB device-to-device, read+write): {copy:.0f} GB/s")
    result["paged_timing"] = time_paged(copy, args.quick)
    save()
    result["flash_timing"] = time_flash(args.quick)
    save()
    # fp8 KV after the fp16/bf16 sections, so that what c1.sh decides by is complete first
    fp8_why = fp8_skip_reason()
    result["paged_fp8_correctness"] = [] if fp8_why else check_paged_fp8(args.quick)
    result["paged_fp8_timing"] = [] if fp8_why else time_paged_fp8(copy, args.quick)
    if fp8_why:
        result["paged_fp8_skipped"] = fp8_why
        log(f"SKIP paged fp8: {fp8_why}")
    else:
        log(correctness_summary("paged fp8", result["paged_fp8_correctness"]))
    save()
    keys = ("paged_correctness", "flash_correctness", "paged_timing", "flash_timing", "paged_fp8_correctness",
            "paged_fp8_timing")
    checked = [r for key in keys for r in result[key] if "ok" in r]  # sdpa timing rows carry no check
    n_bad = sum(not r["ok"] for r in checked)
    tools = [tool for tool in args.sanitizers.split(",") if tool]
    result["sanitizer"] = [run_sanitizer(tool, args.sanitizer_timeout) for tool in tools]
    save()
    log("==== summary ====")
    for line in LOG:
        if line.startswith(("paged B", "paged fp8 B", "flash B", "correctness", "copy", "compute-sanitizer",
                            "FAIL", "SKIP")):
            print(line)
    return 0 if n_bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
