"""Correctness and speed of the CUDA kernels (cuda-paged v1/v2, cuda-flash) on the GPU present.

    PYTHONPATH=. python3 scripts/gpu_cuda_check.py [--out DIR] [--sanitizers memcheck,racecheck] [--quick]

1. correctness against a float64 reference on fresh random inputs (block tails and spare pool blocks
   hold random junk, outputs are poisoned with NaN before each run): paged decode over every block
   size x head dim x dtype x GQA ratio, odd context lengths (1, 17, 129, 1000, 32768), shuffled
   tables, v1 and v2 (small partitions, so several are merged); flash forward over head dims, dtypes,
   causal/full, varlen, q_len != kv_len, GQA, every tile configuration;
2. timing (triton do_bench, median, L2 flushed between samples) against the measured copy bandwidth
   and torch SDPA flash: the issue's three targets and a few neighbours;
3. compute-sanitizer (memcheck; racecheck on request) on a small case, tables padded with an invalid id.
Writes DIR/cuda_check.json and prints a summary table last. Kernels go through the backends'
prepare()/run(), the path the harness takes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench import cuda_build  # noqa: E402
from attnbench.backends.cuda_flash import CONFIGS, CudaFlash  # noqa: E402
from attnbench.backends.cuda_paged import CudaPaged  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.inputs import Inputs, PagedKV, cumulative  # noqa: E402
from attnbench.metrics import min_hbm_bytes  # noqa: E402

DT = {"bf16": torch.bfloat16, "fp16": torch.float16}
TOL = {"bf16": 1.2e-2, "fp16": 2.5e-3}  # ||out - ref|| / ||ref||
DEV = "cuda"
LOG: list[str] = []


def log(msg: str) -> None:
    print(msg, flush=True)
    LOG.append(msg)


# ---- inputs and references ------------------------------------------------------------------------
def rand(shape: tuple[int, ...], dtype: str, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, device=DEV, dtype=torch.float32).to(DT[dtype])


def paged_case(kv_lens, hq, hkv, d, dtype, bs, seed=0, pad_value=0):
    """Case + Inputs for a decode step over a shuffled pool; returns (case, inputs, float64 reference)."""
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
    )
    gen = torch.Generator(device=DEV).manual_seed(seed)
    q = rand((b, hq, d), dtype, gen)
    nbs = [math.ceil(n / bs) for n in kv_lens]
    pool = sum(nbs) + 3  # spare blocks full of junk
    k_cache = rand((pool, bs, hkv, d), dtype, gen)  # junk everywhere until overwritten
    v_cache = rand((pool, bs, hkv, d), dtype, gen)
    perm = torch.randperm(pool, generator=torch.Generator().manual_seed(seed + 1))
    tables = torch.full((b, max(nbs)), pad_value, dtype=torch.int32)
    ref = torch.empty((b, hq, d), dtype=torch.float64, device=DEV)
    group = hq // hkv
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
        kd = kk.double().repeat_interleave(group, dim=1)  # (n, hq, d)
        vd = vv.double().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[i].double(), kd) * d**-0.5
        ref[i] = torch.einsum("hn,nhd->hd", torch.softmax(scores, dim=-1), vd)
    lens = torch.tensor(kv_lens, dtype=torch.int32, device=DEV)
    paged = PagedKV(k_cache, v_cache, tables.to(DEV), lens, bs, {})
    inputs = Inputs(
        case=case,
        q=q,
        k=torch.cat(ks),
        v=torch.cat(vs),
        cu_seqlens_q=cumulative((1,) * b, DEV),
        cu_seqlens_k=cumulative(tuple(kv_lens), DEV),
        reference=ref.float(),
        paged=paged,
    )
    return case, inputs, ref


def flash_case(q_lens, kv_lens, hq, hkv, d, dtype, causal, seed=0, reference=True):
    b = len(q_lens)
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
    gen = torch.Generator(device=DEV).manual_seed(seed)
    q = rand((sum(q_lens), hq, d), dtype, gen)
    k = rand((sum(kv_lens), hkv, d), dtype, gen)
    v = rand((sum(kv_lens), hkv, d), dtype, gen)
    cu_q, cu_k = cumulative(tuple(q_lens), DEV), cumulative(tuple(kv_lens), DEV)
    ref = None
    if reference:
        ref = torch.empty(q.shape, dtype=torch.float64, device=DEV)
        cq, ck = cu_q.tolist(), cu_k.tolist()
        group = hq // hkv
        for i in range(b):
            qs = q[cq[i] : cq[i + 1]].double().transpose(0, 1)  # (hq, nq, d)
            kd = k[ck[i] : ck[i + 1]].double().repeat_interleave(group, dim=1).transpose(0, 1)
            vd = v[ck[i] : ck[i + 1]].double().repeat_interleave(group, dim=1).transpose(0, 1)
            nq, nk = qs.shape[1], kd.shape[1]
            rows = max(1, (256 << 20) // (8 * hq * nk))
            for r0 in range(0, nq, rows):
                r1 = min(nq, r0 + rows)
                s = qs[:, r0:r1] @ kd.transpose(1, 2) * d**-0.5
                if causal:
                    qpos = torch.arange(r0, r1, device=DEV)[:, None] + (nk - nq)
                    s.masked_fill_(torch.arange(nk, device=DEV)[None, :] > qpos, float("-inf"))
                ref[cq[i] + r0 : cq[i] + r1] = (torch.softmax(s, -1) @ vd).transpose(0, 1)
    inputs = Inputs(
        case=case,
        q=q,
        k=k,
        v=v,
        cu_seqlens_q=cu_q,
        cu_seqlens_k=cu_k,
        reference=ref.float() if ref is not None else q.float(),
    )
    return case, inputs, ref


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    o = out.double()
    if not torch.isfinite(o).all():
        return float("nan")
    return ((o - ref).norm() / ref.norm()).item()


def run_checked(backend, case, inputs, ref):
    """prepare, run once, poison the output with NaN, run again (every element must be rewritten)."""
    prep = backend.prepare(case, inputs)
    out = prep.run()
    out.fill_(float("nan"))
    out = prep.run()
    torch.cuda.synchronize()
    return rel_err(prep.to_packed(out), ref), prep


def set_env(**kw) -> None:
    for k, v in kw.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)


# ---- 1. correctness ---------------------------------------------------------------------------------
def check_paged(quick: bool) -> list[dict]:
    be, rows = CudaPaged(), []
    lens = (1, 17, 129, 1000)
    gqa = ((4, 4), (8, 2), (16, 2)) if not quick else ((8, 2),)  # (Hq, Hkv): ratios 1, 4, 8
    for dtype in ("bf16", "fp16"):
        for d in (64, 128, 256):
            for bs in (8, 16, 32, 64, 128):
                for hq, hkv in gqa:
                    case, inputs, ref = paged_case(lens, hq, hkv, d, dtype, bs, seed=len(rows))
                    errs = {}
                    for variant, part in (("v1", None), ("v2", 256)):
                        set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
                        errs[variant], _ = run_checked(be, case, inputs, ref)
                    ok = all(e <= TOL[dtype] for e in errs.values())
                    rows.append(
                        dict(kind="paged", dtype=dtype, d=d, bs=bs, hq=hq, hkv=hkv, lens=lens, ok=ok, **errs)
                    )
                    if not ok:
                        log(f"FAIL paged {dtype} d{d} bs{bs} hq{hq}/hkv{hkv}: {errs}")
    # odd groups (padding heads, several head tiles), the long context, and v1 == v2 directly
    extra = [
        ((1, 33, 32768), 24, 4, 128, 16),
        ((17, 1000), 6, 1, 128, 32),
        ((129, 32768), 32, 8, 128, 16),
        ((1000, 5), 32, 1, 64, 16),
    ]
    for lens_x, hq, hkv, d, bs in extra:
        for dtype in ("bf16", "fp16"):
            case, inputs, ref = paged_case(lens_x, hq, hkv, d, dtype, bs, seed=len(rows))
            outs, errs = {}, {}
            for variant, part in (("v1", None), ("v2", 1024), ("v2auto", None)):
                set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant[:2], ATTNBENCH_CUDA_PAGED_PARTITION=part)
                errs[variant], prep = run_checked(be, case, inputs, ref)
                outs[variant] = prep.run().double()
            agree = rel_err(outs["v2"].float(), outs["v1"])
            ok = all(e <= TOL[dtype] for e in errs.values()) and agree <= TOL[dtype]
            rows.append(
                dict(
                    kind="paged",
                    dtype=dtype,
                    d=d,
                    bs=bs,
                    hq=hq,
                    hkv=hkv,
                    lens=lens_x,
                    ok=ok,
                    v1_v2=agree,
                    **errs,
                )
            )
            if not ok:
                log(f"FAIL paged {dtype} d{d} bs{bs} hq{hq}/hkv{hkv} lens {lens_x}: {errs} v1~v2 {agree}")
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
                    case, inputs, ref = flash_case(ql, kl, hq, hkv, d, dtype, causal, seed=len(rows))
                    errs = {}
                    for cfg in configs:
                        set_env(ATTNBENCH_CUDA_FLASH_CONFIG=cfg)
                        errs[f"cfg{cfg}"], _ = run_checked(be, case, inputs, ref)
                    ok = all(e <= TOL[dtype] for e in errs.values())
                    rows.append(
                        dict(
                            kind="flash",
                            dtype=dtype,
                            d=d,
                            causal=causal,
                            q_lens=ql,
                            kv_lens=kl,
                            hq=hq,
                            hkv=hkv,
                            ok=ok,
                            **errs,
                        )
                    )
                    if not ok:
                        log(f"FAIL flash {dtype} d{d} causal={causal} q{ql} k{kl} hq{hq}/hkv{hkv}: {errs}")
    set_env(ATTNBENCH_CUDA_FLASH_CONFIG=None)
    return rows


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
        case, inputs, ref = paged_case((ctx,) * batch, 32, 8, 128, "bf16", bs, seed=7)
        nbytes = paged_bytes(case)
        for v in variants:
            part = v if isinstance(v, int) else None
            variant = "v2" if part else (None if v == "auto" else v)
            set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
            err, prep = run_checked(be, case, inputs, ref)
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
                    rel_err=err,
                )
            )
            log(
                f"paged B{batch} ctx{ctx} bs{bs} {v:>6}->{label:<10} {ms:8.4f} ms {gbps:7.0f} GB/s "
                f"{100 * gbps / copy:5.1f}% of copy  err {err:.1e}"
            )
        del inputs, ref
        torch.cuda.empty_cache()
    set_env(ATTNBENCH_CUDA_PAGED_VARIANT=None, ATTNBENCH_CUDA_PAGED_PARTITION=None)
    return rows


def time_flash(quick: bool) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    be, rows = CudaFlash(), []
    b, h, n, d = 4, 32, 4096, 128
    for causal in (False, True):
        case, inputs, ref = flash_case(
            (n,) * b, (n,) * b, h, h, d, "bf16", causal, seed=3, reference=not quick
        )
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
            prep = be.prepare(case, inputs)
            out = prep.run()
            err = rel_err(out, ref) if ref is not None else float("nan")
            ms = bench_ms(prep.run)
            rows.append(
                dict(
                    kind="flash",
                    impl=f"cuda cfg{cfg}",
                    causal=causal,
                    ms=ms,
                    tflops=flops / ms / 1e9,
                    rel_err=err,
                )
            )
            log(
                f"flash B{b} H{h} N{n} D{d} causal={causal} cuda cfg{cfg} {CONFIGS[cfg]:<19} {ms:8.3f} ms "
                f"{flops / ms / 1e9:6.1f} TFLOP/s  err {err:.1e}"
            )
        del inputs, ref
    set_env(ATTNBENCH_CUDA_FLASH_CONFIG=None)
    return rows


# ---- 3. sanitizer -----------------------------------------------------------------------------------
def sanitize_case() -> int:
    """The small case run under compute-sanitizer: paged v1/v2 with invalid table padding, flash."""
    bad = 1 << 30  # a block id far outside the pool: reading a padding entry would fault
    case, inputs, ref = paged_case((1, 17, 129), 8, 2, 128, "bf16", 16, pad_value=bad)
    errs = []
    for variant, part in (("v1", None), ("v2", 64)):
        set_env(ATTNBENCH_CUDA_PAGED_VARIANT=variant, ATTNBENCH_CUDA_PAGED_PARTITION=part)
        errs.append(run_checked(CudaPaged(), case, inputs, ref)[0])
    for cfg in CONFIGS:
        set_env(ATTNBENCH_CUDA_FLASH_CONFIG=cfg)
        case, inputs, ref = flash_case((5, 70), (9, 200), 4, 2, 128, "fp16", True)
        errs.append(run_checked(CudaFlash(), case, inputs, ref)[0])
    print("sanitize-case errors:", errs, flush=True)
    return 0 if all(e <= 1.2e-2 for e in errs) else 3


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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sanitizers", default="memcheck", help="comma list: memcheck,racecheck ('' = none)")
    ap.add_argument("--sanitizer-timeout", type=int, default=90)
    ap.add_argument("--sanitize-case", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sanitize_case:
        return sanitize_case()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {}

    def save() -> None:  # after every section: a run cut short still leaves its numbers
        (out / "cuda_check.json").write_text(json.dumps(result, indent=1, default=str))
        (out / "cuda_check.log").write_text("\n".join(LOG) + "\n")

    props = torch.cuda.get_device_properties(0)
    t0 = time.perf_counter()
    lib = cuda_build.load()
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
    groups = result["paged_correctness"] + result["flash_correctness"]
    n_bad = sum(not r["ok"] for r in groups)
    errs = [v for r in groups for k, v in r.items() if k in ("v1", "v2", "v2auto") or k.startswith("cfg")]
    worst = max((math.inf if math.isnan(e) else e for e in errs), default=0.0)
    log(
        f"correctness: {len(groups) - n_bad}/{len(groups)} groups ok, worst rel err {worst:.2e} "
        f"({time.perf_counter() - t:.0f} s)"
    )
    save()
    copy = copy_gbps()
    result["copy_gbps"] = copy
    log(f"copy bandwidth (1 GiB device-to-device, read+write): {copy:.0f} GB/s")
    result["paged_timing"] = time_paged(copy, args.quick)
    save()
    result["flash_timing"] = time_flash(args.quick)
    save()
    tools = [tool for tool in args.sanitizers.split(",") if tool]
    result["sanitizer"] = [run_sanitizer(tool, args.sanitizer_timeout) for tool in tools]
    save()
    log("==== summary ====")
    for line in LOG:
        if line.startswith(("paged B", "flash B", "correctness", "copy", "compute-sanitizer", "FAIL")):
            print(line)
    return 0 if n_bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
