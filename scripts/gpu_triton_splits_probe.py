"""triton-paged's split count at long context (issue 20: >= 92% of copy bandwidth at B4 ctx32768).

    PYTHONPATH=. python3 scripts/gpu_triton_splits_probe.py OUT_DIR

Times triton-paged on decode B4 context 32768 (and B64 context 4096 as a control), GQA 32/8, d128,
16-token shuffled blocks, bf16 and fp8 e4m3, with the split count its planner picks and with fixed
counts, through attnbench's own timer (held device time, L2 flushed). Each output is checked against
the reference first. Writes OUT_DIR/splits.json: per case and split count, ms, GB/s and % of the
calibrated copy bandwidth.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPLITS = (None, 4, 8, 12, 16, 24, 32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    import torch

    from attnbench.backends._triton_common import kernels_module
    from attnbench.calibrate import calibrate
    from attnbench.case import Case
    from attnbench.config.sweep_config import TimingPolicy
    from attnbench.inputs import build_inputs
    from attnbench.measure import time_callable
    from attnbench.metrics import min_hbm_bytes
    from attnbench.reference import check_output

    dev = torch.device("cuda")
    copy_gbps = calibrate(dev)["copy_gbps"]
    mod = kernels_module("paged_attn")
    out_rows = []
    for batch, ctx in ((4, 32768), (64, 4096)):
        for kv_dtype in ("auto", "fp8_e4m3"):
            case = Case("splits", "decode", (1,) * batch, (ctx,) * batch, 32, 8, 128, "bf16", False,
                        block_size=16)
            if kv_dtype != "auto":
                case = replace(case, kv_dtype=kv_dtype, kv_scale="per-head")
            inputs = build_inputs(case, dev)
            paged = inputs.paged
            assert paged is not None
            for splits in SPLITS:
                out = torch.empty_like(inputs.q)
                launch, _, config, used = mod.paged_attention_runner(
                    inputs.q, paged.k_cache, paged.v_cache, paged.block_tables, paged.kv_lens,
                    inputs.cu_seqlens_q, case.max_q, case.max_kv, case.causal, case.softmax_scale,
                    num_splits=splits, out=out, k_scale=inputs.k_scale, v_scale=inputs.v_scale)
                launch()
                check = check_output(out, inputs)

                def run(launch=launch, out=out):
                    launch()
                    return out

                ms = time_callable(run, dev, TimingPolicy()).summary()["latency_ms_p50"]
                gbps = min_hbm_bytes(case) / (ms * 1e-3) / 1e9
                row = {"batch": batch, "ctx": ctx, "kv_dtype": kv_dtype, "splits_asked": splits,
                       "splits": used, "config": config.describe(), "ok": check.ok, "ms": ms, "gbps": gbps,
                       "pct_copy": 100 * gbps / copy_gbps, "tokens_per_s": batch * ctx / (ms * 1e-3)}
                out_rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "splits.json").write_text(json.dumps({"copy_gbps": copy_gbps, "rows": out_rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
