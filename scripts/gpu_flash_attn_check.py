#!/usr/bin/env python3
"""GPU check of the flash-attn, flex-paged and flex backends (issue 8): correct, then timed.

Each point goes through attnbench.point.run_point, as in a sweep: the output is compared with the
reference of attnbench.inputs first (an `incorrect` row is not timed), then timed with CUDA events
under a short TimingPolicy. A row per point is printed as it finishes and appended to --out (JSON
lines), so a run cut short keeps what it measured; a table closes the run.

Groups (pick with --groups):
  prefill  B4 H32 N4096 D128 bf16, causal and not (contiguous KV: flash-attn, flex)
  decode   B64 Hq32 Hkv8 ctx4096 D128 bf16: paged bs16 (flash-attn, flex-paged) and contiguous
           (flash-attn, flex: the batched-query decode layout)
  blocks   the decode case at block sizes 8, 32, 64, 128, 256 (unsupported sizes print the reason)
  chunked  B8 chunk512 at the end of ctx4096, causal, bs16 paged and contiguous

On the GPU machine, from the tree, after installing flash-attn-4 (../shared/tools/fa4-wheels.sh
prepares it; `source .fa4b/install.sh` installs it and sets PYTHONPATH):
  PYTHONPATH=.:$PYTHONPATH python3 scripts/gpu_flash_attn_check.py --out $OUT/fa_check.jsonl
Exit status: 0 when no row is failed or incorrect, 1 otherwise, 2 without a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from attnbench.backends import get_backend  # noqa: E402
from attnbench.backends._flash_attn_api import detect  # noqa: E402
from attnbench.case import Case  # noqa: E402
from attnbench.config.sweep_config import TimingPolicy  # noqa: E402
from attnbench.inputs import build_inputs  # noqa: E402
from attnbench.point import base_row, run_point, skipped  # noqa: E402

GROUPS = ("prefill", "decode", "blocks", "chunked")
BACKENDS = ("flash-attn", "flex-paged", "flex")
COLUMNS = (("group", 8), ("case", 36), ("backend", 11), ("status", 10), ("rel_err", 9), ("err/allow", 9),
           ("p50_ms", 9), ("TFLOP/s", 8), ("GB/s", 7), ("compile_s", 9), ("detail", 60))


def cases(groups: list[str], small: bool) -> list[tuple[str, list[tuple[Case, bool]]]]:
    """Per group: (case, measured?) in order, the contiguous case first so paged variants reuse its
    tensors and reference (the block-size group builds it without measuring it again)."""
    s = 16 if small else 1  # --small: lengths and batch / 16, for a dry run of the flow on a CPU
    out = []
    if "prefill" in groups:
        for causal in (True, False):
            c = Case("check", "prefill", (4096 // s,) * 4, (4096 // s,) * 4, 32, 32, 128, "bf16", causal)
            out.append(("prefill", [(c, True)]))
    decode = Case("check", "decode", (1,) * (64 // s), (4096 // s,) * (64 // s), 32, 8, 128, "bf16", False)
    if "decode" in groups:
        out.append(("decode", [(decode, True), (_paged(decode, 16), True)]))
    if "blocks" in groups:
        sizes = (8, 32, 64, 128, 256)
        out.append(("blocks", [(decode, False)] + [(_paged(decode, bs), True) for bs in sizes]))
    if "chunked" in groups:
        chunk = Case("check", "mixed", (512 // s,) * 8, (4096 // s,) * 8, 32, 8, 128, "bf16", True)
        out.append(("chunked", [(chunk, True), (_paged(chunk, 16), True)]))
    return out


def _paged(case: Case, block_size: int) -> Case:
    return replace(case, block_size=block_size, kv_layout="shuffled")


def describe(case: Case) -> str:
    kv = f"bs{case.block_size}" if case.paged else "contig"
    return f"{case.phase} b{case.batch} q{case.max_q} kv{case.max_kv} {kv}{' causal' if case.causal else ''}"


def detail(row: dict) -> str:
    if row["status"] != "ok":
        return str(row.get("reason", ""))
    parts = [str(row[k]) for k in ("flash_attn_impl", "flash_attn_version", "fa_entry") if row.get(k)]
    parts += [str(row[k]) for k in ("input_mode",) if row.get(k)]
    return " ".join(parts)


def fmt(value, width: int) -> str:
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = "" if value is None else str(value)
    return text[:width].ljust(width)


def line(row: dict) -> str:
    values = (row["_group"], row["_case_label"], row["backend"], row["status"], row.get("rel_err"),
              row.get("rel_err_ratio"), row.get("latency_ms_p50"), row.get("tflops"), row.get("hbm_gbps"),
              row.get("compile_s"), detail(row))
    return " ".join(fmt(v, w) for v, (_, w) in zip(values, COLUMNS, strict=True))


def run(groups: list[str], backends: list[str], policy: TimingPolicy, out_path: Path | None,
        device: str, small: bool) -> list[dict]:
    dev = torch.device(device)
    rows: list[dict] = []
    sink = out_path.open("a") if out_path else None
    for group, variants in cases(groups, small):
        base = None
        for case, measured in variants:
            t0 = time.perf_counter()
            inputs = build_inputs(case, dev, base=base)
            if not case.paged:
                base = inputs
            build_s = time.perf_counter() - t0
            for name in backends if measured else ():
                b = get_backend(name)
                if not b.wants(case):
                    continue
                ok, why = b.available(dev.type)
                if ok:
                    ok, why = b.supports(case)
                if ok:
                    try:
                        row = run_point(case, b, inputs, policy, {})
                    except Exception as err:  # noqa: BLE001 - a poisoned CUDA context ends the run
                        row = {**base_row(case, b, dev.type), "status": "failed",
                               "reason": f"CUDA context lost: {' '.join(str(err).split())[:200]}"}
                        _emit(group, case, row, build_s, rows, sink)
                        raise SystemExit(_finish(rows, sink, 1)) from None
                else:
                    row = skipped(base_row(case, b, dev.type), why)
                _emit(group, case, row, build_s, rows, sink)
            del inputs
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    if sink:
        sink.close()
    return rows


def _emit(group: str, case: Case, row: dict, build_s: float, rows: list[dict], sink) -> None:
    row = {**row, "_group": group, "_case_label": describe(case), "_inputs_build_s": round(build_s, 2)}
    rows.append(row)
    # Progress: one short line per point (the full table comes at the end).
    ms, err, ratio = row.get("latency_ms_p50"), row.get("rel_err"), row.get("rel_err_ratio")
    print(f"[{len(rows)}] {group} {row['_case_label']} {row['backend']}: {row['status']}"
          + (f" rel_err {err:.2g}" if err is not None else "")
          + (f" ({ratio:.2f}x allowed)" if ratio is not None else "") + (f" p50 {ms:.4g} ms" if ms else "")
          + (f" compile {row['compile_s']} s" if row.get("compile_s") is not None else "")
          + (f" ({str(row.get('reason'))[:160]})" if row["status"] != "ok" else ""), flush=True)
    if sink:
        sink.write(json.dumps({k: v for k, v in row.items() if k != "samples_ms"}, default=str) + "\n")
        sink.flush()


def _finish(rows: list[dict], sink, code: int) -> int:
    if sink:
        sink.close()
    summary(rows)
    return code


def summary(rows: list[dict]) -> None:
    print("\n== summary: correctness (worst sequence/head: rel_err vs the reference, err/allow = its ratio "
          "to the allowed error) and p50 latency ==")
    print(" ".join(name.ljust(w) for name, w in COLUMNS))
    for row in rows:
        print(line(row))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    print("rows by status:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma list of registered backends")
    ap.add_argument("--max-time", type=float, default=0.3, help="sampling seconds per point")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON row per point here")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: a dry run of the flow")
    ap.add_argument("--small", action="store_true", help="lengths and batch / 16 (dry runs)")
    args = ap.parse_args()
    groups = [g for g in args.groups.split(",") if g]
    bad = [g for g in groups if g not in GROUPS]
    if bad:
        print(f"unknown group {bad[0]!r}; allowed: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    backends = [b for b in args.backends.split(",") if b]
    try:
        for name in backends:
            get_backend(name)
    except KeyError as err:
        print(err.args[0], file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible: this check runs on the GPU machine (--device cpu for a dry run)",
              file=sys.stderr)
        return 2
    lib, why = detect()
    if args.device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        where = f"GPU {torch.cuda.get_device_name()} (sm_{major}{minor})"
    else:
        where = "CPU dry run"
    print(f"{where}, torch {torch.__version__}, flash-attn: "
          + (f"{lib.impl} {lib.version}" if lib else f"none ({why})"), flush=True)
    if args.device == "cuda":
        policy = TimingPolicy(max_time_s=args.max_time, max_samples=100, target_rel_ci=0.02)
    else:
        policy = TimingPolicy.for_device("cpu")
    rows = run(groups, backends, policy, args.out, args.device, args.small)
    bad_rows = [r for r in rows if r["status"] in ("failed", "incorrect")]
    return _finish(rows, None, 1 if bad_rows else 0)


if __name__ == "__main__":
    sys.exit(main())
