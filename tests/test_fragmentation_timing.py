"""The memory study's serving iterations timed from a run's measured decode rows plus modelled linear
layers (fragmentation_timing), and the roofline fallback, said so, without GPU rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from attnbench.memory import iteration_time as ft
from attnbench.memory import study as frag

SETUP = {"num_layers": 40, "hidden_size": 5120, "dtype_bytes": 2, "weights_gb": 26, "hbm_gbps": 1555,
         "peak_tflops": 312, "kv_memory_gib": 12, "max_seq_len": 2048}
TAU = 1e-9  # seconds per KV token and layer of the synthetic rows (4 TB/s at 4 KiB a token)


def _row(batch: int, ctx: int, side: str, latency_ms: float, **extra) -> dict:
    paged = side == "paged"
    return {"case_id": f"d/decode/b{batch}/{ctx}/{side}", "phase": "decode", "status": "ok", "device": "cuda",
            "backend": "pk" if paged else "fk", "family": "paged" if paged else "flash",
            "block_size": 16 if paged else None, "batch": batch, "kv_lens": [ctx] * batch,
            "num_q_heads": 32, "num_kv_heads": 8, "head_dim": 128, "dtype": "bf16", "prefix_len": 0,
            "latency_ms_p50": latency_ms, **extra}


def write_gpu_run(path: Path, paged_factor: float = 1.2, device: str = "cuda") -> Path:
    rows = []
    for b in (1, 4, 16, 64):
        for c in (512, 2048, 8192):
            base = b * c * TAU * 1e3
            rows.append(_row(b, c, "contiguous", base))
            rows.append(_row(b, c, "paged", base * paged_factor))
    rows.append(_row(4, 2048, "contiguous", 1e-9, status="failed"))  # not ok: never used
    rows.append(_row(2, 100, "contiguous", 1e-9, kv_lens=[100, 50]))  # mixed lengths: not used
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({
        "device": device, "gpu_name": "NVIDIA H200",
        "calibration": {"matmul_tflops": 800.0, "copy_gbps": 4000.0}}))
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_attention_measured_exact_at_cases_scaled_to_the_model(tmp_path):
    run = write_gpu_run(tmp_path / "run")
    assert ft.no_measured_timing(run) is None
    model = ft.measured_iteration(run, SETUP)
    assert model.source["cases"] == {"paged": 12, "contiguous": 12}
    scale = (2 * 5120 * 2) / (2 * 8 * 128 * 2)  # the model's KV bytes per token and layer / the rows'
    # 16 requests of 2048 tokens: a measured case, so tau is the row's own
    want = 40 * TAU * scale * 16 * 2048
    assert model.attention_seconds(16 * 2048, 16, paged=False) == pytest.approx(want, rel=1e-9)
    assert model.attention_seconds(16 * 2048, 16, paged=True) == pytest.approx(1.2 * want, rel=1e-9)
    # between cases the interpolation stays between its neighbours' values
    mid = model.curves["contiguous"].tau(8, 4096)
    assert mid == pytest.approx(TAU, rel=1e-6)  # every case has the same tau here
    # the launch floor: one short request never costs less than the fastest measured call per layer
    floor = 1 * 512 * TAU
    assert model.attention_seconds(10, 1, paged=False) == pytest.approx(40 * floor, rel=1e-9)


def test_linear_layers_are_the_larger_of_compute_and_weight_reads(tmp_path):
    model = ft.measured_iteration(write_gpu_run(tmp_path / "run"), SETUP)
    params = 13e9
    weights_s = 26e9 / 4000e9
    assert model.linear_seconds(1) == pytest.approx(weights_s)  # memory-bound at one token
    many = 10_000
    assert model.linear_seconds(many) == pytest.approx(2 * params * many / 800e12)  # compute-bound
    assert model.seconds(0, 0, 0, True) == pytest.approx(weights_s)


def test_interpolation_follows_measured_trend(tmp_path):
    run = tmp_path / "run"
    write_gpu_run(run)
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    for r in rows:  # make tau grow with context: 1 ns at 512, 4 ns at 8192
        if r["status"] == "ok" and len(set(r["kv_lens"])) == 1:
            c = r["kv_lens"][0]
            r["latency_ms_p50"] = r["batch"] * c * TAU * (c / 512) ** 0.5 * 1e3
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curve = ft.measured_iteration(run, SETUP).curves["contiguous"]
    lo, mid, hi = curve.tau(16, 512), curve.tau(16, 1024), curve.tau(16, 2048)
    assert lo < mid < hi
    assert math.isclose(lo, TAU, rel_tol=1e-9) and math.isclose(hi, 2 * TAU, rel_tol=1e-9)


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda p: write_gpu_run(p, device="cpu"), "not a GPU"),
    (lambda p: _without(write_gpu_run(p), "paged"), "paged side"),
    (lambda p: _no_calibration(write_gpu_run(p)), "calibrated"),
])
def test_no_measured_timing_says_why(tmp_path, mutate, why):
    run = mutate(tmp_path / "run")
    reason = ft.no_measured_timing(run)
    assert reason and why in reason
    assert ft.no_measured_timing(None) == "no run directory given"


def _without(run: Path, side: str) -> Path:
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    keep = [r for r in rows if (r["block_size"] is not None) != (side == "paged")]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    return run


def _no_calibration(run: Path) -> Path:
    m = json.loads((run / "manifest.json").read_text())
    m["calibration"] = {}
    (run / "manifest.json").write_text(json.dumps(m))
    return run


STUDY = """
name: t
setup: {num_layers: 40, hidden_size: 5120, dtype_bytes: 2, kv_memory_gib: 12, max_seq_len: 2048,
        weights_gb: 26, hbm_gbps: 1555, peak_tflops: 312}
