"""The GPU workflow runs the GPU tests before the gate and the A/B gate on pull requests."""

from __future__ import annotations

from pathlib import Path

import yaml

GPU = Path(__file__).parent.parent / ".github" / "workflows" / "gpu-regression.yml"


def _steps() -> list[dict]:
    return yaml.safe_load(GPU.read_text())["jobs"]["gate"]["steps"]


def _index(steps: list[dict], text: str) -> int:
    return next(i for i, s in enumerate(steps) if text in " ".join(str(s.get("run", "")).split()))


def test_gpu_tests_run_before_the_sweep_and_the_gate():
    s = _steps()
    gpu_tests = _index(s, "pytest -m gpu")
    assert (
        gpu_tests < _index(s, "attnbench sweep configs/ci-gate.yaml") < _index(s, "attnbench gate --baseline")
    )
    assert not s[gpu_tests].get("continue-on-error") and "if" not in s[gpu_tests]


def test_pull_requests_run_the_ab_gate_against_their_base():
    s = _steps()
    ab = s[_index(s, "attnbench gate ab")]
    text = " ".join(ab["run"].split())
    assert '--a "git:${{ github.event.pull_request.base.sha }}"' in text and "--b worktree" in text
    assert "--config configs/ci-gate.yaml" in text and "--junit" in text and "--summary" in text
    assert "pull_request" in ab["if"] and not ab.get("continue-on-error")
    assert _index(s, "attnbench gate ab") < next(
        i for i, x in enumerate(s) if "upload-artifact" in str(x.get("uses"))
    )
    checkout = next(x for x in s if str(x.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # git archive needs the base revision
