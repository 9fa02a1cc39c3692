"""The evidence analysis script on synthetic runs: it passes quiet runs and catches planted +5%."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.synthetic_runs import run_medians, runs_rows, write_runs

ROOT = Path(__file__).parent.parent
KEYS = [
    ("decode-gqa/decode/b64/fixed4096-x/hq32-hkv8/d128/bf16/full", "triton-paged"),
    ("decode-long/decode/b4/fixed32768-x/hq32-hkv8/d128/bf16/full", "cuda-paged"),
    ("prefill/prefill/b4/fixed4096-x/hq32-hkv32/d128/bf16/causal", "triton-flash"),
]


def _analyse(out: Path, sds: list[float]) -> tuple[int, dict]:
    rng = np.random.default_rng(41)
    meds = run_medians(rng, [0.4, 0.3, 2.0], sds, 9)
    write_runs(out / "baseline", runs_rows(rng, KEYS, meds[:5], 0.01, 40))
    write_runs(out / "fresh", runs_rows(rng, KEYS, meds[5:], 0.01, 40))
    cmd = [sys.executable, "scripts/gate_evidence_analysis.py", str(out), "--max-combos", "60"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, timeout=300
    )
    return done.returncode, json.loads((out / "evidence" / "summary.json").read_text())


def test_quiet_runs_pass_and_planted_slowdowns_are_caught(tmp_path):
    code, s = _analyse(tmp_path / "quiet", [0.002, 0.002, 0.06])  # prefill: power-capped, NOISY
    assert code == 0 and s["passed"] and s["fresh_all_pass"] and s["leave_out_failures"] == 0
    assert s["leave_out_combinations"] == 60 and s["planted"]["5%"]["catch_rate"] >= 0.8
    assert len(list((tmp_path / "quiet" / "evidence").glob("gate-run-*.md"))) == 4
    stable = {p["case_id"].split("/")[0] for p in s["points"] if p["stable"]}
    assert stable == {"decode-gqa", "decode-long"}


def test_noisy_stable_points_fail_the_evidence(tmp_path):
    code, s = _analyse(tmp_path / "noisy", [0.03, 0.03, 0.06])  # decode as noisy as prefill
    assert code == 1 and not s["passed"] and s["planted"]["5%"]["catch_rate"] < 0.8
