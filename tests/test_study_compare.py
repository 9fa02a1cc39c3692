"""compare-studies: two runs matched by case_id and backend; decode (bandwidth-bound) and prefill
(compute-bound) speed-ups per backend against the calibrated ceilings, measurement differences, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.report.study_compare import compare_studies, write

BW_A, BW_B = 3000.0, 4200.0  # calibrated GB/s: B has 1.4x the bandwidth, the same matmul rate


def _row(case: str, backend: str, phase: str, lat: float, family: str = "flash", status: str = "ok",
         variant: str | None = None, gbps: float | None = None) -> dict:
    return {"case_id": case, "backend": backend, "phase": phase, "family": family, "impl": "x",
            "status": status, "reason": "" if status == "ok" else "unsupported: x", "latency_ms_p50": lat,
            "n_samples": 20, "batch": 4, "q_lens": [1] * 4, "kv_lens": [4096] * 4, "num_q_heads": 32,
            "num_kv_heads": 8, "head_dim": 128, "dtype": "bf16", "block_size": None, "kv_layout": "shuffled",
            "causal": False, "seqlen_mix": "fixed4096", "workload": case.split("/")[0], "prefix_len": 0,
            "tags": [], "variant": variant, "hbm_gbps": gbps, "total_q": 4, "total_kv": 16384, "max_q": 1,
            "max_kv": 4096}


def _runs(tmp_path: Path) -> tuple[Path, Path]:
    a_rows, b_rows = [], []
    for i in range(4):  # decode: B 1.4x faster (bandwidth); prefill: equal (compute)
        a_rows.append(_row(f"dec/decode/{i}", "k1", "decode", 1.0 + i, gbps=2800))
        b_rows.append(_row(f"dec/decode/{i}", "k1", "decode", (1.0 + i) / 1.4, gbps=3900))
        a_rows.append(_row(f"pre/prefill/{i}", "k1", "prefill", 2.0 + i))
        b_rows.append(_row(f"pre/prefill/{i}", "k1", "prefill", 2.0 + i))
    # two variants of one point in B: its fastest stands for it
    a_rows.append(_row("dec/decode/v", "k2", "decode", 1.2, family="paged", variant="cfg1"))
    b_rows.append(_row("dec/decode/v", "k2", "decode", 1.0, family="paged", variant="cfg2"))
    b_rows.append(_row("dec/decode/v", "k2", "decode", 0.6, family="paged", variant="cfg3"))
    # launch-dominated: its own class, out of the decode geometric mean
    a_rows.append(_row("dec/decode/tiny", "k2", "decode", 0.1, family="paged"))
    b_rows.append(_row("dec/decode/tiny", "k2", "decode", 0.02, family="paged"))
    # not ok in one run; only in one run
    a_rows.append(_row("dec/decode/skip", "k1", "decode", 1.0))
    b_rows.append(_row("dec/decode/skip", "k1", "decode", None, status="skipped"))
    a_rows.append(_row("only/decode/a", "k1", "decode", 1.0))
    paths = []
    runs = (("a", a_rows, BW_A, "NVIDIA H100 80GB HBM3", {"max_samples": 200}),
            ("b", b_rows, BW_B, "NVIDIA H200", {"max_samples": 500, "hold": True}))
    for name, rows, bw, gpu, timing in runs:
        p = tmp_path / name
        p.mkdir()
        (p / "manifest.json").write_text(json.dumps({
            "run_id": name, "device": "cuda", "gpu_name": gpu, "config_name": "h100", "config_hash": "c0",
            "timing": timing, "calibration": {"copy_gbps": bw, "matmul_tflops": 790.0}}))
        (p / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(p)
    return paths[0], paths[1]


def test_regimes_and_backends(tmp_path):
    a, b = _runs(tmp_path)
    cmp = compare_studies(a, b)
    assert cmp.unmatched == {"matched ok in both": 10, "only in A": 1, "only in B": 0,
                             "in both, not ok in one": 1}
    regimes = {r["cls"]: r for r in next(t for t in cmp.tables if t.key == "regimes").records}
    assert regimes["decode"]["speedup"] == pytest.approx((1.4**4 * 2.0) ** (1 / 5))
    assert regimes["prefill"]["speedup"] == pytest.approx(1.0)
    assert regimes["small"]["n"] == 1 and regimes["small"]["speedup"] == pytest.approx(5.0)
    assert regimes["decode near the roof"]["speedup"] == pytest.approx(1.4)  # k1's 3900 GB/s >= 50% of 4200
    assert regimes["prefill"]["bandwidth_share"] == pytest.approx(0.0)
    backends = {r["backend"]: r for r in next(t for t in cmp.tables if t.key == "backends").records}
    assert backends["k1"]["decode"] == pytest.approx(1.4) and backends["k2"]["decode"] == pytest.approx(2.0)
    notes = next(t for t in cmp.tables if t.key == "regimes").notes
    assert any("prefill (compute-bound) 1.00x" in n for n in notes)
    diffs = {row[0]: row[1:] for row in next(t for t in cmp.tables if t.key == "differences").rows}
    assert diffs["timing.hold"] == ["not set", "True"] and diffs["timing.max_samples"] == ["200", "500"]
    assert "config_hash" not in diffs


def test_writes_markdown_html_and_figure(tmp_path):
    a, b = _runs(tmp_path)
    written = write(compare_studies(a, b), tmp_path / "out")
    names = {p.name for p in written}
    assert names == {"compare.md", "compare.html", "speedup_by_backend.png"}
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "## Speed-up by regime" in md and "figures/speedup_by_backend.png" in md
    html = (tmp_path / "out" / "compare.html").read_text()
    assert "data:image/png;base64," in html and "<script" not in html


def test_cli(tmp_path):
    a, b = _runs(tmp_path)
    runner = CliRunner()
    res = runner.invoke(app, ["compare-studies", str(a), str(b), "--out", str(tmp_path / "o"), "--no-plot"])
    assert res.exit_code == 0, res.output
    assert "10 points matched" in res.output and (tmp_path / "o" / "compare.md").exists()
    assert not (tmp_path / "o" / "figures").exists()
    bad = runner.invoke(app, ["compare-studies", str(a), str(tmp_path / "nope")])
    assert bad.exit_code == 2 and "not a run directory" in bad.output and len(bad.output.splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text(json.dumps({"run_id": "e", "device": "cuda"}))
    (empty / "results.jsonl").write_text("")
    none = runner.invoke(app, ["compare-studies", str(a), str(empty)])
    assert none.exit_code == 2 and "share no point" in none.output
