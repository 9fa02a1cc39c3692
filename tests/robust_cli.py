"""What the robust-CLI tests share (test_robust_cli.py: bad input; test_robust_endings.py: how a sweep
ends): a small config, the test plugins' backends, and the checks that an error is one line and that
a manifest tells the truth about its rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.runner.results import read_rows

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

CONFIG = """
name: robust
timing: {max_time_s: 0.02, min_samples: 3, max_samples: 5, point_timeout_s: 30}
workloads:
  - name: p
    phase: prefill
    batch: [1]
    lengths: ["fixed:8", "fixed:12", "fixed:16"]
    q_heads: [2]
    kv_heads: [1]
    head_dim: [16]
    dtype: [fp32]
"""


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "tests.fake_backends")
    import attnbench.backends as b

    monkeypatch.setattr(b, "_loaded", False)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line_error(result, code: int, *needles: str) -> str:
    """The result failed with `code`, one `error:` line, no traceback; returns that line."""
    text = result.output
    assert result.exit_code == code, text
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    for needle in needles:
        assert needle in lines[0], text
    return lines[0]


def config(tmp_path: Path, text: str = CONFIG, name: str = "robust.yaml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def check_true(run_dir: Path, status: str, planned: int) -> dict:
    """The manifest's status and counts agree with the file; no duplicate rows."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows, bad = read_rows(run_dir / "results.jsonl")
    keys = [(r["case_id"], r["backend"]) for r in rows]
    assert manifest["status"] == status, manifest
    assert manifest["rows_written"] == len(rows) and manifest["rows_duplicated"] == 0
    assert len(keys) == len(set(keys))
    assert manifest["points_planned"] == planned
    assert manifest["points_missing"] == planned - len(set(keys))
    return manifest
