"""The everyday CLI surface: --version, -h, -q/-v, completion, line-per-point progress when piped."""

from __future__ import annotations

from typer.testing import CliRunner

from attnbench import __version__
from attnbench.cli import app
from attnbench.console import LineProgress, point_line
from attnbench.paths import configs_dir

runner = CliRunner()
SMOKE = str(configs_dir() / "smoke.yaml")


def test_version_and_short_help():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"attnbench {__version__}"
    for args in (["-h"], ["run", "-h"], ["baseline", "list", "-h"], ["config", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage:" in result.stdout, args


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def _sweep(tmp_path, *flags):
    out = tmp_path / "run"
    return runner.invoke(app, [*flags, "sweep", SMOKE, "--device", "cpu", "--workload", "decode", "--backend",
                               "naive", "--set", "workloads.decode.block_size=[]", "--out", str(out)])


def test_piped_sweep_prints_a_line_per_point(tmp_path):
    result = _sweep(tmp_path)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("[1/1 100%] ok naive decode/decode/")
    assert " n=" in lines[0] and "ms [" in lines[0]
    assert "summary by backend" in result.output


def test_quiet_sweep_prints_only_where_results_went(tmp_path):
    result = _sweep(tmp_path, "-q")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [f"results: {tmp_path / 'run' / 'results.jsonl'}"]


def test_point_line_for_a_failed_point_gives_its_reason():
    line = point_line({"status": "failed", "backend": "b", "case_id": "c", "reason": "boom"}, 3, 4)
    assert line == "[3/4 75%] failed b c: boom"


def test_line_progress_eta_counts_measured_points_only():
    lines = []

    class Sink:
        def print(self, text, **_):
            lines.append(text)

    p = LineProgress(Sink())
    p.start(3, 0)
    p.point_finished({"status": "skipped", "backend": "b", "case_id": "c1", "reason": "no gpu"})
    assert lines[-1] == "[1/3 33%] skipped b c1: no gpu"  # no ETA from skipped points alone
    p.point_finished({"status": "ok", "backend": "b", "case_id": "c2", "latency_ms_p50": 1.0, "n_samples": 3})
    assert "eta" in lines[-1] and "1.00 ms n=3" in lines[-1]
