"""--devices: one worker process per device writing one run; simulated on the CPU with two workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.backends.base import Prepared, register, registry
from attnbench.backends.naive import Naive
from attnbench.cli import app
from attnbench.config.sweep_config import parse_config
from attnbench.runner.multi_gpu import DevicesError, Worker, parse_devices, run_multi_device
from attnbench.runner.plan import build_plan
from attnbench.runner.results import RunDir
from attnbench.runner.sweep import Progress
from attnbench.sysinfo import environment

ROOT = Path(__file__).resolve().parent.parent
PROBE_ENV = "ATTNBENCH_TEST_PROBE_BARRIER"  # a folder: set, the worker processes register the probe


class EnvProbe(Naive):
    """Naive attention that reports the worker environment it ran in.

    Its first point in each worker waits (up to 60 s) until a point has started in two workers,
    so a run with two workers is known to have measured in both at once.
    """

    name = "test-env-probe"

    def prepare(self, case, inputs):
        barrier = Path(os.environ[PROBE_ENV])
        me = os.environ.get("ATTNBENCH_WORKER", "?")
        (barrier / me).touch()
        deadline = time.monotonic() + 60
        while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        p = super().prepare(case, inputs)
        info = {**p.info, "probe_worker": me, "probe_pid": os.getpid(),
                "probe_cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "probe_cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
        return Prepared(run=p.run, to_packed=p.to_packed, info=info)


if os.environ.get(PROBE_ENV):  # inside a worker process (see the fixture): register for the plan's names
    register(EnvProbe)


@pytest.fixture
def probe(monkeypatch, tmp_path):
    """The probe backend, known here and in the worker processes (which import this module as a plugin)."""
    import attnbench.backends as b

    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv(PROBE_ENV, str(barrier))
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "tests.test_multi_device")
    monkeypatch.setitem(registry(), EnvProbe.name, EnvProbe)
    monkeypatch.setattr(b, "_loaded", False)
    return barrier


CONFIG = """
name: multi
timing: {max_time_s: 0.02, min_samples: 3, max_samples: 5, warmup_ms: 1, point_timeout_s: 120}
workloads:
  - name: p
    phase: prefill
    batch: [1, 2, 3]
    lengths: ["fixed:16", "uniform:3-40"]
    q_heads: [2]
    kv_heads: [2, 1]
    head_dim: [16]
    dtype: [fp32]
  - name: d
    phase: decode
    batch: [3]
    lengths: ["uniform:1-70"]
    q_heads: [4]
    kv_heads: [2]
    head_dim: [16]
    dtype: [fp32]
    block_size: [8]
    kv_layout: [shuffled, contiguous]
