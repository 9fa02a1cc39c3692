"""The measured support matrix and the compile-time row: values per axis as ok / skipped / failed with
reasons, patterns (absent in old runs), and the one-time cost per backend in seconds."""

from __future__ import annotations

from pathlib import Path

from attnbench.report import support
from attnbench.report.load import RunData, normalize
from attnbench.report.summary import build as build_summary


def _row(backend: str, family: str, status: str, head_dim: int = 128, dtype: str = "bf16",
         block_size: int | None = None, phase: str = "decode", reason: str = "", **extra) -> dict:
    r = {"case_id": f"w/{phase}/b2/d{head_dim}/{dtype}/{block_size}/{extra.get('pattern', '')}",
         "workload": "w", "phase": phase, "backend": backend, "family": family, "impl": "torch",
         "status": status, "reason": reason, "head_dim": head_dim, "dtype": dtype, "block_size": block_size,
         "batch": 2, "q_lens": [1, 1], "kv_lens": [64, 64], "num_q_heads": 4, "num_kv_heads": 4,
         "causal": False, "seqlen_mix": "fixed64", "kv_layout": "shuffled", "prefix_len": 0, "tags": []}
    if status == "ok":
        r.update(latency_ms_p50=0.1, n_samples=10, total_q=2, total_kv=128, max_q=1, max_kv=64)
    r.update(extra)
    return r


def _run(rows: list[dict]) -> RunData:
    return RunData(path=Path("r"), manifest={"gpu_name": "NVIDIA H200", "run_id": "r"}, df=normalize(rows))


ROWS = [
    _row("fa", "flash", "ok", head_dim=128, first_call_s=2.0, pattern="none"),
    _row("fa", "flash", "ok", head_dim=64, first_call_s=4.0, pattern="window64"),
    _row("fa", "flash", "skipped", head_dim=256, reason="unsupported: head_dim 256: allowed 64, 128",
         pattern="none"),
    _row("fa", "flash", "failed", dtype="fp32", reason="first call: RuntimeError boom", pattern="none"),
    _row("pg", "paged", "ok", block_size=16, compile_s=0.5, pattern="none"),
    _row("pg", "paged", "incorrect", block_size=32, reason="rel_err 0.5 > tol", pattern="none"),
    _row("pg", "paged", "skipped", block_size=16, reason="unsupported: pattern alibi", pattern="alibi"),
]


def test_axes_ok_skipped_failed_with_reasons():
    table = support.build(_run(ROWS))
    rec = {r["backend"]: r for r in table.records}
    fa, pg = rec["fa"]["axes"], rec["pg"]["axes"]
    assert fa["head_dim"] == {"ok": ["64", "128"], "skipped": ["256"], "failed": []}
    assert fa["dtype"] == {"ok": ["bf16"], "skipped": [], "failed": ["fp32"]}
    assert fa["pattern"]["ok"] == ["none", "window64"]
    assert pg["block_size"] == {"ok": ["16"], "skipped": [], "failed": ["32"]}
    assert pg["pattern"] == {"ok": ["none"], "skipped": ["alibi"], "failed": []}
    assert fa["block_size"]["ok"] == ["contiguous"]
    cells = {row[0]: row for row in table.rows}
    assert "skipped x1: unsupported: head_dim 256" in cells["fa"][7]
    assert "failed x1: first call: RuntimeError boom" in cells["fa"][7]
    assert "incorrect x1: rel_err 0.5" in cells["pg"][7]
    assert any("head sizes" in n and "fa ok 64, 128; skipped 256" in n for n in table.notes)


def test_one_time_cost_in_seconds_prefers_first_call():
    table = support.build(_run(ROWS))
    cells = {row[0]: row[-1] for row in table.rows}
    assert cells["fa"] == "3.00 s median first call (max 4.00 s, 2 points)"
    assert cells["pg"] == "0.500 s median compile (max 0.500 s, 1 point)"


def test_old_rows_without_pattern_or_cost():
    old = [{k: v for k, v in r.items() if k not in ("pattern", "first_call_s", "compile_s")} for r in ROWS]
    table = support.build(_run(old))
    assert any("predates the pattern axes" in n for n in table.notes)
    assert all(r["axes"]["pattern"]["ok"] in (["none"], []) for r in table.records)
    assert all(row[-1].startswith("not measured") for row in table.rows)


def test_summary_compile_row_has_units_and_backend_count():
    run = _run(ROWS)
    row = next(r for r in build_summary(run, _tables(run)).rows if r[0] == "Compile time")
    assert row[3] == "0.500 s median compile (1 backend: pg 0.500 s)"
    assert row[4] == "3.00 s median first call (1 backend: fa 3.00 s)"
    assert "(compile_s)" not in " ".join(row)


def _tables(run: RunData) -> dict:
    from attnbench.report.build import run_tables

    return run_tables(run)
