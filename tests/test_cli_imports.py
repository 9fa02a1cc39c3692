"""The read-only commands (gate, report, baseline, merge, export) never import torch: they run on
committed runs in CI jobs and laptops where torch's import alone costs seconds of CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "results" / "baselines"
CI = BASELINES / "ci-gate-h100"
CI_H200 = BASELINES / "ci-gate-h200"
H100 = BASELINES / "h100"

_PROBE = """
import sys, runpy
sys.argv = ["attnbench", *{args!r}]
try:
    runpy.run_module("attnbench", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = sorted(m for m in ("torch", "triton", "matplotlib", "pandas") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
print("CODE=" + str(code))
"""


def _modules_after(args: list[str]) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(args=args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    lines = proc.stdout.splitlines()
    heavy = next(line for line in lines if line.startswith("HEAVY="))[6:]
    code = next(line for line in lines if line.startswith("CODE="))[5:]
    return heavy, code


PANDAS_COMMANDS = ("report", "compare-studies", "export")  # the ones that build tables from rows


@pytest.mark.parametrize(
    "args",
    [
        ["gate", "--baseline", str(CI), "--current", str(CI)],
        ["gate", "--baseline", str(CI_H200), "--current", str(CI_H200 / "evidence" / "fresh" / "run-01")],
        ["baseline", "list"],
        ["export", str(CI), "--format", "csv", "--out", "{tmp}/x.csv"],
        ["report", str(H100), "--out", "{tmp}/report"],
        ["compare-studies", str(H100), str(BASELINES / "h200"), "--out", "{tmp}/cmp", "--no-plot"],
        ["config", "schema"],
        ["--version"],
    ],
    ids=lambda a: a[0] if a[0] != "baseline" else "baseline-list",  # gate twice: pytest numbers them
)
def test_read_only_commands_do_not_import_torch(args, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    heavy, code = _modules_after(args)
    assert "torch" not in heavy and "triton" not in heavy, (args, heavy)
    assert "matplotlib" not in heavy  # no --plot: no figures, no matplotlib
    if args[0] not in PANDAS_COMMANDS:  # pandas alone is ~0.35 s of CPU to import: only tables need it
        assert "pandas" not in heavy, (args, heavy)
    assert code in ("0", "None"), (args, code)


TINY = """name: tiny-merge
timing: {max_time_s: 0.02, min_samples: 3, max_samples: 5, warmup_ms: 1}
workloads:
  - name: d
    phase: decode
    batch: [1, 2]
    lengths: fixed:16
    q_heads: 2
    kv_heads: 2
    head_dim: 16
    dtype: fp32
"""


def test_merge_of_new_shards_checks_coverage_without_torch(tmp_path):
    from typer.testing import CliRunner

    from attnbench.cli import app

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    shards = []
    for k in (1, 2):
        out = tmp_path / f"s{k}"
        result = CliRunner().invoke(app, ["sweep", str(cfg), "--device", "cpu", "--backend", "naive",
                                          "--no-isolate", "--shard", f"{k}/2", "--out", str(out)])
        assert result.exit_code == 0, result.output
        shards.append(str(out))
    heavy, code = _modules_after(["merge", *shards, "--out", str(tmp_path / "m"), "--require-complete"])
    assert "torch" not in heavy and code in ("0", "None"), (heavy, code)


def _old_style_shards(tmp_path: Path) -> list[Path]:
    """Two shards of TINY as a sweep from before `planned_keys` wrote them: the key list removed."""
    from typer.testing import CliRunner

    from attnbench.cli import app

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    shards = []
    for k in (1, 2):
        out = tmp_path / f"old{k}"
        result = CliRunner().invoke(app, ["sweep", str(cfg), "--device", "cpu", "--backend", "naive",
                                          "--backend", "sdpa-math", "--no-isolate", "--shard", f"{k}/2",
                                          "--out", str(out)])
        assert result.exit_code == 0, result.output
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest.pop("planned_keys", None) is not None
        (out / "manifest.json").write_text(json.dumps(manifest))
        shards.append(out)
    return shards


def test_merge_of_old_shards_rebuilds_the_plan_without_torch(tmp_path):
    shards = _old_style_shards(tmp_path)
    args = ["merge", *map(str, shards), "--out", str(tmp_path / "m"), "--require-complete"]
    heavy, code = _modules_after(args)
    assert "torch" not in heavy and code in ("0", "None"), (heavy, code)
    coverage = json.loads((tmp_path / "m" / "manifest.json").read_text())["coverage"]
    assert coverage["missing_points"] == 0 and "note" not in coverage  # point by point, not counted


def test_merge_of_old_shards_names_a_lost_point_without_torch(tmp_path):
    shards = _old_style_shards(tmp_path)
    rows_file = shards[1] / "results.jsonl"
    lines = rows_file.read_text().splitlines()
    lost = json.loads(lines[0])
    rows_file.write_text("\n".join(lines[1:]) + "\n")
    args = ["merge", *map(str, shards), "--out", str(tmp_path / "m"), "--require-complete"]
    heavy, code = _modules_after(args)
    assert "torch" not in heavy and code not in ("0", "None"), (heavy, code)
    coverage = json.loads((tmp_path / "m" / "manifest.json").read_text())["coverage"]
    assert coverage["missing_points"] == 1
    assert coverage["missing_examples"] == [f"{lost['backend']} {lost['case_id']}"]
