"""attnbench report on odd input and from the command line: names and reasons that carry HTML, a torn
or empty run, what is refused (a ReportError, exit 2), the command's defaults. The report's tables
and figures on the fixture runs: test_report.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

import make_fixture_run as fx  # noqa: E402

from attnbench.cli import app  # noqa: E402
from attnbench.report.build import write_report  # noqa: E402
from attnbench.report.load import ReportError  # noqa: E402


def test_html_is_self_contained_and_escaped(tmp_path):
    run = fx.make_h100_like(tmp_path / "evil", name_override='<script>alert("x")</script>')
    rows = (run / "results.jsonl").read_text().splitlines()
    first = json.loads(rows[0])
    first.update(status="failed", reason="<img src=x onerror=alert(1)>")
    rows[0] = json.dumps(first)
    (run / "results.jsonl").write_text("\n".join(rows) + "\n")
    _, written = write_report([run], tmp_path / "out", plot=False)
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside
    md = (tmp_path / "out" / "report.md").read_text()
    assert "<script" not in md and "&lt;script" in md


def test_partial_and_empty_runs(tmp_path):
    run = fx.make_h100_like(tmp_path / "partial")
    lines = (run / "results.jsonl").read_text().splitlines()
    (run / "results.jsonl").write_text("\n".join(lines[:40]) + "\n" + lines[40][:30])  # torn last line
    report, _ = write_report([run], tmp_path / "p", plot=True)
    assert report.table("claims").records
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest = {"run_id": "empty", "device": "cpu", "status": "running"}
    (empty / "manifest.json").write_text(json.dumps(manifest))
    report, written = write_report([empty], tmp_path / "e", plot=True)
    assert all(f.path is None for f in report.figures)
    assert report.table("quick_summary").empty_reason
    assert (tmp_path / "e" / "report.html").exists()


def test_bad_input_is_a_report_error(tmp_path):
    with pytest.raises(ReportError, match="manifest.json"):
        write_report([tmp_path], plot=False)
    run = fx.make_cpu_only(tmp_path / "cpu")
    with pytest.raises(ReportError, match="allowed values are md, html"):
        write_report([run], formats="md,pdf")
    with pytest.raises(ReportError, match="--fragmentation"):
        write_report([run], fragmentation_path=tmp_path / "missing.json")


def test_cli_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = CliRunner()
    res = cli.invoke(app, ["report"])
    assert res.exit_code == 2
    assert "no run directories found" in res.output
    run = fx.make_cpu_only(tmp_path / "results" / "cpu")
    res = cli.invoke(app, ["report", "--format", "md"])  # default: the newest run under results/
    assert res.exit_code == 0, res.output
    assert (run / "report" / "report.md").exists() and not (run / "report" / "report.html").exists()
    res = cli.invoke(app, ["report", str(run), "--format", "svg"])
    assert res.exit_code == 2 and "allowed values" in res.output
    frag = tmp_path / "frag.json"
    frag.write_text(json.dumps(fx.FRAGMENTATION))
    res = cli.invoke(app, ["report", str(run), "--out", str(tmp_path / "o"), "--fragmentation", str(frag)])
    assert res.exit_code == 0, res.output
    assert "sharegpt" in (tmp_path / "o" / "report.md").read_text()
