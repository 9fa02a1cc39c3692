"""The CPU demo end to end: the embedded CPU default (configs/smoke.yaml) gives ok rows for naive, the CPU
flash backend and the CPU paged kernel, writes the KV-cache study and the paired block-order
measurement into the run directory, and its report's claims check has measured verdicts for the
claims a CPU can answer (and says why not for the others)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.config.sweep_config import ConfigError, parse_config
from attnbench.memory.in_sweep import resolve_study
from attnbench.paths import configs_dir
from attnbench.report.build import run_tables
from attnbench.report.load import load_one

runner = CliRunner()
SMOKE = configs_dir() / "smoke.yaml"
MEASURED_ON_CPU = (
    "flash_2_4x", "indirection_layout", "memory_n2_vs_n", "paged_fits_more", "paged_less_waste"
)
WORKLOAD = ("workloads:\n  - name: w\n    phase: prefill\n    lengths: ['fixed:8']\n    q_heads: [2]\n"
            "    kv_heads: [2]\n    head_dim: [16]\n    dtype: [fp32]\n")


@pytest.mark.skipif(shutil.which("g++") is None, reason="cpu-paged needs g++ with OpenMP")
def test_smoke_sweep_and_report_answer_the_cpu_claims(tmp_path):
    run_dir = tmp_path / "run"
    # the paired layout post-step with fewer rounds than the demo's (its records, not its precision)
    fewer = ["--set", "layout_pairs.rounds=2", "--set", "layout_pairs.max_time_s=1"]
    result = runner.invoke(app, ["sweep", str(SMOKE), "--out", str(run_dir), "--device", "cpu", *fewer],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    ok = {r["backend"] for r in rows if r["status"] == "ok"}
    assert {"naive", "sdpa-flash-cpu", "cpu-paged"} <= ok
    assert not [r for r in rows if r["status"] in ("failed", "incorrect")]
    assert all(r["working_mem_bytes"] is not None for r in rows if r["status"] == "ok")
    study = json.loads((run_dir / "fragmentation.json").read_text())
    assert {r["policy"] for r in study["rows"]} == {"orca-max", "orca-pow2", "orca-oracle", "paged"}

    assert "layout pairs: 2 (case, backend) pairs in" in result.output
    pairs = json.loads((run_dir / "layout_pairs.json").read_text())["records"]
    assert {(r["backend"], r["status"], r["rounds"]) for r in pairs} == {("cpu-paged", "ok", 2)}

    claims = {c["key"]: c for c in run_tables(load_one(run_dir))["claims"].records}
    assert claims["indirection_layout"]["values"]["source"] == "layout_pairs"
    for key in MEASURED_ON_CPU:
        assert not claims[key]["verdict"].startswith("not measured"), (key, claims[key]["verdict"])
    assert "Nsight Compute" in claims["flash_halves_hbm"]["verdict"]
    assert "GPU" in claims["flash_halves_hbm"]["verdict"]


def test_study_resolves_beside_the_config_or_shipped_and_bad_ones_fail_before_the_points(tmp_path):
    shipped = parse_config(f"name: x\nfragmentation: fragmentation-demo.yaml\n{WORKLOAD}",
                           str(tmp_path / "sweep.yaml"))
    assert resolve_study(shipped) == configs_dir() / "fragmentation-demo.yaml"
    local = tmp_path / "study.yaml"
    local.write_text((configs_dir() / "fragmentation-demo.yaml").read_text())
    beside = parse_config(f"name: x\nfragmentation: study.yaml\n{WORKLOAD}", str(tmp_path / "sweep.yaml"))
    assert resolve_study(beside) == tmp_path / "study.yaml"
    assert resolve_study(parse_config(f"name: x\n{WORKLOAD}")) is None
    missing = parse_config(f"name: x\nfragmentation: nowhere.yaml\n{WORKLOAD}", str(tmp_path / "s.yaml"))
    with pytest.raises(ConfigError, match="fragmentation: 'nowhere.yaml' not found"):
        resolve_study(missing)
    local.write_text("name: broken\nloads: [sometimes]\n")
    with pytest.raises(ConfigError, match="fragmentation: .*study.yaml: "):
        resolve_study(beside)
    with pytest.raises(ConfigError, match="fragmentation: bad value 3"):
        parse_config(f"name: x\nfragmentation: 3\n{WORKLOAD}")


def test_a_bad_study_stops_the_sweep_with_one_line_and_exit_2(tmp_path):
    (tmp_path / "study.yaml").write_text("name: broken\n")
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(f"name: x\nfragmentation: study.yaml\n{WORKLOAD}")
    result = runner.invoke(app, ["sweep", str(cfg), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert result.exit_code == 2
    assert "fragmentation:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "results.jsonl").exists()
