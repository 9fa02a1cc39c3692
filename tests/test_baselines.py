"""Named baselines: save, list, resolve by name in the gate, GPU slugs (CPU only)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.gate.baselines import BaselineError, gpu_slug, list_baselines, save
from tests.synthetic_runs import noisy_pair, write_run

runner = CliRunner()


def gate_cli(*args: str):
    return runner.invoke(app, ["gate", *args])


def test_baseline_save_list_and_gate_by_name(tmp_path):
    b, c, _ = noisy_pair(tmp_path, 3, cv=0.03, n_samples=30, current_factor={1: 1.3})
    (b / "report").mkdir()
    (b / "report" / "report.md").write_text("# report\n")
    root = tmp_path / "baselines"
    out = runner.invoke(app, ["baseline", "save", str(b), "ci-gate-h100", "--baselines-dir", str(root)])
    assert out.exit_code == 0, out.output
    saved = root / "ci-gate-h100"
    assert {p.name for p in saved.iterdir()} == {"manifest.json", "results.jsonl", "report", "baseline.json"}
    assert (saved / "results.jsonl").read_text() == (b / "results.jsonl").read_text()
    assert (saved / "report" / "report.md").exists()
    again = runner.invoke(app, ["baseline", "save", str(c), "ci-gate-h100", "--baselines-dir", str(root)])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert (saved / "results.jsonl").read_text() == (b / "results.jsonl").read_text()
    listed = runner.invoke(app, ["baseline", "list", "--baselines-dir", str(root)], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "ci-gate-h100" in listed.stdout
    out = gate_cli("--baseline", "ci-gate-h100", "--current", str(c), "--baselines-dir", str(root))
    assert out.exit_code == 1
    out = gate_cli("--baseline", "ci-gate-a100", "--current", str(c), "--baselines-dir", str(root))
    assert out.exit_code == 2 and "ci-gate-h100" in out.stderr  # the message lists what exists
    args = ["baseline", "save", str(c), "ci-gate-h100", "--force", "--baselines-dir", str(root)]
    forced = runner.invoke(app, args)
    assert forced.exit_code == 0
    assert (saved / "results.jsonl").read_text() == (c / "results.jsonl").read_text()
    assert not (saved / "report").exists()
    assert [e["name"] for e in list_baselines(root)] == ["ci-gate-h100"]  # no temporary folders left


def test_baseline_save_refuses_bad_input(tmp_path):
    b, _, _ = noisy_pair(tmp_path, 2, cv=0.03, n_samples=10)
    root = tmp_path / "baselines"
    with pytest.raises(BaselineError, match="not allowed"):
        save(str(b), "../escape", baselines_dir=root)
    with pytest.raises(BaselineError, match="no such directory"):
        save(str(tmp_path / "missing"), "x", baselines_dir=root)
    write_run(tmp_path / "half", [], status="interrupted")
    with pytest.raises(BaselineError, match="not complete"):
        save(str(tmp_path / "half"), "x", baselines_dir=root)
    assert save(str(tmp_path / "half"), "x", force=True, baselines_dir=root).is_dir()


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA H100 PCIe", "h100"),
        ("NVIDIA A100-SXM4-80GB", "a100"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("NVIDIA L40S", "l40s"),
        ("Tesla V100-SXM2-16GB", "v100"),
    ],
)
def test_gpu_slug(name, slug):
    assert gpu_slug(name) == slug


def test_baseline_slug_command_reads_the_run_manifest(tmp_path):
    b, _, _ = noisy_pair(tmp_path, 1, cv=0.03, n_samples=10)
    out = runner.invoke(app, ["baseline", "slug", str(b)])
    assert out.exit_code == 0 and out.stdout.strip() == "h100"
    by_name = runner.invoke(app, ["baseline", "slug", "--gpu-name", "NVIDIA A100 80GB PCIe"])
    assert by_name.stdout.strip() == "a100"
    assert runner.invoke(app, ["baseline", "slug", str(tmp_path / "none")]).exit_code == 2
