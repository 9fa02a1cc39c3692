"""The runner end to end on CPU: rows, fault isolation, interruption and resume."""

from __future__ import annotations

import pytest

from attnbench.config.sweep_config import parse_config
from attnbench.runner.plan import build_plan
from attnbench.runner.results import RunDir
from attnbench.runner.sweep import Progress, run_sweep
from attnbench.sysinfo import environment

CONFIG = """
name: t
timing: {max_time_s: 0.05, point_timeout_s: 20}
workloads:
  - name: p
    phase: prefill
    batch: [2]
    lengths: ["fixed:16", "uniform:3-40"]
    q_heads: [2]
    kv_heads: [1]
    head_dim: [16]
    dtype: [fp32]
    causal: [true, false]
  - name: d
    phase: decode
    batch: [3]
    lengths: ["uniform:1-70"]
    q_heads: [4]
    kv_heads: [2]
    head_dim: [16]
    dtype: [fp32]
    block_size: [8]
"""


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "tests.fake_backends")
    import attnbench.backends as b

    monkeypatch.setattr(b, "_loaded", False)


def sweep(tmp_path, backends, isolate=False, progress=None, resume=False, timing=None, run=None):
    text = CONFIG if timing is None else CONFIG.replace("{max_time_s: 0.05, point_timeout_s: 20}", timing)
    cfg = parse_config(text, "t.yaml")
    plan = build_plan(cfg, "cpu", backends)
    run = run or RunDir(tmp_path / "run")
    return run_sweep(
        cfg, plan, run, "cpu", environment("cpu"), progress, isolate=isolate, resume=resume
    ), plan


def test_rows_for_every_point_with_positive_latencies(tmp_path):
    outcome, plan = sweep(tmp_path, ["naive", "sdpa-math", "sdpa-flash"])
    rows = outcome.run_dir.rows()
    assert len(rows) == plan.n_points
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["backend"] for r in ok} == {"naive", "sdpa-math"}
    assert all(r["latency_ms_p50"] > 0 and r["samples_ms"] and r["rel_err"] < 1e-5 for r in ok)
    skipped = [r for r in rows if r["backend"] == "sdpa-flash"]
    assert skipped and all(r["status"] == "skipped" and "cuda" in r["reason"] for r in skipped)
    manifest = outcome.run_dir.read_manifest()
    assert manifest["status"] == "complete" and manifest["calibration"]["copy_gbps"] > 0
    # where the time went: each point's whole wall time, its case's input build (charged once)
    assert all(0 < r["latency_ms_p50"] / 1e3 < r["point_wall_s"] and r["finished_at"] for r in ok)
    # the one-time cost before the first output (prepare + first call), inside the point's wall
    assert all(0 < r["first_call_s"] <= r["point_wall_s"] for r in ok)
    for case_id in {r["case_id"] for r in ok}:
        charged = [r["case_inputs_s"] for r in ok if r["case_id"] == case_id]
        assert charged[0] >= 0 and all(c == 0 for c in charged[1:])
    assert manifest["wall_s"] >= sum(r["point_wall_s"] for r in ok) and manifest["worker_start_s"] >= 0


def test_failures_are_rows_and_the_sweep_goes_on(tmp_path):
    outcome, _ = sweep(tmp_path, ["test-raise", "test-wrong", "test-good"])
    by = {}
    for r in outcome.run_dir.rows():
        by.setdefault(r["backend"], set()).add(r["status"])
    assert by == {"test-raise": {"failed"}, "test-wrong": {"incorrect"}, "test-good": {"ok"}}
    wrong = [r for r in outcome.run_dir.rows() if r["backend"] == "test-wrong"][0]
    assert "relative error" in wrong["reason"] and "samples_ms" not in wrong  # incorrect rows are not timed


def test_crashing_and_hanging_points_fail_in_a_child_and_the_rest_run(tmp_path):
    timing = "{max_time_s: 0.05, point_timeout_s: 8}"
    cfg_backends = ["test-crash", "test-hang", "test-good"]
    text = CONFIG.replace("{max_time_s: 0.05, point_timeout_s: 20}", timing)
    # one case only, to keep the child restarts few
    text = (
        text.split("  - name: d")[0]
        .replace('["fixed:16", "uniform:3-40"]', '["fixed:16"]')
        .replace("causal: [true, false]", "causal: [true]")
    )
    cfg = parse_config(text, "t.yaml")
    plan = build_plan(cfg, "cpu", cfg_backends)
    run = RunDir(tmp_path / "iso")
    run_sweep(cfg, plan, run, "cpu", environment("cpu"), isolate=True)
    rows = {r["backend"]: r for r in run.rows()}
    assert rows["test-crash"]["status"] == "failed" and "died" in rows["test-crash"]["reason"]
    assert rows["test-hang"]["status"] == "failed" and "timed out" in rows["test-hang"]["reason"]
    assert rows["test-good"]["status"] == "ok"


class InterruptAfter(Progress):
    def __init__(self, n):
        self.n = n
        self.seen = 0

    def point_finished(self, row):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt


def test_interrupt_keeps_rows_and_resume_finishes_without_remeasuring(tmp_path):
    outcome, plan = sweep(tmp_path, ["naive", "sdpa-math"], progress=InterruptAfter(5))
    assert outcome.interrupted
    first = outcome.run_dir.rows()
    assert len(first) == 5
    assert outcome.run_dir.read_manifest()["status"] == "interrupted"
    outcome2, _ = sweep(tmp_path, ["naive", "sdpa-math"], resume=True, run=outcome.run_dir)
    rows = outcome2.run_dir.rows()
    keys = [(r["case_id"], r["backend"]) for r in rows]
    assert len(keys) == len(set(keys)) == plan.n_points
    assert rows[:5] == first  # finished points untouched
    assert outcome2.run_dir.read_manifest()["status"] == "complete"


def test_torn_last_line_is_ignored(tmp_path):
    outcome, plan = sweep(tmp_path, ["naive"])
    with open(outcome.run_dir.rows_path, "a") as f:
        f.write('{"case_id": "half')
    assert len(outcome.run_dir.rows()) == plan.n_points


def test_paged_variants_reuse_their_groups_inputs_and_reference(monkeypatch):
    import attnbench.inputs as inputs_module
    from attnbench.config.sweep_config import TimingPolicy, expand_workload
    from attnbench.runner.worker import CaseRunner, Task

    cfg = parse_config(CONFIG, "t.yaml")
    cases = expand_workload(cfg.workloads[1], cfg.seed)  # one contiguous case + its paged variant
    assert [c.paged for c in cases] == [False, True]
    computed = []
    original = inputs_module.reference_attention

    def counting(*args, **kwargs):
        computed.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(inputs_module, "reference_attention", counting)
    runner = CaseRunner("cpu", TimingPolicy.for_device("cpu"), {"copy_gbps": 1.0, "matmul_tflops": 1.0})
    other = expand_workload(cfg.workloads[0], cfg.seed)[0]
    # c0 and its paged variant share one reference; another group in between means a rebuild.
    for case in [cases[0], cases[1], other, cases[1]]:
        rows = list(runner.run(Task(case, ["naive"]), lambda name: None))
        assert rows[0]["status"] == "ok"
    assert len(computed) == 3