"""
BACKENDS = ["naive", "sdpa-math", "sdpa-flash", "test-env-probe"]


def sweep(tmp_path, workers, progress=None, resume=False, run=None, backends=BACKENDS):
    cfg = parse_config(CONFIG, "multi.yaml")
    plan = build_plan(cfg, "cpu", backends)
    run = run or RunDir(tmp_path / "run")
    outcome = run_multi_device(cfg, plan, run, "cpu", environment("cpu"), workers, progress, resume=resume)
    return outcome, plan


def strict_rows(run: RunDir) -> list[dict]:
    """Every line of results.jsonl is one whole JSON object (no torn or interleaved lines)."""
    text = run.rows_path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def plan_keys(plan) -> list[tuple[str, str]]:
    return [(pc.case.case_id, b) for pc in plan.cases for b in [*pc.run, *pc.skip]]


def test_two_cpu_workers_write_one_run_and_lose_nothing(tmp_path, probe):
    workers = parse_devices("cpu,cpu", "cpu")
    outcome, plan = sweep(tmp_path, workers)
    rows = strict_rows(outcome.run_dir)
    keys = [(r["case_id"], r["backend"]) for r in rows]
    assert len(keys) == len(set(keys)) == plan.n_points  # every planned point exactly once
    assert set(keys) == set(plan_keys(plan))
    measured = [r for r in rows if r["status"] != "skipped"]
    assert {r["status"] for r in measured} == {"ok"}
    assert all(r["latency_ms_p50"] > 0 and r["samples_ms"] for r in measured)
    assert {r["worker_device"] for r in measured} == {"cpu-0", "cpu-1"}  # both workers measured
    probes = [r for r in measured if r["backend"] == "test-env-probe"]
    # each point ran in the worker the parent says, a process of its own with its own environment
    assert probes and all(r["probe_worker"] == r["worker_device"] for r in probes)
    assert len({r["probe_pid"] for r in probes}) == 2
    assert sorted(p.name for p in probe.iterdir()) == ["cpu-0", "cpu-1"]
    # each worker process runs on its own share of the CPUs (with at least one CPU per worker)
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
        cpus = {r["probe_worker"]: tuple(r["probe_cpus"]) for r in probes}
        assert len(set(cpus.values())) == 2 and not set(cpus["cpu-0"]) & set(cpus["cpu-1"])
    # a case's points stay with one worker (its inputs are built once)
    by_case: dict[str, set[str]] = {}
    for r in measured:
        by_case.setdefault(r["case_id"], set()).add(r["worker_device"])
    assert all(len(v) == 1 for v in by_case.values())
    m = outcome.run_dir.read_manifest()
    assert m["status"] == "complete" and m["devices"] == ["cpu-0", "cpu-1"] and m["worker_count"] == 2
    assert set(m["calibration_by_device"]) == {"cpu-0", "cpu-1"}
    assert m["calibration"] == m["calibration_by_device"]["cpu-0"] and m["rows_written"] == plan.n_points
    assert m["wall_s"] > 0
    assert set(m["worker_start_s_by_device"]) == {"cpu-0", "cpu-1"} == set(m["worker_cpus"])


class InterruptAfter(Progress):
    def __init__(self, n):
        self.n = n
        self.seen = 0

    def point_finished(self, row):
        if row["status"] != "skipped":
            self.seen += 1
            if self.seen == self.n:
                raise KeyboardInterrupt


def test_interrupt_then_resume_with_two_workers(tmp_path):
    workers = parse_devices("cpu,cpu", "cpu")
    backends = ["naive", "sdpa-math", "sdpa-flash"]
    outcome, plan = sweep(tmp_path, workers, progress=InterruptAfter(3), backends=backends)
    assert outcome.interrupted
    first = strict_rows(outcome.run_dir)
    assert 0 < len(first) < plan.n_points
    assert outcome.run_dir.read_manifest()["status"] == "interrupted"
    outcome2, _ = sweep(tmp_path, workers, resume=True, run=outcome.run_dir, backends=backends)
    rows = strict_rows(outcome2.run_dir)
    keys = [(r["case_id"], r["backend"]) for r in rows]
    assert len(keys) == len(set(keys)) == plan.n_points
    assert rows[: len(first)] == first
    assert outcome2.run_dir.read_manifest()["status"] == "complete"


def test_a_device_that_cannot_start_leaves_its_work_to_the_others(tmp_path):
    # a "GPU" worker that sees no GPU fails at start; the CPU worker measures every point
    broken = Worker("9", "cuda", {"CUDA_VISIBLE_DEVICES": "", "ATTNBENCH_WORKER": "9"})
    outcome, plan = sweep(tmp_path, [broken, *parse_devices("cpu", "cpu")], backends=["naive", "sdpa-math"])
    rows = strict_rows(outcome.run_dir)
    assert sorted((r["case_id"], r["backend"]) for r in rows) == sorted(plan_keys(plan))
    assert {r["worker_device"] for r in rows if r["status"] != "skipped"} == {"cpu-0"}
    m = outcome.run_dir.read_manifest()
    assert "9" in m["worker_errors"] and m["status"] == "complete"


def test_a_worker_that_fails_mid_run_hands_its_case_back(tmp_path, monkeypatch):
    import attnbench.runner.multi_gpu as multi_gpu
    from attnbench.runner.worker import ProcessExecutor

    attempted = threading.Event()

    class Flaky(ProcessExecutor):
        """cpu-1 fails on the first case it takes; cpu-0 waits until it has."""

        def run(self, task, on_start, make_failed):
            if self.env.get("ATTNBENCH_WORKER") == "cpu-1":
                attempted.set()
                raise RuntimeError("planted: worker process did not start")
            attempted.wait(60)
            yield from super().run(task, on_start, make_failed)

    monkeypatch.setattr(multi_gpu, "ProcessExecutor", Flaky)
    outcome, plan = sweep(tmp_path, parse_devices("cpu,cpu", "cpu"), backends=["naive", "sdpa-math"])
    rows = strict_rows(outcome.run_dir)
    assert sorted((r["case_id"], r["backend"]) for r in rows) == sorted(plan_keys(plan))
    assert {r["worker_device"] for r in rows if r["status"] != "skipped"} == {"cpu-0"}
    assert {r["status"] for r in rows} <= {"ok", "skipped"}
    m = outcome.run_dir.read_manifest()
    assert "planted" in m["worker_errors"]["cpu-1"] and m["status"] == "complete"


def test_no_worker_that_can_start_is_an_error_and_the_run_is_resumable(tmp_path):
    broken = Worker("9", "cuda", {"CUDA_VISIBLE_DEVICES": "", "ATTNBENCH_WORKER": "9"})
    with pytest.raises(DevicesError, match="no worker left"):
        sweep(tmp_path, [broken], backends=["naive"])
    manifest = RunDir(tmp_path / "run").read_manifest()
    assert manifest["status"] == "failed" and "no worker left" in manifest["error"]
    assert manifest["points_missing"] > 0


# ---- --devices values ----------------------------------------------------------------------------


def test_parse_devices():
    h100 = ["NVIDIA H100 80GB HBM3"] * 4
    ws = parse_devices("0,2", "cuda", gpu_names=h100, visible="")
    assert [(w.label, w.device, w.env["CUDA_VISIBLE_DEVICES"]) for w in ws] == [("0", "cuda", "0"),
                                                                                ("2", "cuda", "2")]
    assert [w.label for w in parse_devices("all", "cuda", gpu_names=h100, visible="")] == ["0", "1", "2", "3"]
    # indices are this process's numbering: under CUDA_VISIBLE_DEVICES=4,5 device 1 is physical 5
    ws = parse_devices("all", "cuda", gpu_names=h100[:2], visible="4,5")
    assert [w.env["CUDA_VISIBLE_DEVICES"] for w in ws] == ["4", "5"]
    ws = parse_devices("cpu,cpu,cpu", "cpu")
    assert [(w.label, w.device) for w in ws] == [("cpu-0", "cpu"), ("cpu-1", "cpu"), ("cpu-2", "cpu")]
    # each worker gets its own contiguous slice of the CPUs; too few CPUs: nobody is pinned
    ws = parse_devices("0,1,2", "cuda", gpu_names=h100, visible="", cpus=list(range(8)))
    assert [w.env["ATTNBENCH_CPUS"] for w in ws] == ["0,1,2", "3,4,5", "6,7"]
    ws = parse_devices("cpu,cpu,cpu", "cpu", cpus=[4, 5])
    assert all("ATTNBENCH_CPUS" not in w.env for w in ws)
    bad = [
        ("0,0", "cuda", h100, "at most once"),
        ("4", "cuda", h100, "no GPU 4"),
        ("all", "cuda", [], "no CUDA GPU"),
        ("x", "cuda", h100, "expected 'all'"),
        ("", "cuda", h100, "expected 'all'"),
        ("0,1", "cpu", h100, "need a CUDA device"),
        ("cpu,cpu", "cuda", h100, "need --device cpu"),
        ("0,1", "cuda", ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"], "different models"),
    ]
    for spec, device, names, message in bad:
        with pytest.raises(DevicesError, match=message):
            parse_devices(spec, device, gpu_names=names, visible="")


runner = CliRunner()


def test_cli_devices(tmp_path):
    cfg = tmp_path / "multi.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    base = ["sweep", str(cfg), "--device", "cpu", "--backends", "naive"]
    result = runner.invoke(app, [*base, "--devices", "cpu,cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["devices"] == ["cpu-0", "cpu-1"] and m["status"] == "complete"
    assert len(strict_rows(RunDir(out))) == m["planned_points"]
    for args, message in ((["--devices", "0,1"], "need a CUDA device"), (["--devices", "cpu", "--no-isolate"],
                                                                         "drop --no-isolate")):
        result = runner.invoke(app, [*base, *args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_multi_device_check_script_on_cpu_workers(tmp_path):
    """scripts/multi_device_check.py end to end with CPU workers: warm-up, a timed pair, summary."""
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "check"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "multi_device_check.py"), str(out), "--config", str(config),
         "--device", "cpu", "--devices", "cpu,cpu", "--repeats", "1", "--backends", "naive,sdpa-math"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.txt").read_text()
    assert "same points in every run: True" in summary
    assert "points whose status differs between runs: 0" in summary
    assert "speed-up" in summary and "largest median difference" in summary
    assert "worker cpu-0: start" in summary and "worker cpu-1: start" in summary
    assert "gate multi-1 against one-1: attnbench gate:" in summary
    assert {p.name for p in out.iterdir()} >= {"warm", "one-1", "multi-1", "summary.txt"}
