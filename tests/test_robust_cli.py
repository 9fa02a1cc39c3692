"""Issue 17 end to end: bad input is one line with the right exit code and no traceback; every
ending of a sweep (normal, Ctrl-C, double Ctrl-C, SIGTERM, SIGKILL then --resume, a crash, a full
disk) leaves a manifest whose status and rows_written are true, no row lost or duplicated; a run
directory in use is refused naming its holder. Small configs, short limits: CI has 2 cores."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.runner.results import RunDir, read_rows

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


# ---- bad input: one line, exit 2 -------------------------------------------------------------


def test_markup_in_paths_and_names_is_printed_as_typed(tmp_path):
    result = invoke("sweep", str(tmp_path / "[draft]" / "x.yaml"), "--dry-run", "--device", "cpu")
    one_line_error(result, 2, "[draft]/x.yaml")
    bad = config(tmp_path, CONFIG.replace("batch: [1]", "batch: [0]").replace("name: p", "name: '[/]p'"))
    one_line_error(invoke("sweep", bad, "--dry-run", "--device", "cpu"), 2, "workloads[[/]p].batch")


def test_config_a_directory_or_not_utf8_is_one_line(tmp_path):
    one_line_error(invoke("sweep", str(tmp_path), "--dry-run"), 2, "is a directory")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(CONFIG.replace("robust", "r\xe9sum\xe9").encode("latin-1"))
    one_line_error(invoke("sweep", str(path), "--dry-run"), 2, "not UTF-8")


def test_duplicate_keys_and_empty_lengths_are_refused(tmp_path):
    dup = config(tmp_path, CONFIG.replace("    dtype: [fp32]", "    dtype: [fp32]\n    batch: [2]"))
    one_line_error(invoke("sweep", dup, "--dry-run", "--device", "cpu"), 2, "duplicate key 'batch'")
    empty = config(tmp_path, CONFIG.replace('["fixed:8", "fixed:12", "fixed:16"]', "[]"))
    one_line_error(invoke("sweep", empty, "--dry-run", "--device", "cpu"), 2, "lengths")


def test_backends_naming_nothing_is_refused(tmp_path):
    one_line_error(invoke("sweep", config(tmp_path), "--dry-run", "--device", "cpu", "--backends", ","),
                   2, "names no backend")


@pytest.mark.parametrize("flags,needle", [
    (["--q-heads", "0"], "--q-heads 0"),
    (["--kv-heads", "0"], "--kv-heads 0"),
    (["--head-dim", "0"], "--head-dim 0"),
    (["--q-heads", "-4"], "--q-heads -4"),
    (["--kv-len", ""], "--kv-len is empty"),
    (["--seqlen", "8,x"], "comma-separated integers"),
])
def test_run_flags_out_of_range_exit_2(flags, needle):
    result = invoke("run", "--device", "cpu", "--seqlen", "8", "--q-heads", "2", "--head-dim", "16",
                    "--dtype", "fp32", *flags)
    one_line_error(result, 2, needle)


def test_out_a_file_or_under_a_file_is_one_line_for_sweep_report_and_merge(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cfg = config(tmp_path)
    one_line_error(invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--out", str(afile)),
                   2, "is a file")
    one_line_error(invoke("sweep", cfg, "--device", "cpu", "--backends", "naive",
                          "--out", str(afile / "run")), 2, "not a directory")
    run = tmp_path / "run"
    assert invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate",
                  "--out", str(run)).exit_code == 0
    one_line_error(invoke("report", str(run), "--out", str(afile / "r")), 2, "--out")
    one_line_error(invoke("merge", str(run), "--out", str(afile / "m")), 2, "--out")


def test_bad_lines_and_a_corrupt_manifest_for_resume_report_and_merge(tmp_path):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    assert invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate",
                  "--out", str(run)).exit_code == 0
    with open(run / "results.jsonl", "ab") as f:
        f.write(b"[1, 2]\n\xff\xfe\n")
    result = invoke("report", str(run), "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "skipped 2 line(s)" in (tmp_path / "rep" / "report.md").read_text()
    merged = invoke("merge", str(run), "--out", str(tmp_path / "m"))
    assert merged.exit_code == 0 and "skipped 2 line(s)" in merged.output
    (run / "manifest.json").write_text("{oops")
    for args in (["sweep", cfg, "--device", "cpu", "--backends", "naive", "--resume", "--out", str(run)],
                 ["report", str(run), "--out", str(tmp_path / "rep2")],
                 ["merge", str(run), "--out", str(tmp_path / "m2")]):
        one_line_error(invoke(*args), 2, "manifest.json", "corrupt")


def test_a_broken_plugin_is_one_warning_and_commands_still_work(tmp_path, monkeypatch):
    (tmp_path / "boom_plugin.py").write_text("raise RuntimeError('planted import failure')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "no_such_module_xyz,boom_plugin")
    result = invoke("backends", "--device", "cpu")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "cannot import 'no_such_module_xyz' (ModuleNotFoundError" in result.output
    assert "cannot import 'boom_plugin' (RuntimeError: planted import failure)" in result.output
    assert "naive" in result.output
    import attnbench.backends as b

    monkeypatch.setattr(b, "_loaded", False)
    dry = invoke("sweep", config(tmp_path), "--dry-run", "--device", "cpu", "--backends", "naive")
    assert dry.exit_code == 0 and "12 points" not in dry.output and "3 points" in dry.output


def test_fragmentation_gpu_without_a_gpu_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = invoke("fragmentation", str(ROOT / "configs" / "fragmentation.yaml"), "--gpu",
                    "--out", str(tmp_path / "f"))
    one_line_error(result, 2, "--gpu")
    assert not (tmp_path / "f").exists()


# ---- endings ---------------------------------------------------------------------------------


def test_exit_1_on_failed_points_unless_allow_failures_and_skips_are_not_failures(tmp_path):
    cfg = config(tmp_path)
    ok = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-flash", "--no-isolate",
                "--out", str(tmp_path / "a"))
    assert ok.exit_code == 0, ok.output  # sdpa-flash is skipped on a CPU: not a failure
    check_true(tmp_path / "a", "complete", 6)
    bad = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,test-markup", "--no-isolate",
                 "--out", str(tmp_path / "b"))
    assert bad.exit_code == 1 and "3 failed and 0 incorrect" in bad.output, bad.output
    # a reason that looks like markup is printed as written, and the sweep finished
    assert "[/kernels/k.so] for [p] [bold]" in bad.output and "MarkupError" not in bad.output
    check_true(tmp_path / "b", "complete", 6)
    allowed = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,test-markup", "--no-isolate",
                     "--allow-failures", "--out", str(tmp_path / "c"))
    assert allowed.exit_code == 0, allowed.output


def test_resume_with_other_backends_is_refused(tmp_path):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    assert invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate",
                  "--out", str(run)).exit_code == 0
    one_line_error(invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--resume",
                          "--out", str(run)), 2, "was run with backends naive", "--backends naive")


def test_a_locked_run_directory_is_refused_naming_the_holder(tmp_path):
    import socket

    from attnbench.runner.runlock import _proc_start_ticks, acquire

    cfg = config(tmp_path)
    run = tmp_path / "run"
    assert invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate",
                  "--out", str(run)).exit_code == 0
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = acquire(run)
        # as if that live process held it
        lock.holder.update(pid=holder.pid, start_ticks=_proc_start_ticks(holder.pid))
        (run / ".attnbench.lock").write_text(json.dumps(lock.holder))
        for extra in (["--resume"], []):
            result = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--out", str(run), *extra)
            one_line_error(result, 2, f"pid {holder.pid}", socket.gethostname(), "started")
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: --resume takes the stale lock over with a note
    result = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate",
                    "--resume", "--out", str(run))
    assert result.exit_code == 0 and "took over a stale lock" in result.output, result.output
    assert not (run / ".attnbench.lock").exists()


def test_a_full_disk_mid_sweep_then_resume_loses_nothing(tmp_path, monkeypatch):
    """A simulated full disk: the third row's write fails with ENOSPC after writing half a line."""
    cfg = config(tmp_path)
    run = tmp_path / "run"
    real = RunDir.append_row
    calls = {"n": 0}

    def full_disk(self, row):
        calls["n"] += 1
        if calls["n"] == 3:
            with open(self.rows_path, "a") as f:
                f.write(json.dumps(row)[:40])  # what fit before the disk was full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, row)

    monkeypatch.setattr(RunDir, "append_row", full_disk)
    result = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--no-isolate",
                    "--out", str(run))
    line = one_line_error(result, 1, "No space left on device", "--resume")
    assert "2 rows are on disk" in line
    manifest = check_true(run, "failed", 6)
    assert "No space left" in manifest["error"] and manifest["unreadable_lines"] == 1
    monkeypatch.setattr(RunDir, "append_row", real)
    again = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--no-isolate",
                   "--resume", "--out", str(run))
    assert again.exit_code == 0 and "torn last line" in again.output, again.output
    check_true(run, "complete", 6)
    assert read_rows(run / "results.jsonl")[1] == []


