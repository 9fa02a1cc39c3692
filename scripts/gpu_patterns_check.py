"""Attention patterns on the GPU present: every pattern-capable backend, per-sequence correctness, time,
and the first-call / compile time of each distinct pattern value (does a new window size build a kernel?).

    PYTHONPATH=. python3 scripts/gpu_patterns_check.py OUT_DIR
    PYTHONPATH=. python3 scripts/gpu_patterns_check.py OUT_DIR --dry-run   # CPU: tiny sizes, interpreter

Cases (bf16, Hq32 Hkv8 D128, paged block size 16 where a backend reads pages):
1. decode B16 at contexts 8192 and 32768 with and without window 4096 (the "window flattens decode" curve);
2. decode B16 ctx 16384 at window 1024, 2048, 4096 in that order, same shape: the first windowed set-up
   compiles the windowed variant, later sizes should reuse it where the window is a runtime argument
   (Triton kernels) and rebuild where it is a traced constant (FlexAttention);
3. decode B16 ctx 16384 window 4096 + soft-cap 50 (Gemma-2), and varlen mixed contexts with ALiBi;
4. prefill N 4096 causal window 1024 with soft-cap 50 (varlen: 4096 and 1000).
Each point goes through attnbench.point.run_point, the harness's own path: output judged per (sequence,
head) by attnbench.reference.check_output, then timed (short policy). Rows keep prepare_s (every compile
and first call the backend made for the point), compile_s and new_kernel where the backend records them.
Writes OUT_DIR/patterns_rows.jsonl and OUT_DIR/patterns_summary.json; exits 1 if any point is incorrect or
failed. GPU time is kept near a minute by the short timing policy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cases(dry: bool):
    from attnbench.case import Case

    if dry:  # interpreter-sized
        hq, hkv, d, ctx = 4, 2, 32, {"short": 256, "long": 600, "mid": 400}
        w = {"big": 96, "sizes": (32, 64, 96)}
        b, pre = 2, (120, 50)
    else:
        hq, hkv, d, ctx = 32, 8, 128, {"short": 8192, "long": 32768, "mid": 16384}
        w = {"big": 4096, "sizes": (1024, 2048, 4096)}
        b, pre = 16, (4096, 1000)

    def decode(n: int, label: str, **pattern) -> tuple[str, Case]:
        return label, Case("patterns-gpu", "decode", (1,) * b, (n,) * b, hq, hkv, d, "bf16", False, **pattern)

    out = []
    for n in (ctx["short"], ctx["long"]):
        out.append(decode(n, f"decode-ctx{n}-full"))
        out.append(decode(n, f"decode-ctx{n}-window", window=w["big"]))
    for size in w["sizes"]:
        out.append(decode(ctx["mid"], f"decode-window-size-{size}", window=size))
    out.append(decode(ctx["mid"], "decode-window-softcap50", window=w["big"], softcap=50.0))
    mixed = tuple(ctx["mid"] // k for k in (1, 3, 7, 16))
    out.append(("decode-varlen-alibi", Case("patterns-gpu", "decode", (1,) * len(mixed), mixed, hq, hkv, d,
                                            "bf16", False, alibi=True)))
    out.append(("prefill-window-softcap", Case("patterns-gpu", "prefill", pre, pre, hq, hkv, d, "bf16", True,
                                               window=w["sizes"][0], softcap=50.0)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="directory for patterns_rows.jsonl and patterns_summary.json")
    ap.add_argument("--dry-run", action="store_true", help="CPU: tiny sizes, Triton interpreter, eager flex")
    args = ap.parse_args()
    import torch

    dry = args.dry_run or not torch.cuda.is_available()
    if dry:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from attnbench.backends import all_backends
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.inputs import build_inputs
    from attnbench.point import base_row, failed, run_point, skipped

    device = "cpu" if dry else "cuda"
    args.out.mkdir(parents=True, exist_ok=True)
    policy = replace(TimingPolicy.for_device(device), warmup_ms=5.0, min_samples=5, max_samples=20,
                     min_time_s=0.02, max_time_s=0.2, thermal=False)
    backends = {n: b for n, b in all_backends().items() if b.patterns}
    print(f"device {device}; pattern-capable backends: {', '.join(sorted(backends))}", flush=True)
    rows, t0 = [], time.time()
    for label, base in cases(dry):
        paged = replace(base, block_size=16)
        inputs = {False: build_inputs(base, device)}
        for name, backend in backends.items():
            if dry and name.startswith("flex"):
                backend.compile = False
            ok, why = backend.available(device)
            for case in (base, paged):
                if not backend.wants(case):
                    continue
                if not ok:
                    row = skipped(base_row(case, backend, device), why)
                else:
                    sup, reason = backend.supports(case)
                    if not sup:
                        row = skipped(base_row(case, backend, device), reason)
                    else:
                        if case.paged and True not in inputs:
                            inputs[True] = build_inputs(case, device, base=inputs[False])
                        try:
                            row = run_point(case, backend, inputs[case.paged], policy, {})
                        except Exception as err:  # noqa: BLE001 - one point must not stop the others
                            row = failed(base_row(case, backend, device), f"{type(err).__name__}: {err}")
                            traceback.print_exc()
                row["check_label"] = label
                rows.append(row)
                form = "paged" if case.paged else "contig"
                print(f"[{time.time() - t0:6.1f}s] {label:28s} {name:14s} {form:6s} {row['status']:10s} "
                      f"p50 {row.get('latency_ms_p50')} ms prepare {row.get('prepare_s')} s "
                      f"new_kernel {row.get('new_kernel')} {row.get('reason', '')[:90]}", flush=True)
        del inputs
        if not dry:
            torch.cuda.empty_cache()
    with (args.out / "patterns_rows.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, default=str) + "\n")
    first_call = {}
    for row in rows:
        if row["status"] == "ok":
            key = f"{row['backend']}{' [paged]' if row.get('block_size') else ''}"
            first_call.setdefault(key, []).append({"case": row["check_label"], "pattern": row.get("pattern"),
                                                   "prepare_s": row.get("prepare_s"),
                                                   "compile_s": row.get("compile_s"),
                                                   "new_kernel": row.get("new_kernel"),
                                                   "latency_ms_p50": row.get("latency_ms_p50")})
    bad = [r for r in rows if r["status"] in ("incorrect", "failed")]
    fields = ("check_label", "backend", "block_size", "status", "reason")
    summary = {"device": device, "dry_run": dry, "points": len(rows),
               "ok": sum(r["status"] == "ok" for r in rows),
               "bad": [{k: r.get(k) for k in fields} for r in bad],
               "first_call_per_pattern": first_call, "wall_s": round(time.time() - t0, 1)}
    (args.out / "patterns_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: summary[k] for k in ("device", "points", "ok", "bad", "wall_s")}, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
