"""`attnbench report` from the command line: committed baselines are not rewritten, the quick
summary shows n and the interval beside each median."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.report.output_dir import baseline_part, default_out

ROOT = Path(__file__).resolve().parent.parent
H100 = ROOT / "results" / "baselines" / "h100"
runner = CliRunner()


def test_default_out_of_a_baseline_is_outside_it(tmp_path):
    assert baseline_part(H100) == Path("h100")
    assert default_out(H100, in_place=False, reports_dir=tmp_path) == tmp_path / "h100"
    assert default_out(H100, in_place=True) == H100 / "report"
    nested = ROOT / "results" / "baselines" / "multi-gpu-h200x2" / "ci-gate"
    assert default_out(nested, False, tmp_path) == tmp_path / "multi-gpu-h200x2" / "ci-gate"
    assert default_out(tmp_path / "run1", False) == tmp_path / "run1" / "report"


def test_report_on_a_committed_baseline_leaves_tracked_files_alone(tmp_path, monkeypatch):
    copy = tmp_path / "results" / "baselines" / "h100"  # a copy: the test must not touch the real one
    shutil.copytree(H100, copy, ignore=shutil.ignore_patterns("report"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", str(copy), "--format", "md"])
    assert result.exit_code == 0, result.output
    assert not (copy / "report").exists()
    written = tmp_path / "results" / "reports" / "h100" / "report.md"
    assert written.exists() and "report written to results/reports/h100/" in result.output
    text = written.read_text()
    assert "Prefill p50 [95% CI] n" in text and " n=10 |" in text
    inplace = runner.invoke(app, ["report", str(copy), "--format", "md", "--in-place"])
    assert inplace.exit_code == 0 and (copy / "report" / "report.md").exists()