def test_a_real_full_disk_on_a_tiny_tmpfs(tmp_path):
    """Where tmpfs can be mounted (root), the same on a disk that really fills up."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        cfg = config(tmp_path)
        run = mnt / "run"
        real = RunDir.append_row
        state = {"n": 0}

        def fill_then_append(self, row):
            state["n"] += 1
            if state["n"] == 3:  # fill the disk to its last bytes
                with open(mnt / "filler", "wb") as f, __import__("contextlib").suppress(OSError):
                    while True:
                        f.write(b"\0" * 512)
                        f.flush()
            return real(self, row)

        RunDir.append_row = fill_then_append
        try:
            result = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--no-isolate",
                            "--out", str(run))
        finally:
            RunDir.append_row = real
        one_line_error(result, 1, "No space left on device")
        (mnt / "filler").unlink()
        again = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--no-isolate",
                       "--resume", "--out", str(run))
        assert again.exit_code == 0, again.output
        check_true(run, "complete", 6)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_crash_is_one_line_the_manifest_says_failed_and_resume_finishes(tmp_path, monkeypatch):
    import attnbench.console as console

    cfg = config(tmp_path)
    run = tmp_path / "run"
    real = console.BarProgress.point_finished  # piped output gets LineProgress: plant in both
    real_line = console.LineProgress.point_finished

    def planted(original):
        def bug(self, row):
            if row["backend"] == "sdpa-math":
                raise ValueError("planted bug in the progress display")
            original(self, row)

        return bug

    monkeypatch.setattr(console.BarProgress, "point_finished", planted(real))
    monkeypatch.setattr(console.LineProgress, "point_finished", planted(real_line))
    result = invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--no-isolate",
                    "--out", str(run))
    one_line_error(result, 1, "crashed", "ValueError: planted bug", "crash.log")
    assert "planted bug" in (run / "crash.log").read_text()
    manifest = check_true(run, "failed", 6)
    assert manifest["error"].startswith("ValueError")
    monkeypatch.setattr(console.BarProgress, "point_finished", real)
    monkeypatch.setattr(console.LineProgress, "point_finished", real_line)
    assert invoke("sweep", cfg, "--device", "cpu", "--backends", "naive,sdpa-math", "--no-isolate",
                  "--resume", "--out", str(run)).exit_code == 0
    check_true(run, "complete", 6)


def test_a_second_ctrl_c_while_stopping_still_records_the_ending(tmp_path):
    from attnbench.config import parse_config
    from attnbench.runner.plan import build_plan
    from attnbench.runner.sweep import Progress, run_sweep
    from attnbench.sysinfo import environment

    class DoubleCtrlC(Progress):
        def point_finished(self, row):
            raise KeyboardInterrupt  # the first Ctrl-C

        def stop(self):
            os.kill(os.getpid(), signal.SIGINT)  # the second, while the sweep stops

    cfg = parse_config(CONFIG, "r.yaml")
    plan = build_plan(cfg, "cpu", ["naive"])
    run = RunDir(tmp_path / "run")
    outcome = run_sweep(cfg, plan, run, "cpu", environment("cpu"), DoubleCtrlC(), isolate=False)
    assert outcome.interrupted
    check_true(run.path, "interrupted", 3)


def _sweep_process(args: list[str], env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTNBENCH_PLUGINS": "tests.fake_backends", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "attnbench", "sweep", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running(pid: int) -> bool:
    """Whether pid runs (a zombie waiting for a reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for_rows(path: Path, n: int, proc: subprocess.Popen, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if path.exists() and len(read_rows(path)[0]) >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError(f"no {n} rows in {path} within {limit_s} s")


def test_sigterm_stops_like_ctrl_c_and_sigkill_then_resume_finishes(tmp_path):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    base = [cfg, "--device", "cpu", "--backends", "test-slow", "--out", str(run)]
    # SIGTERM (isolated: the worker child is stopped too, and prints nothing)
    proc = _sweep_process(base, {"ATTNBENCH_TEST_SLOW_S": "3"})
    _wait_for_rows(run / "results.jsonl", 1, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, out + err
    assert "Traceback" not in out + err and "BrokenPipe" not in err
    assert "SIGTERM" in err and "--resume --out" in err
    check_true(run, "interrupted", 3)
    # SIGKILL mid-resume: the manifest says running, the lock names a dead process, and the
    # orphaned worker ends by itself, quietly
    pid_file = tmp_path / "worker.pid"
    proc = _sweep_process([*base, "--resume"], {"ATTNBENCH_TEST_SLOW_S": "60",
                                                "ATTNBENCH_TEST_PID_FILE": str(pid_file)})
    deadline = time.monotonic() + 120
    while not pid_file.exists() and time.monotonic() < deadline:  # the worker is in a 60 s point
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(0.3)
    proc.kill()
    out, err = proc.communicate(timeout=30)
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"
    assert (run / ".attnbench.lock").exists()
    worker = int(pid_file.read_text())
    assert worker != proc.pid
    deadline = time.monotonic() + 6  # well before its 60 s point would end
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(worker), "the orphaned worker outlived its killed parent"
    # a report of the killed run says so
    assert invoke("report", str(run), "--out", str(tmp_path / "rep")).exit_code == 0
    assert "the sweep was killed" in (tmp_path / "rep" / "report.md").read_text()
    done = _sweep_process([*base, "--resume", "--no-isolate"], {"ATTNBENCH_TEST_SLOW_S": "0"})
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, out + err
    assert "took over a stale lock" in err and "Traceback" not in out + err
    check_true(run, "complete", 3)


def test_run_survives_a_segfault_a_crash_and_a_hang(tmp_path):
    result = invoke("run", "--device", "cpu", "--seqlen", "8", "--q-heads", "2", "--head-dim", "16",
                    "--dtype", "fp32", "--backend", "test-segfault", "--backend", "test-hang",
                    "--backend", "test-good", "--timeout", "5", "--json")
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("{")]
    rows = {r["backend"]: r for r in map(json.loads, lines)}
    segv = rows["test-segfault"]
    assert segv["status"] == "failed" and "segmentation fault" in segv["reason"]
    assert rows["test-hang"]["status"] == "failed" and "timed out after 5 s" in rows["test-hang"]["reason"]
    assert rows["test-good"]["status"] == "ok"


def test_a_full_disk_while_report_or_merge_write_is_one_line(tmp_path, monkeypatch):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    assert invoke("sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate",
                  "--out", str(run)).exit_code == 0
    real_write = Path.write_text
    real_open = open

    def full(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "full")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, *args, **kwargs)

    def full_open(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "full")) and args and "w" in args[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    monkeypatch.setattr("builtins.open", full_open)
    one_line_error(invoke("report", str(run), "--out", str(tmp_path / "full" / "r")), 2,
                   "No space left on device", "disk is full")
    one_line_error(invoke("merge", str(run), "--out", str(tmp_path / "full" / "m")), 2,
                   "No space left on device")


def test_a_read_only_out_is_one_line(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        cfg = config(tmp_path)
        one_line_error(invoke("sweep", cfg, "--device", "cpu", "--backends", "naive",
                              "--out", str(mnt / "run")), 2, "Read-only file system")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_markup_in_flag_values_is_printed_as_typed(tmp_path):
    cfg = config(tmp_path)
    one_line_error(invoke("sweep", cfg, "--dry-run", "--device", "cpu", "--backends", "[/]x"), 2,
                   "unknown backend '[/]x'")
    one_line_error(invoke("sweep", cfg, "--dry-run", "--device", "cpu", "--shard", "[/]"), 2, "[/]")
    one_line_error(invoke("run", "--device", "cpu", "--backend", "[bold]x"), 2, "'[bold]x'")


def test_resume_over_lines_that_are_not_rows_measures_only_what_is_missing(tmp_path):
    cfg = config(tmp_path)
    run = tmp_path / "run"
    args = ["sweep", cfg, "--device", "cpu", "--backends", "naive", "--no-isolate", "--out", str(run)]
    assert invoke(*args).exit_code == 0
    lines = (run / "results.jsonl").read_bytes().splitlines(keepends=True)
    (run / "results.jsonl").write_bytes(lines[0] + b"[1]\n\xff\n" + lines[1])  # the third row lost
    result = invoke(*args, "--resume")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    manifest = check_true(run, "complete", 3)
    assert manifest["unreadable_lines"] == 2


def test_fragmentation_out_a_file_or_a_full_disk_is_one_line(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    study = str(ROOT / "configs" / "fragmentation-demo.yaml")  # the small study: the point is the error
    one_line_error(invoke("fragmentation", study, "--out", str(afile)), 2, "is a file")
    import attnbench.memory.study as frag

    def full(result, out_dir):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(frag, "write_json", full)
    one_line_error(invoke("fragmentation", study, "--out", str(tmp_path / "f")), 2, "No space left on device")
