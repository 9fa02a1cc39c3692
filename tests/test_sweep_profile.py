"""`attnbench sweep --profile` (attnbench.runner.profile_phase): what it profiles, that a CPU sweep
says why it takes no profile, and that the report joins RUN/profile on its own (CPU only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.config.sweep_config import parse_config
from attnbench.report.load import load_one
from attnbench.runner.profile_phase import PROFILE_DIR, profile_backends, profile_workloads

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import make_fixture_run as fx  # noqa: E402

runner = CliRunner()
WORKLOAD = """
  - name: {name}
    phase: {phase}
    batch: [1]
    lengths: ["fixed:64"]
    q_heads: [2]
    kv_heads: [2]
    head_dim: [32]
    dtype: [fp32]
"""


def _config(*named: tuple[str, str]) -> str:
    body = "".join(WORKLOAD.format(name=n, phase=p) for n, p in named)
    head = "name: prof\ndevice: cpu\nbackends: [naive]\ntiming: {max_samples: 3, min_samples: 3}\n"
    return f"{head}workloads:{body}"


def test_the_main_workloads_are_profiled_else_the_first_of_each_phase() -> None:
    both = parse_config(
        _config(("decode-x", "decode"), ("decode-main", "decode"), ("prefill-main", "prefill"))
    )
    assert profile_workloads(both) == ["decode-main", "prefill-main"]
    other = parse_config(_config(("p1", "prefill"), ("d1", "decode"), ("d2", "decode")))
    assert profile_workloads(other) == ["d1", "p1"]
    assert profile_backends({"flex", "naive", "cuda-paged"}) == ["naive", "cuda-paged"]


def test_a_cpu_sweep_with_profile_says_why_it_takes_none(tmp_path) -> None:
    cfg = tmp_path / "prof.yaml"
    cfg.write_text(_config(("decode-main", "decode")))
    res = runner.invoke(app, ["sweep", str(cfg), "--out", str(tmp_path / "run"), "--device", "cpu",
                              "--no-isolate", "--profile"])
    assert res.exit_code == 0, res.output
    assert "--profile" in res.output and "no profile taken" in res.output
    assert not (tmp_path / "run" / PROFILE_DIR).exists()


def test_the_report_joins_run_profile_without_being_told(tmp_path) -> None:
    run = fx.make_h100_like(tmp_path / "run")
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("dram_read_bytes", None)
        r.pop("dram_write_bytes", None)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = load_one(run).df
    assert "dram_read_bytes" not in before or before["dram_read_bytes"].notna().sum() == 0
    prof = run / PROFILE_DIR
    prof.mkdir()
    manifest = json.loads((run / "manifest.json").read_text())
    (prof / "manifest.json").write_text(json.dumps({**manifest, "tool": "ncu"}))
    picked = [dict(r, dram_read_bytes=3.0 * (r.get("min_hbm_bytes") or 1), dram_write_bytes=1.0)
              for r in rows if r.get("status") == "ok" and r.get("phase") == "prefill"][:4]
    (prof / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in picked))
    joined = load_one(run).df
    assert joined["dram_read_bytes"].notna().sum() == len(picked)
