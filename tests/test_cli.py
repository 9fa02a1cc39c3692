"""The CLI end to end on a CPU."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.paths import configs_dir

runner = CliRunner()
SMOKE = str(configs_dir() / "smoke.yaml")


def invoke(*args):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_smoke_sweep_on_cpu_gives_ok_rows_and_listed_skips(tmp_path):
    out = tmp_path / "run"
    result = invoke("sweep", SMOKE, "--out", str(out), "--device", "cpu")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ok = {r["backend"] for r in rows if r["status"] == "ok"}
    assert {"naive", "sdpa-math"} <= ok
    assert all(r["latency_ms_p50"] > 0 for r in rows if r["status"] == "ok")
    skipped = {r["backend"]: r["reason"] for r in rows if r["status"] == "skipped"}
    assert "sdpa-flash" in skipped and "cuda" in skipped["sdpa-flash"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["device"] == "cpu" and manifest["timer"] == "host-perf-counter"
    assert "summary by backend" in result.output


def test_dry_run_prints_plan_and_count(tmp_path):
    result = invoke("sweep", SMOKE, "--dry-run", "--device", "cpu")
    assert result.exit_code == 0
    assert "points:" in result.output and "to measure" in result.output


def test_bad_config_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nworkloads:\n  - phase: prefill\n    lengths: [fixed:8]\n    q_heads: [2]\n"
        "    kv_heads: [2]\n    head_dim: [sixteen]\n"
    )
    result = runner.invoke(app, ["sweep", str(bad), "--dry-run"])
    assert result.exit_code == 2
    assert "head_dim: bad value 'sixteen'" in result.output
    assert "Traceback" not in result.output


def test_missing_config_and_unknown_backend_exit_2(tmp_path):
    assert runner.invoke(app, ["sweep", str(tmp_path / "nope.yaml")]).exit_code == 2
    result = runner.invoke(app, ["sweep", SMOKE, "--backends", "warp-drive", "--dry-run"])
    assert result.exit_code == 2 and "unknown backend 'warp-drive'" in result.output
    result = runner.invoke(app, ["run", "--backend", "warp-drive", "--device", "cpu"])
    assert result.exit_code == 2


def test_cuda_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        return
    result = runner.invoke(app, ["run", "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA GPU" in result.output


def test_run_json_one_object_per_backend():
    result = invoke(
        "run",
        "--backend",
        "naive",
        "--backend",
        "sdpa-math",
        "--backend",
        "sdpa-flash",
        "--seqlen",
        "17,40",
        "--q-heads",
        "4",
        "--kv-heads",
        "2",
        "--head-dim",
        "32",
        "--dtype",
        "fp32",
        "--device",
        "cpu",
        "--json",
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [r["backend"] for r in rows] == ["naive", "sdpa-math", "sdpa-flash"]
    assert rows[0]["status"] == "ok" and rows[0]["q_lens"] == [17, 40] and rows[2]["status"] == "skipped"


def test_run_decode_paged_naive():
    result = invoke(
        "run",
        "--backend",
        "naive",
        "--phase",
        "decode",
        "--kv-len",
        "1,17,129",
        "--q-heads",
        "4",
        "--kv-heads",
        "1",
        "--head-dim",
        "16",
        "--dtype",
        "fp32",
        "--block-size",
        "8",
        "--device",
        "cpu",
        "--json",
    )
    row = json.loads(result.output.strip().splitlines()[0])
    assert (
        row["status"] == "ok" and row["block_size"] == 8 and row["kv_bytes_allocated"] >= row["kv_bytes_used"]
    )


def test_resume_refuses_another_config(tmp_path):
    out = tmp_path / "run"
    invoke("sweep", SMOKE, "--out", str(out), "--device", "cpu", "--backends", "naive")
    other = tmp_path / "other.yaml"
    other.write_text((configs_dir() / "smoke.yaml").read_text() + "\n# changed\n")
    result = runner.invoke(app, ["sweep", str(other), "--out", str(out), "--resume", "--device", "cpu"])
    assert result.exit_code == 2 and "resume needs the same config" in result.output


def test_backends_and_doctor():
    result = invoke("backends", "--device", "cpu")
    assert result.exit_code == 0 and "sdpa-flash" in result.output and "naive" in result.output
    result = invoke("doctor", "--no-calibrate", "--json")
    info = json.loads(result.output)
    assert info["torch"] and "nvml" in info
