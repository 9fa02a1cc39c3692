"""`attnbench export`: every format read back (pandas for the tables) and checked against the shape
its consumer documents; run identity on every row."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.export import identified_rows
from attnbench.runner.results import RunDir

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "results" / "baselines" / "ci-gate-h100"
runner = CliRunner()


def export(run: Path, fmt: str, out: Path | None = None):
    args = ["export", str(run), "--format", fmt] + (["--out", str(out)] if out else [])
    return runner.invoke(app, args, catch_exceptions=False)


@pytest.fixture
def old_run(tmp_path) -> Path:
    """A run written before rows carried their identity: a manifest with it, rows without."""
    run = tmp_path / "old"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps(
        {"run_id": "old-run", "gpu_name": "NVIDIA H100 80GB HBM3", "git_commit": "abc123",
         "timer": "cuda-events"}
    ))
    base = {"case_id": "w/decode/b2", "workload": "w", "phase": "decode", "batch": 2, "q_lens": [1, 1],
            "status": "ok", "latency_ms_ci_low": 0.0095, "latency_ms_ci_high": 0.0105, "tflops": 1.5,
            "n_samples": 4}
    rows = [
        {**base, "backend": "a", "latency_ms_p50": 0.01, "samples_ms": [0.009, 0.01, 0.01, 0.012]},
        {**base, "backend": "b", "latency_ms_p50": 0.02, "latency_ms_ci_low": 0.019,
         "latency_ms_ci_high": 0.021, "samples_ms": [0.02, 0.021, 0.019, 0.02]},
        {**base, "backend": "c", "status": "failed", "reason": "boom", "latency_ms_p50": None},
    ]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_identity_filled_from_the_manifest_for_old_runs(old_run):
    _, rows = identified_rows(old_run)
    assert {(r["run_id"], r["gpu_name"], r["git_commit"]) for r in rows} == {
        ("old-run", "NVIDIA H100 80GB HBM3", "abc123")
    }


def test_new_rows_carry_identity(tmp_path):
    run = RunDir(tmp_path / "r")
    run.create()
    run.write_manifest({"run_id": "r1", "gpu_name": None, "git_commit": "deadbeef"})
    run.append_row({"case_id": "c", "backend": "b", "status": "ok"})
    again = RunDir(tmp_path / "r")  # a resumed run reads its identity back from the manifest
    again.append_row({"case_id": "c2", "backend": "b", "status": "ok"})
    rows = run.rows()
    assert [r["run_id"] for r in rows] == ["r1", "r1"] and rows[0]["git_commit"] == "deadbeef"


def test_csv_reads_back_in_pandas_with_identity_and_lists(old_run, tmp_path):
    result = export(old_run, "csv")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(io.StringIO(result.stdout))
    assert list(df.columns[:3]) == ["run_id", "gpu_name", "git_commit"]
    assert len(df) == 3 and set(df["run_id"]) == {"old-run"}
    assert json.loads(df.loc[0, "samples_ms"]) == [0.009, 0.01, 0.01, 0.012]


def test_csv_of_a_committed_run_matches_its_rows(tmp_path):
    out = tmp_path / "ci.csv"
    assert export(CI, "csv", out).exit_code == 0
    df = pd.read_csv(out)
    n_rows = sum(1 for line in (CI / "results.jsonl").read_text().splitlines() if line.strip())
    assert len(df) == n_rows and df["run_id"].notna().all() and df["gpu_name"].str.contains("H100").all()


def test_parquet_reads_back(old_run, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "x.parquet"
    assert export(old_run, "parquet", out).exit_code == 0
    df = pd.read_parquet(out)
    assert len(df) == 3 and set(df["git_commit"]) == {"abc123"}
    assert df.loc[df["backend"] == "a", "latency_ms_p50"].iloc[0] == 0.01


def test_parquet_needs_out(old_run):
    result = export(old_run, "parquet")
    assert result.exit_code == 2 and "--out" in result.output


def test_github_action_benchmark_custom_smaller_is_better_shape(old_run):
    data = json.loads(export(old_run, "github-action-benchmark").stdout)
    assert isinstance(data, list) and len(data) == 2  # ok points only
    for entry in data:
        assert set(entry) <= {"name", "unit", "value", "range", "extra"}
        assert isinstance(entry["name"], str) and entry["unit"] == "ms"
        assert isinstance(entry["value"], float)
        assert entry["range"].startswith("± ") and "old-run" in entry["extra"]
    assert len({e["name"] for e in data}) == len(data)
    assert data[0]["value"] == 0.01


def test_bencher_metric_format_shape(old_run):
    data = json.loads(export(old_run, "bencher").stdout)
    assert len(data) == 2
    for name, measures in data.items():
        assert isinstance(name, str)
        for slug, metric in measures.items():
            assert slug in ("latency", "tflops")
            assert set(metric) <= {"value", "lower_value", "upper_value"}
            if "lower_value" in metric:
                assert metric["lower_value"] <= metric["value"] <= metric["upper_value"]
    a = next(m for n, m in data.items() if n.startswith("a "))
    assert a["latency"]["value"] == pytest.approx(0.01 * 1e6)  # ms -> ns


def test_pytest_benchmark_shape_and_stats(old_run):
    doc = json.loads(export(old_run, "pytest-benchmark").stdout)
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    assert doc["commit_info"]["id"] == "abc123"
    bench = next(b for b in doc["benchmarks"] if b["name"].startswith("a "))
    stats = bench["stats"]
    for key in ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "ops", "data"):
        assert key in stats
    assert stats["rounds"] == 4
    assert stats["min"] == pytest.approx(9e-6) and stats["median"] == pytest.approx(1e-5)


def _python_with_pytest_benchmark() -> str | None:
    for exe in ("python3", "python"):
        path = shutil.which(exe)
        probe = [path, "-c", "import pytest_benchmark.cli"] if path else None
        if probe and subprocess.run(probe, capture_output=True).returncode == 0:
            return path
    return None


def test_pytest_benchmark_compare_reads_the_export(tmp_path):
    python = _python_with_pytest_benchmark()
    if python is None:
        pytest.skip("pytest-benchmark not installed in any python on PATH")
    out = tmp_path / "0001_run.json"
    assert export(CI, "pytest-benchmark", out).exit_code == 0
    code = ("import sys; from pytest_benchmark.cli import main; "
            f"sys.argv = ['pytest-benchmark', 'compare', {str(out)!r}, '--columns', 'median,rounds']; main()")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "decode-gqa" in proc.stdout and "Median" in proc.stdout


def test_bad_format_and_bad_run_are_one_line(tmp_path, old_run):
    result = export(old_run, "xml")
    assert result.exit_code == 2 and "allowed values are csv" in result.output
    result = export(tmp_path / "nope", "csv")
    assert result.exit_code == 2 and "not a run directory" in result.output
    assert "Traceback" not in result.output
