"""One line per (variant, case) from the fp8 variant sweeps of a device call (scripts/h200_session/g1.sh):
latency, share of the calibrated copy bandwidth, tokens/s against the same variant's bf16 row, correctness.

    PYTHONPATH=. python3 scripts/fp8_variants_table.py OUT/g1
"""

from __future__ import annotations

import sys
from pathlib import Path

from attnbench.runner.results import load_rows


def same_case(row: dict) -> tuple:
    """What an fp8 row and its bf16 row share: backend, workload and block order."""
    return row["backend"], row["workload"], row.get("kv_layout")


def main(argv: list[str]) -> int:
    root = Path(argv[1])
    for run in sorted(root.glob("sweep-*")):
        measured = ("ok", "incorrect", "failed")
        rows = [r for r in load_rows(run / "results.jsonl") if r.get("status") in measured]
        bf16 = {same_case(r): r for r in rows if r.get("kv_dtype", "auto") == "auto"}
        for r in rows:
            kv = "bf16" if r.get("kv_dtype", "auto") == "auto" else f"fp8/{r.get('kv_scale')}"
            ms = r.get("latency_ms_p50")
            base = bf16.get(same_case(r))
            base_ms = base.get("latency_ms_p50") if base else None
            speed = f"{base_ms / ms:4.2f}x bf16" if ms and base_ms else "-"
            bw = r.get("bw_util")
            shown_ms = "-" if ms is None else f"{ms:.4f} ms"
            shown_bw = "-" if bw is None else f"{100 * bw:5.1f}%"
            print(f"{run.name:22s} B{r['batch']:<3d} ctx{r['max_kv']:<6d} {r.get('kv_layout', ''):10s} "
                  f"{kv:15s} {r['backend']:12s} {str(r.get('variant', ''))[:40]:40s} {r['status']:9s} "
                  f"{shown_ms} {shown_bw} {speed} err {r.get('rel_err_ratio')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
