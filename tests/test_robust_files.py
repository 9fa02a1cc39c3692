"""Issue 17, the files: torn lines, bad lines, corrupt manifests, strict JSON, the run lock, and
planning that stays linear. No sweep runs here (fast)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from attnbench.runner.results import RunDir, RunError, read_rows
from attnbench.runner.runlock import LockError, acquire


def _row(i: int) -> dict:
    return {"case_id": f"c{i}", "backend": "naive", "status": "ok", "latency_ms_p50": 1.0 + i}


def test_a_row_appended_after_a_torn_line_stays_readable(tmp_path):
    run = RunDir(tmp_path)
    run.append_row(_row(0))
    with open(run.rows_path, "a") as f:
        f.write('{"case_id": "c1", "back')  # a crash or a full disk mid-write
    run.append_row(_row(2))  # without a repair first: the guard puts it on its own line
    rows, bad = read_rows(run.rows_path)
    assert [r["case_id"] for r in rows] == ["c0", "c2"] and bad == [2]


def test_repair_moves_the_torn_fragment_aside_and_keeps_whole_rows(tmp_path):
    run = RunDir(tmp_path)
    run.append_row(_row(0))
    with open(run.rows_path, "a") as f:
        f.write('{"case_id": "c1", "back')
    note = run.repair_tail()
    assert note and "torn" in note
    assert run.rows_path.read_text().endswith("\n") and len(run.rows()) == 1
    assert (tmp_path / "results.torn.jsonl").read_text() == '{"case_id": "c1", "back\n'  # kept
    # a whole row that only lacks its newline is kept in place
    with open(run.rows_path, "a") as f:
        f.write(json.dumps(_row(3)))
    assert run.repair_tail() is None and [r["case_id"] for r in run.rows()] == ["c0", "c3"]
    assert run.repair_tail() is None  # nothing to do


def test_lines_that_are_not_rows_are_skipped_and_counted(tmp_path):
    run = RunDir(tmp_path)
    run.rows_path.write_bytes(
        json.dumps(_row(0)).encode() + b"\n[1, 2]\n5\n\xff\xfe not utf-8\n{\"status\": \"ok\"}\n\n"
        + json.dumps(_row(1)).encode() + b"\n"
    )
    rows, bad = read_rows(run.rows_path)
    assert [r["case_id"] for r in rows] == ["c0", "c1"] and bad == [2, 3, 4, 5]


@pytest.mark.parametrize("content,what", [(b"{not json", "not JSON"), (b"[1]", "not an object"),
                                          (b"\xff\xfe", "not UTF-8")])
def test_a_corrupt_manifest_is_a_run_error_naming_the_file(tmp_path, content, what):
    run = RunDir(tmp_path)
    run.manifest_path.write_bytes(content)
    with pytest.raises(RunError, match=what) as info:
        run.read_manifest()
    assert "manifest.json" in str(info.value)


def test_a_nan_never_reaches_the_manifest(tmp_path):
    run = RunDir(tmp_path)
    run.write_manifest({"timing": {"max_time_s": float("nan")}, "x": [float("inf"), 1.0]})
    text = run.manifest_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"timing": {"max_time_s": None}, "x": [None, 1.0]}


def test_a_second_holder_is_refused_with_pid_host_and_start_time(tmp_path):
    with acquire(tmp_path, "attnbench sweep"):
        with pytest.raises(LockError) as info:
            acquire(tmp_path)
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and socket.gethostname() in message and "started 20" in message
    lock = acquire(tmp_path)  # released: free again
    assert lock.note is None
    lock.release()
    assert not any(tmp_path.iterdir())


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    (tmp_path / ".attnbench.lock").write_text(json.dumps(
        {"pid": proc.pid, "host": socket.gethostname(), "started_at": "2026-01-01T00:00:00+00:00"}))
    lock = acquire(tmp_path)
    assert lock.note and f"pid {proc.pid}" in lock.note and "no longer running" in lock.note
    assert json.loads((tmp_path / ".attnbench.lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    from attnbench.runner.runlock import _proc_start_ticks

    ticks = _proc_start_ticks(os.getpid())
    if ticks is None:
        pytest.skip("no /proc here")
    (tmp_path / ".attnbench.lock").write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": ticks - 1}))
    lock = acquire(tmp_path)
    assert lock.note and "no longer running" in lock.note
    lock.release()


def test_another_hosts_lock_is_refused_with_how_to_remove_it(tmp_path):
    (tmp_path / ".attnbench.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "started_at": "x"}))
    with pytest.raises(LockError, match="elsewhere.*remove"):
        acquire(tmp_path)


def _big_config(n_lengths: int, batches: int, backends: list[str]):
    from attnbench.config.sweep_config import parse_config

    lengths = ", ".join(f'"fixed:{16 + i}"' for i in range(n_lengths))
    return parse_config(f"""
