"""Issue 17 end to end, bad input: a bad config, flag, path or plugin, an --out that cannot be written
(a file, read-only, a full disk) is one line with the right exit code and no traceback. How a sweep
ends: test_robust_endings.py. Small configs, short limits: CI has 2 cores."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.robust_cli import (
    CONFIG,
    ROOT,
    config,
    invoke,
    one_line_error,
    plugins,  # noqa: F401 - the autouse fixture
)

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
