"""Worker children spawned ahead of time (attnbench.runner.child) and the sweep's guess of how many."""

from __future__ import annotations

import json
import sys
import time
import types
from pathlib import Path

import pytest

from attnbench.config.sweep_config import TimingPolicy
from attnbench.runner import child as children
from attnbench.runner.command import workers_expected
from attnbench.runner.worker import ProcessExecutor


@pytest.fixture(autouse=True)
def _no_leftover_standby():
    yield
    children.discard_standby()


def test_start_phases_split_the_start_at_each_stamp():
    stamps = {"main": 100.2, "loaded": 104.0, "configured": 105.5, "device_ready": 105.6,
              "calibrated": 106.0}
    assert children.start_phases(100.0, stamps) == {
        "spawn_s": 0.2, "imports_s": 3.8, "idle_s": 1.5, "cuda_init_s": 0.1, "calibration_s": 0.4}
    # a step without its stamp (calibration known, a child that failed early) counts 0
    assert children.start_phases(100.0, {"main": 100.5})["imports_s"] == 0.0


def test_executor_takes_a_child_spawned_ahead_and_its_phases_say_so():
    children.prestart(1)
    spawned = children._standby[0]
    time.sleep(0.5)  # whatever this process does before it needs the worker
    ex = ProcessExecutor("cpu", TimingPolicy.for_device("cpu"))
    try:
        ex.start()
        assert ex._proc is spawned.proc and not children._standby
        phases = ex.start_phases
        assert set(phases) == {"spawn_s", "imports_s", "idle_s", "cuda_init_s", "calibration_s"}
        # the child started 0.5 s before start() was called: start() waited that much less than
        # the child's whole start took
        assert ex.start_s <= sum(phases.values()) - 0.4
    finally:
        ex.close()
    assert not spawned.proc.is_alive()


def test_a_child_spawned_before_an_environment_change_is_not_used(monkeypatch):
    children.prestart(1)
    stale = children._standby[0]
    monkeypatch.setenv("ATTNBENCH_TEST_CHANGED", "1")  # e.g. TRITON_INTERPRET set after the spawn
    assert children.take() is None
    assert not stale.proc.is_alive() and not children._standby


def test_workers_expected(monkeypatch):
    assert workers_expected(None, isolate=False) == 0
    assert workers_expected("0,1", isolate=False) == 0
    assert workers_expected(None, isolate=True) == 1
    assert workers_expected("cpu,cpu", isolate=True) == 2
    assert workers_expected("0, 2 ,3", isolate=True) == 3
    fake = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetCount=lambda: 4)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert workers_expected("all", isolate=True) == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert workers_expected("all", isolate=True) == 2

    def no_nvml():
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=no_nvml))
    assert workers_expected("all", isolate=True) == 0  # spawned when the count is known instead


def test_sweep_records_where_the_worker_start_went(tmp_path):
    from typer.testing import CliRunner

    from attnbench.cli import app

    out = tmp_path / "run"
    config = Path(__file__).resolve().parent.parent / "configs" / "smoke.yaml"
    result = CliRunner().invoke(app, ["sweep", str(config), "--device", "cpu", "--backends",
                                      "naive", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    phases = manifest["worker_start_phases"]
    assert phases["imports_s"] > 0 and phases["calibration_s"] > 0 and phases["cuda_init_s"] == 0
    assert manifest["worker_start_s"] > 0
