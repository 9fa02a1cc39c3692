"""Correctness at full size and speed of the Triton kernels (triton-flash, triton-paged) on the GPU present.

    PYTHONPATH=. python3 scripts/gpu_triton_check.py [--out DIR] [--budget-s 150]
    TRITON_INTERPRET=1 PYTHONPATH=. python scripts/gpu_triton_check.py --smoke   # CPU dry run, tiny sizes

Sections, most important first (each is skipped once the time budget is spent):
1. calibration: device-to-device copy bandwidth (bytes read + written);
2. flash B4 Hq32 Hkv32 N4096 D128 bf16, full and causal: error vs the fp32 GPU reference, the tuner's
   table, the chosen tile through the backend (TMA), the same tile with pointer loads, and torch SDPA
   flash / cuDNN on the same tensors (B, H, N, D);
3. paged decode B64 Hq32 Hkv8 ctx4096 bs16, shuffled and contiguous tables: error, tuner table,
   bandwidth of minimum bytes (metrics.min_hbm_bytes) vs copy bandwidth, and a split-count sweep;
4. paged decode B4 ctx32768 (split-KV): error, heuristic choice and a split-count sweep;
5. extra correctness: varlen GQA flash (TMA across sequence ends), chunked prefill, head dims 64/256.
Every output is judged by attnbench.reference.check_output (each sequence and query head against the
harness reference, within a small factor of a plain PyTorch implementation's error in the case's dtype);
each check records its worst (sequence, head) and that cell's ratio of error to allowed, and the script
exits 1 when any check fails.
All timings: triton.testing.do_bench median (L2 flushed between samples), random inputs, never zeros.
Writes DIR/triton_check.json and prints a summary table last.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnbench.backends import get_backend  # noqa: E402
from attnbench.backends._triton_common import kernels_module  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.inputs import Inputs, build_inputs  # noqa: E402
from attnbench.metrics import flops, min_hbm_bytes  # noqa: E402
from attnbench.reference import check_output  # noqa: E402

RESULTS: dict[str, object] = {}
SUMMARY: list[str] = []
T0 = time.time()
# Problem sizes: the targets on a GPU; --smoke shrinks them for a CPU (interpreter) dry run.
S = {"dev": "cuda", "flash_b": 4, "flash_n": 4096, "flash_h": 32, "dec_b": 64, "dec_ctx": 4096, "dec_hq": 32,
     "long_b": 4, "long_ctx": 32768, "x_long": 4096, "x_short": 1024}
SMOKE = {"dev": "cpu", "flash_b": 2, "flash_n": 48, "flash_h": 2, "dec_b": 3, "dec_ctx": 80, "dec_hq": 8,
         "long_b": 1, "long_ctx": 600, "x_long": 64, "x_short": 40}


def log(msg: str) -> None:
    print(f"[{time.time() - T0:6.1f}s] {msg}", flush=True)


def bench(fn) -> float:
    if S["dev"] == "cpu":
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    return float(triton.testing.do_bench(fn, warmup=10, rep=60, return_mode="median"))


def check(name: str, out: torch.Tensor, inputs: Inputs) -> None:
    """Judge a packed output; record the worst (sequence, head), its error and its ratio to allowed."""
    result = check_output(out, inputs)
    entry = {"ok": result.ok, "reason": result.reason, **result.row_fields()}
    RESULTS.setdefault("correctness", {})[name] = entry  # type: ignore[union-attr]
    if result.ratio is None:  # a NaN/Inf output: no ratio, the reason says where
        log(f"CHECK {name}: FAIL {result.reason}")
    else:
        log(f"CHECK {name}: rel_err {result.rel_err:.2e} = {result.ratio:.2f}x allowed (seq {result.seq}, "
            f"head {result.head}) {'ok' if result.ok else 'FAIL'}")
    if not result.ok:
        SUMMARY.append(f"FAIL {name}: {result.reason}")


def correctness_summary() -> str:
    """How many checks passed and the worst ratio of error to allowed, with where it was."""
    checks: dict = RESULTS.get("correctness", {})  # type: ignore[assignment]
    if not checks:
        return "correctness: no checks ran"
    n_ok = sum(e["ok"] for e in checks.values())

    def rank(item: tuple[str, dict]) -> float:  # a NaN/Inf output has no ratio and ranks worst
        ratio = item[1]["rel_err_ratio"]
        return math.inf if ratio is None else ratio

    name, worst = max(checks.items(), key=rank)
    ratio = worst["rel_err_ratio"]
    told = "non-finite output" if ratio is None else f"{ratio:.2f}x allowed"
    return (f"correctness: {n_ok}/{len(checks)} checks ok, worst {told} ({name}, "
            f"seq {worst['rel_err_seq']}, head {worst['rel_err_head']})")


def copy_bandwidth() -> float:
    x = torch.randn(256 << 20 if S["dev"] == "cuda" else 1 << 20, device=S["dev"], dtype=torch.float32)
    y = torch.empty_like(x)
    ms = bench(lambda: y.copy_(x))  # noqa: F821 (ruff misreads the conditional expression above)
    gbps = 2 * x.numel() * 4 / ms / 1e6
    del x, y
    return gbps


def tuner_table(mod) -> list:
    return [(str(k), v) for k, v in mod._TUNER.timings.items()]


def flash_section(copy_gbps: float) -> None:
    mod = kernels_module("flash_fwd")
    backend = get_backend("triton-flash")
    b, n, h = S["flash_b"], S["flash_n"], S["flash_h"]
    base = Case("gpu", "prefill", (n,) * b, (n,) * b, h, h, 128, "bf16", False)
    for causal in (False, True):
        case = replace(base, causal=causal)
        inp = build_inputs(case, S["dev"])
        prep = backend.prepare(case, inp)  # tunes, compiles
        out = prep.run()
        sync()
        tag = "causal" if causal else "full"
        check(f"flash {tag} B{b} H{h} N{n} D128", prep.to_packed(out), inp)
        ms = bench(prep.run)
        tf = flops(case) / ms / 1e9
        row = {"variant": prep.info["variant"], "ms": ms, "tflops": tf}
        # The same tile with pointer loads (no TMA): what the descriptors buy.
        cfg = mod._TUNER.best[next(k for k in mod._TUNER.best if k[1] == causal)]
        args = (inp.q, inp.k, inp.v, inp.cu_seqlens_q, inp.cu_seqlens_k, case.max_q, causal,
                case.softmax_scale)
        o2 = torch.empty_like(inp.q)
        lse2 = torch.empty((h, case.total_q), device=S["dev"])

        def ptr_run(args=args, o2=o2, lse2=lse2, cfg=cfg):
            mod.flash_attn_varlen_fwd(*args, out=o2, lse=lse2, use_tma=False, config=cfg)

        try:
            ptr_run()
            ms_ptr = bench(ptr_run)
            row["ptr_ms"], row["ptr_tflops"] = ms_ptr, flops(case) / ms_ptr / 1e9
        except Exception as exc:
            row["ptr_error"] = repr(exc)[:200]
        # torch SDPA on (B, H, N, D) copies of the same tensors
        qb, kb, vb = (t.view(b, n, h, 128).transpose(1, 2).contiguous() for t in (inp.q, inp.k, inp.v))
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kinds = (("sdpa_flash", SDPBackend.FLASH_ATTENTION), ("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION))
        for name, kind in kinds if S["dev"] == "cuda" else ():
            try:
                def f(qb=qb, kb=kb, vb=vb, causal=causal):
                    return torch.nn.functional.scaled_dot_product_attention(qb, kb, vb, is_causal=causal)

                with sdpa_kernel([kind]):
                    f()
                    ms_s = bench(f)
                row[f"{name}_ms"], row[f"{name}_tflops"] = ms_s, flops(case) / ms_s / 1e9
            except Exception as exc:
                row[f"{name}_error"] = repr(exc)[:200]
        RESULTS.setdefault("flash", {})[tag] = row  # type: ignore[union-attr]
        log(f"FLASH {tag}: {json.dumps(row)}")
        SUMMARY.append(
            f"flash {tag:6s} triton {tf:6.1f} TF/s ({row['variant']}) | ptr {row.get('ptr_tflops', 0):6.1f}"
            f" | sdpa-flash {row.get('sdpa_flash_tflops', 0):6.1f}"
            f" | sdpa-cudnn {row.get('sdpa_cudnn_tflops', 0):6.1f}"
        )
        del inp, prep, qb, kb, vb, o2
        empty_cache()
    RESULTS["flash_tuner"] = tuner_table(mod)
    log(f"flash tuner: {RESULTS['flash_tuner']}")


def paged_run(mod, case, inp, splits, cfg):
    p = inp.paged
    args = (inp.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens, inp.cu_seqlens_q, case.max_q, case.max_kv,
            case.causal, case.softmax_scale)
    launch, out, _, _ = mod.paged_attention_runner(*args, num_splits=splits, config=cfg)

    def run():
        launch()
        return out

    return run


def paged_section(copy_gbps: float, batch: int, ctx: int, sweep: tuple[int, ...], tag: str,
                  layouts=("shuffled", "contiguous")) -> None:
    mod = kernels_module("paged_attn")
    backend = get_backend("triton-paged")
    hq = S["dec_hq"]
    base_case = Case("gpu", "decode", (1,) * batch, (ctx,) * batch, hq, hq // 4, 128, "bf16", True)
    base = build_inputs(base_case, S["dev"])
    rows = {}
    cfg = splits = None
    for layout in layouts:
        case = replace(base_case, block_size=16, kv_layout=layout)
        inp = build_inputs(case, S["dev"], base=base)
        prep = backend.prepare(case, inp)
        out = prep.run()
        sync()
        check(f"paged {tag} {layout}", prep.to_packed(out), inp)
        ms = bench(prep.run)
        gbps = min_hbm_bytes(case) / ms / 1e6
        rows[layout] = {"variant": prep.info["variant"], "ms": ms, "gbps": gbps, "util": gbps / copy_gbps}
        if S["dev"] == "cuda":  # replayed as a CUDA graph: what host launch overhead costs above
            try:
                rows[layout]["graph_ms"] = float(triton.testing.do_bench_cudagraph(prep.run, rep=40,
                                                                                   return_mode="median"))
            except Exception as exc:
                rows[layout]["graph_error"] = repr(exc)[:200]
        splits = prep.info["num_splits"]
        key = next(k for k in reversed(list(mod._TUNER.best)))
        cfg = mod._TUNER.best[key]
        if layout == layouts[0]:
            sweep_rows = {}
            for s in sweep:
                if s == splits:
                    continue
                try:
                    run = paged_run(mod, case, inp, s, cfg)
                    run()
                    ms_s = bench(run)
                    sweep_rows[s] = {"ms": ms_s, "util": min_hbm_bytes(case) / ms_s / 1e6 / copy_gbps}
                except Exception as exc:
                    sweep_rows[s] = {"error": repr(exc)[:200]}
            rows["split_sweep"] = sweep_rows
        del inp, prep
        empty_cache()
    RESULTS.setdefault("paged", {})[tag] = rows  # type: ignore[union-attr]
    RESULTS[f"paged_tuner_{tag}"] = tuner_table(mod)
    log(f"PAGED {tag}: {json.dumps(rows)}")
    for layout in layouts:
        r = rows[layout]
        SUMMARY.append(f"paged {tag} {layout:10s} {r['gbps']:7.0f} GB/s = {100 * r['util']:5.1f}% of copy "
                       f"({r['variant']}) {r['ms'] * 1e3:8.1f} us, graph {r.get('graph_ms', 0) * 1e3:.1f} us")
    if len(layouts) == 2:
        a, b = rows["shuffled"]["ms"], rows["contiguous"]["ms"]
        SUMMARY.append(f"paged {tag} shuffled/contiguous time ratio {a / b:.3f}")
    sw = rows.get("split_sweep", {})
    SUMMARY.append(f"paged {tag} split sweep (util): " + ", ".join(
        f"x{s}:{100 * v['util']:.1f}%" for s, v in sw.items() if "util" in v))


def block_size_sweep(copy_gbps: float) -> None:
    """Decode B64 ctx4096 at other block sizes with the bs16 winner's tile (no retuning)."""
    mod = kernels_module("paged_attn")
    hq = S["dec_hq"]
    b, ctx = S["dec_b"], S["dec_ctx"]
    base_case = Case("gpu", "decode", (1,) * b, (ctx,) * b, hq, hq // 4, 128, "bf16", True)
    base = build_inputs(base_case, S["dev"])
    cands = mod.paged_candidates(128, 4, 1, S["dev"] == "cuda")
    cfg = next((c for c in cands if c["BLOCK_N"] == 128), cands[0])
    rows = {}
    for bs in (8, 32, 64, 128, 256):
        case = replace(base_case, block_size=bs)
        inp = build_inputs(case, S["dev"], base=base)
        run = paged_run(mod, case, inp, 1, cfg)
        out = run()
        sync()
        check(f"paged decode bs{bs}", out, inp)
        ms = bench(run)
        rows[bs] = {"ms": ms, "util": min_hbm_bytes(case) / ms / 1e6 / copy_gbps, "config": cfg.describe()}
        del inp
        empty_cache()
    RESULTS["block_size_sweep"] = rows
    log(f"BLOCK SIZES: {json.dumps(rows)}")
    SUMMARY.append("paged B64 ctx4096 by block size (util, " + cfg.describe() + "): " + ", ".join(
        f"bs{bs}:{100 * r['util']:.1f}%" for bs, r in rows.items()))


def mixed_point() -> None:
    """Chunked prefill B4, 512 new tokens on 4096 cached, Hq32 Hkv8: triton-paged vs triton-flash."""
    n_new, ctx = (512, 4096) if S["dev"] == "cuda" else (16, 64)
    case = Case("gpu", "mixed", (n_new,) * 4, (ctx,) * 4, 32, 8, 128, "bf16", True, block_size=16)
    flat = case.without_paging()
    base = build_inputs(flat, S["dev"])
    inp = build_inputs(case, S["dev"], base=base)
    row = {}
    for name, c, i in (("triton-paged", case, inp), ("triton-flash", flat, base)):
        prep = get_backend(name).prepare(c, i)
        out = prep.run()
        sync()
        check(f"mixed {name}", prep.to_packed(out), i)
        ms = bench(prep.run)
        row[name] = {"variant": prep.info["variant"], "ms": ms, "tflops": flops(c) / ms / 1e9}
    RESULTS["mixed_point"] = row
    log(f"MIXED: {json.dumps(row)}")
    SUMMARY.append("mixed B4 q512 kv4096: " + " | ".join(
        f"{k} {v['tflops']:.1f} TF/s {v['ms'] * 1e3:.0f} us ({v['variant']})" for k, v in row.items()))


def extra_correctness() -> None:
    flash = kernels_module("flash_fwd")
    paged = kernels_module("paged_attn")
    # varlen GQA, q_len != kv_len, tiles crossing sequence ends with TMA
    lo, sh = S["x_long"], S["x_short"]
    c = Case("gpu", "mixed", (sh, 17, lo, 30), (sh, lo + 17, lo, 120), 32, 8, 128, "bf16", True)
    inp = build_inputs(c, S["dev"])
    cfg = flash.flash_candidates(128, True, c.max_q, on_gpu=S["dev"] == "cuda")[0]
    out, _, cfg, tma = flash.flash_attn_varlen_fwd(inp.q, inp.k, inp.v, inp.cu_seqlens_q, inp.cu_seqlens_k,
                                                   c.max_q, True, c.softmax_scale, config=cfg)
    sync()
    check(f"flash varlen gqa causal tma={tma}", out, inp)
    for d, dt in ((64, "fp16"), (256, "bf16")):
        for causal in (True, False):
            c = Case("gpu", "prefill", (sh, 33), (sh, 33), 8, 2, d, dt, causal)
            inp = build_inputs(c, S["dev"])
            cfg = flash.flash_candidates(d, causal, sh, on_gpu=S["dev"] == "cuda")[0]
            out, _, _, tma = flash.flash_attn_varlen_fwd(inp.q, inp.k, inp.v, inp.cu_seqlens_q,
                                                         inp.cu_seqlens_k, c.max_q, causal, c.softmax_scale,
                                                         config=cfg)
            check(f"flash d{d} {dt} causal={causal} tma={tma}", out, inp)
    # chunked prefill through the paged kernel
    c = Case("gpu", "mixed", (sh // 2, 1, 77, 30), (lo, sh, 77, 200), 32, 8, 128, "bf16", True, block_size=16)
    inp = build_inputs(c, S["dev"])
    p = inp.paged
    cfg = paged.paged_candidates(128, 4, c.max_q, S["dev"] == "cuda")[0]
    for splits in (1, 3):
        out, _, _ = paged.paged_attention(inp.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens,
                                          inp.cu_seqlens_q, c.max_q, c.max_kv, True, c.softmax_scale,
                                          num_splits=splits, config=cfg)
        check(f"paged mixed splits={splits}", out, inp)


def sync() -> None:
    if S["dev"] == "cuda":
        torch.cuda.synchronize()


def empty_cache() -> None:
    if S["dev"] == "cuda":
        torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--budget-s", type=float, default=150.0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (needs TRITON_INTERPRET=1)")
    args = ap.parse_args()
    if args.smoke:
        S.update(SMOKE)
        RESULTS["device"] = {"name": "cpu (interpreter)", "sms": 0}
        name, sms = "cpu", 0
    else:
        props = torch.cuda.get_device_properties(0)
        name, sms = props.name, props.multi_processor_count
        cap = list(torch.cuda.get_device_capability())
        RESULTS["device"] = {"name": name, "sms": sms, "torch": torch.__version__,
                             "triton": triton.__version__, "capability": cap}
    log(f"device {RESULTS['device']}")
    copy_gbps = copy_bandwidth()
    RESULTS["copy_gbps"] = copy_gbps
    SUMMARY.append(f"device {name} ({sms} SMs), copy {copy_gbps:.0f} GB/s")
    sections = [
        ("flash", lambda: flash_section(copy_gbps)),
        ("paged_b64", lambda: paged_section(copy_gbps, S["dec_b"], S["dec_ctx"], (2, 3, 4), "B64 ctx4096")),
        ("paged_b4_32k", lambda: paged_section(copy_gbps, S["long_b"], S["long_ctx"], (4, 6, 12, 16),
                                               "B4 ctx32768")),
        ("extra", extra_correctness),
        ("block_sizes", lambda: block_size_sweep(copy_gbps)),
        ("mixed", mixed_point),
    ]
    for name, fn in sections:
        if time.time() - T0 > args.budget_s:
            SUMMARY.append(f"SKIPPED {name}: time budget spent")
            continue
        try:
            fn()
        except Exception:
            tb = traceback.format_exc()
            log(f"SECTION {name} FAILED\n{tb}")
            SUMMARY.append(f"ERROR in {name}: {tb.strip().splitlines()[-1][:200]}")
    SUMMARY.append(correctness_summary())
    RESULTS["summary"] = SUMMARY
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "triton_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    print("\n==== summary ====")
    for line in SUMMARY:
        print(line)
    print(f"total {time.time() - T0:.0f}s")
    checks: dict = RESULTS.get("correctness", {})  # type: ignore[assignment]
    return 0 if all(e["ok"] for e in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