name: big
backends: [{', '.join(backends)}]
workloads:
  - name: p
    phase: prefill
    batch: [{', '.join(str(b + 1) for b in range(batches))}]
    lengths: [{lengths}]
    q_heads: [4]
    kv_heads: [1, 2, 4]
    head_dim: [64]
    dtype: [fp32, bf16]
""", "big.yaml")


def test_planning_12000_points_is_linear_and_fast():
    from attnbench.runner.plan import build_plan

    # 50 lengths x 20 batches x 3 kv heads x 2 dtypes = 6000 cases, x 2 backends = 12000 points
    cfg = _big_config(50, 20, ["naive", "sdpa-math"])
    began = time.perf_counter()
    plan = build_plan(cfg, "cpu")
    seconds = time.perf_counter() - began
    assert plan.n_points == 12000
    assert seconds < 10, f"planning 12000 points took {seconds:.1f} s (was 83 s when quadratic)"


def test_an_absurd_plan_is_refused_at_once_and_allowed_by_max_points():
    from attnbench.runner.plan import PlanSizeError, build_plan, check_size

    cfg = _big_config(400, 56, ["naive", "sdpa-math"])  # 134,400 cases, 268,800 points
    began = time.perf_counter()
    with pytest.raises(PlanSizeError, match="--max-points 268800"):
        build_plan(cfg, "cpu")
    assert time.perf_counter() - began < 2
    check_size(cfg, 2, max_points=300_000)  # allowed when asked for


def test_a_backend_whose_supports_or_available_raises_is_skipped_alone(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "tests.fake_backends")
    import attnbench.backends as b
    from attnbench.runner.plan import build_plan

    monkeypatch.setattr(b, "_loaded", False)
    cfg = _big_config(1, 1, ["naive", "test-supports-raises", "test-available-raises"])
    plan = build_plan(cfg, "cpu")
    for pc in plan.cases:
        assert pc.run == ["naive"]
        assert "supports() raised RuntimeError: planted supports() bug" in pc.skip["test-supports-raises"]
        assert "available() raised RuntimeError" in pc.skip["test-available-raises"]


def test_a_failed_reason_in_brackets_prints_as_written():
    from rich.console import Console

    from attnbench.console import SweepProgress

    buf = io.StringIO()
    progress = SweepProgress(Console(file=buf, width=200))
    progress.start(1, 0)
    progress.point_finished({"status": "failed", "backend": "b[x]", "case_id": "c",
                             "reason": "cannot load [/kernels/k.so] for [p] [bold]"})
    progress.stop()
    assert "cannot load [/kernels/k.so] for [p] [bold]" in buf.getvalue() and "b[x]" in buf.getvalue()


def test_a_worker_killed_by_a_signal_is_named_in_words():
    from attnbench.runner.worker import died_reason

    assert "out-of-memory" in died_reason(-9) and "-9" not in died_reason(-9)
    assert "segmentation fault" in died_reason(-11)
    assert died_reason(3) == "worker process died (exit code 3)"


@pytest.mark.parametrize("lengths,needle", [
    ('"bimodal:4096-128:0.5"', "bimodal.short 4096 is larger than bimodal.long 128"),
    ('"uniform:1-x"', "expected uniform:LO-HI"),
    ('"lognormal:100:0.5"', "expected lognormal:MEAN:SIGMA:MAX"),
])
def test_bad_length_mixes_are_named_in_the_users_words(lengths, needle):
    from attnbench.config.sweep_config import ConfigError, parse_config

    text = f"""
name: t
workloads:
  - {{name: p, phase: prefill, lengths: [{lengths}], q_heads: [2], kv_heads: [1], head_dim: [16]}}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml")
    message = str(info.value)
    assert needle in message
    for internal in ("invalid literal", "values to unpack", "int()"):
        assert internal not in message


def test_a_nan_or_infinite_timing_value_is_refused():
    from attnbench.config.sweep_config import ConfigError, parse_config

    for value in (".nan", ".inf"):
        with pytest.raises(ConfigError, match="finite"):
            parse_config(f"""
name: t
timing: {{max_time_s: {value}}}
workloads:
  - {{name: p, phase: prefill, lengths: ["fixed:8"], q_heads: [2], kv_heads: [1], head_dim: [16]}}
""", "t.yaml")