loads: [saturated, paper-rate]
datasets:
  alpaca: {num_requests: 600, request_rate: 30.0}
policies: [orca-max, paged]
paged_block_size: 16
seed: 0
"""


def _study(tmp_path: Path) -> frag.StudyConfig:
    path = tmp_path / "study.yaml"
    path.write_text(STUDY)
    return frag.load_config(path)


def _batch(result: dict, policy: str) -> float:
    rows = result["rows_by_load"]["paper-rate"]
    return next(r["mean_batched_requests"] for r in rows if r["policy"] == policy)


def test_study_uses_measured_timing_and_says_so(tmp_path):
    cfg = _study(tmp_path)
    roof = frag.run_study(cfg)
    assert roof["setup"]["iteration_time"]["kind"] == "roofline"
    assert any("roofline" in n and "not measured: no run directory given" in n for n in roof["notes"])
    run = write_gpu_run(tmp_path / "run")
    measured = frag.run_study(cfg, timing_run=run)
    it = measured["setup"]["iteration_time"]
    assert it["kind"] == "measured" and it["gpu"] == "NVIDIA H200"
    assert any("attention measured in" in n and "linear layers modelled" in n for n in measured["notes"])
    assert any("Little's law" in n for n in measured["notes"])
    # a server 2.6x faster in weight reads (4000 vs 1555 GB/s) holds fewer requests at the same rate
    assert _batch(measured, "paged") < 0.7 * _batch(roof, "paged")
    paper_rows = [r for r in measured["rows_by_load"]["paper-rate"] if r["paper_mean_batched_requests"]]
    assert {r["policy"] for r in paper_rows} == {"orca-max", "paged"}


def test_cpu_run_falls_back_to_roofline_and_says_why(tmp_path):
    cfg = _study(tmp_path)
    result = frag.run_study(cfg, timing_run=write_gpu_run(tmp_path / "run", device="cpu"))
    assert result["setup"]["iteration_time"] == {"kind": "roofline", "reason": "the run is on cpu, not a GPU",
                                                 "hbm_gbps": 1555, "peak_tflops": 312}
    assert any("not measured: the run is on cpu, not a GPU" in n for n in result["notes"])


def test_sweep_study_times_from_its_own_run(tmp_path):
    from attnbench.memory.in_sweep import write_into_run

    run = write_gpu_run(tmp_path / "run")
    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    written = json.loads(write_into_run(study, run).read_text())
    assert written["setup"]["iteration_time"]["run"] == str(run)
    md = (run / "fragmentation.md").read_text()
    assert "| iteration time | Iteration time: attention measured in" in md
    assert "Mean batched requests at paper-rate against the paper's Fig. 13" in md


def test_report_notes_compare_paper_rate_batches_with_the_paper():
    from attnbench.report.fragmentation import load_batch_notes

    study = {"rows_by_load": {"paper-rate": [
        {"dataset": "alpaca", "policy": "paged", "mean_batched_requests": 33.1,
         "paper_mean_batched_requests": 132.44},
        {"dataset": "alpaca", "policy": "paged", "mean_batched_requests": 30.0,
         "paper_mean_batched_requests": None},
    ]}}
    (note,) = load_batch_notes(study)
    assert note == ("Load paper-rate: mean batched requests simulated / paper Fig. 13: "
                    "alpaca paged 33.1 / 132 (0.250x).")


def test_cli_timing_from(tmp_path):
    from typer.testing import CliRunner

    from attnbench.cli import app

    study = tmp_path / "study.yaml"
    study.write_text(STUDY)
    runner = CliRunner()
    bad = runner.invoke(app, ["fragmentation", str(study), "--timing-from", str(tmp_path / "nope"),
                              "--out", str(tmp_path / "o1")])
    assert bad.exit_code == 2 and "--timing-from" in bad.output and "not a run directory" in bad.output
    run = str(write_gpu_run(tmp_path / "run"))
    out = str(tmp_path / "o2")
    ok = runner.invoke(app, ["fragmentation", str(study), "--timing-from", run, "--out", out])
    assert ok.exit_code == 0, ok.output
    written = json.loads((tmp_path / "o2" / "fragmentation.json").read_text())
    assert written["setup"]["iteration_time"]["kind"] == "measured"
