"""scripts/gpu_cuda_patterns_check.py: its GPU plan covers what issue 22 asks of the CUDA kernels, every
planned case is one the backends accept, and its rule rejects a wrong output (no GPU needed)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

from attnbench.case import Case
from attnbench.inputs import build_inputs

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_cuda_patterns_check.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gpu_cuda_patterns_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_plan_covers_the_issue_grid(script):
    runs = script.gpu_runs()
    paged = [(case, env) for _, b, case, env in runs if b.name == "cuda-paged"]
    flash = [case for _, b, case, _ in runs if b.name == "cuda-flash"]
    assert {c.block_size for c, _ in paged} == {8, 16, 32}
    assert {c.kv_layout for c, _ in paged} == {"shuffled", "contiguous"}
    assert {e["ATTNBENCH_CUDA_PAGED_VARIANT"] for _, e in paged} == {"v1", "v2"}
    headline = [c for c, _ in paged if c.window == 4096 and c.softcap == 50.0]
    assert headline and all(max(c.kv_lens) == 32768 and min(c.kv_lens) == 1 for c in headline)
    assert any(c.gqa_ratio > 1 for c, _ in paged) and any(c.gqa_ratio == 1 for c, _ in paged)
    assert {c.phase for c in flash} == {"prefill", "mixed"}
    assert {c.window for c in flash} == {0, 100, 4096}
    assert any(c.alibi for c, _ in paged) and any(c.alibi for c in flash)
    assert any(c.softcap == 1.0 for c in flash) and any(c.softcap == 1.0 for c, _ in paged)
    assert script.gpu_plan_unsupported() == []


def test_rule_rejects_a_wrong_window(script):
    case = Case("t", "prefill", (3, 50), (3, 50), 4, 2, 64, "fp32", True, window=7, softcap=1.0)
    inputs = build_inputs(case, "cpu")
    rule = script.Rule(False)
    cu_q, cu_k = inputs.cu_seqlens_q.tolist(), inputs.cu_seqlens_k.tolist()
    good = script.pattern_attention(case, inputs.q, inputs.k, inputs.v, cu_q, cu_k).float()
    assert rule.check(case, inputs, good)["ok"]
    wider = Case("t", "prefill", (3, 50), (3, 50), 4, 2, 64, "fp32", True, window=8, softcap=1.0)
    wrong = script.pattern_attention(wider, inputs.q, inputs.k, inputs.v, cu_q, cu_k).float()
    res = rule.check(case, inputs, wrong)
    assert not res["ok"] and res["worst_seq"] == 1
    nan = good.clone()
    nan[-1, 0, 0] = float("nan")
    assert not rule.check(case, inputs, nan)["ok"]


@pytest.mark.skipif(shutil.which("g++") is None, reason="the dry run's stand-in is cpu-paged (g++)")
def test_dry_run_passes_and_writes_its_json(script, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["x", str(tmp_path), "--dry-run"])
    paged, flash = script.paged_cases, script.flash_cases  # every 7th case: CI time
    monkeypatch.setattr(script, "paged_cases", lambda small: paged(small)[::7])
    monkeypatch.setattr(script, "flash_cases", lambda small: flash(small)[::3])
    torch.manual_seed(0)
    assert script.main() == 0
    text = (tmp_path / "cuda_patterns.json").read_text()
    assert '"planted_wrong_window_caught": true' in text and '"failed": 0' in text
