"""attnbench profile: the PyTorch-profiler summary on a CPU run, the merge with sweep rows (a profile run
recorded on an H100 under tests/fixtures/ncu/), the CLI's clean exits. Under ncu: test_profile_ncu.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from attnbench.case import Case
from attnbench.cli import app
from attnbench.profile import rows, torchprof
from attnbench.profile.runner import point_name
from attnbench.runner.results import RunDir, load_run
from tests.test_profile_ncu import (
    FIX,
    fake_ncu,  # noqa: F401 - the fixture
)

# ---- the PyTorch profiler summary --------------------------------------------------------------


def test_torch_profile_of_naive_on_cpu(tmp_path):
    from attnbench.profile import target

    case = Case("t", "prefill", (24, 40), (24, 40), 4, 2, 16, "fp32", True, "list")
    trace = tmp_path / "trace.json"
    result = target.profile_point(case.to_json(), "naive", "torch", "cpu", 3, trace)
    assert result["status"] == "ok", result["reason"]
    s = result["torch"]
    assert s["torch_calls"] == 3 and len(s["torch_span_ms"]) == 3 and min(s["torch_span_ms"]) > 0
    assert s["torch_work"] == "cpu operators" and s["torch_kernels_per_call"] >= 3
    names = {k["name"] for k in s["torch_kernels"]}
    assert {"matmul", "softmax"} <= names  # naive: Q K^T, softmax, P V
    assert sum(k["share"] for k in s["torch_kernels"]) == pytest.approx(1.0)
    assert 0.0 <= s["torch_idle_share"] < 1.0 and s["torch_busy_ms_per_call"] > 0
    assert json.loads(trace.read_text())["traceEvents"]  # the Chrome trace is kept


def _ev(cat, name, ts, dur, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": 1, "pid": 1, "args": args}


def test_gpu_trace_summary_counts_kernels_per_call_and_launch_gaps():
    events = [
        _ev("kernel", "void flush_kernel<1>(int)", 5, 3, correlation=1),  # launched outside any call
        _ev("cuda_runtime", "cudaLaunchKernel", 1, 1, correlation=1),
        _ev("user_annotation", "attnbench_call_0", 10, 100),
        _ev("cuda_runtime", "cudaLaunchKernel", 11, 2, correlation=2),
        _ev("cuda_driver", "cuLaunchKernelEx", 14, 2, correlation=3),
        _ev("kernel", "void a_kernel<2>(int)", 20, 30, correlation=2),
        _ev("kernel", "_triton_b", 60, 10, correlation=3),  # 10 us gap after a_kernel
        _ev("user_annotation", "attnbench_call_1", 200, 100),
        _ev("cuda_runtime", "cudaLaunchKernel", 201, 2, correlation=4),
        _ev("kernel", "void a_kernel<2>(int)", 210, 30, correlation=4),
    ]
    s = torchprof.summarize_trace({"traceEvents": events}, "cuda")
    assert s["torch_calls"] == 2 and s["torch_kernels_per_call"] == 1.5
    assert s["torch_span_ms"] == [pytest.approx(0.050), pytest.approx(0.030)]
    assert s["torch_gap_us_max"] == 10 and s["torch_idle_share"] == pytest.approx(10 / 80)
    by = {k["name"]: k for k in s["torch_kernels"]}
    assert set(by) == {"a_kernel", "_triton_b"} and by["a_kernel"]["launches"] == 2
    assert by["a_kernel"]["share"] == pytest.approx(60 / 70)
    with pytest.raises(ValueError, match="call windows"):
        torchprof.summarize_trace({"traceEvents": events[:2]}, "cuda")


# ---- rows beside a sweep's ---------------------------------------------------------------------


def _profile_rows() -> list[dict]:
    return load_run(FIX / "h100_profile_run")[1]


def _sweep_row(profile_row: dict, p50: float, **extra) -> dict:
    keep = {k: v for k, v in profile_row.items()
            if not k.startswith(("ncu_", "torch_", "dram_", "latency_")) and k not in rows.PROFILE_KEYS}
    return {**keep, "status": "ok", "reason": "", "latency_ms_p50": p50, "samples_ms": [p50] * 3,
            "timer": "cuda-events", **extra}


def test_merge_puts_profile_fields_on_sweep_rows():
    prof = _profile_rows()
    other = {**_sweep_row(prof[0], 0.2), "case_id": "other"}
    sweep = [_sweep_row(prof[0], 0.07), _sweep_row(prof[1], 1.3), other]
    merged = rows.merge_rows(sweep, prof)
    assert len(merged) == 3
    flash = merged[0]
    assert flash["latency_ms_p50"] == 0.07 and flash["timer"] == "cuda-events"  # the sweep's timing
    assert flash["dram_read_bytes"] == prof[0]["dram_read_bytes"] and flash["profile_status"] == "ok"
    assert flash["ncu_kernels"] == prof[0]["ncu_kernels"]
    assert "dram_read_bytes" not in merged[2]
    extra = {**prof[0], "case_id": "profiled-only"}
    assert rows.merge_rows(sweep, [*prof, extra], keep_unmatched=True)[-1]["case_id"] == "profiled-only"


def test_merge_matches_variants_and_refuses_ambiguous_points():
    prof = _profile_rows()[0]
    v1, v2 = {**prof, "variant": "v1", "dram_read_bytes": 1}, {**prof, "variant": "v2", "dram_read_bytes": 2}
    sweep = [_sweep_row(prof, 1.0, variant="v2"), _sweep_row(prof, 1.0, variant="v3")]
    merged = rows.merge_rows(sweep, [v1, v2])
    assert merged[0]["dram_read_bytes"] == 2  # same variant
    assert "dram_read_bytes" not in merged[1]  # two profiled variants, neither v3: no guess
    index = rows.Index([_sweep_row(prof, 0.5)])
    assert rows.with_sweep(v1, index)["latency_ms_p50"] == 0.5  # one sweep row of the point: taken


def test_merged_run_directory_feeds_the_report(tmp_path):
    from attnbench.report.bandwidth import dram_ratios
    from attnbench.report.load import load_one

    prof_rows = _profile_rows()
    sweep_dir = RunDir(tmp_path / "sweep")
    sweep_dir.create()
    sweep_dir.write_manifest({"run_id": "sweep", "device": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3"})
    for r in prof_rows:
        sweep_dir.append_row(_sweep_row(r, 1.0))
    out = rows.merge_runs(sweep_dir.path, FIX / "h100_profile_run", tmp_path / "merged")
    manifest, merged = load_run(out.path)
    assert manifest["profile_tool"] == "ncu" and manifest["profile_rows_matched"] == 2
    run = load_one(out.path)
    ratios = dram_ratios(run.ok)
    assert len(ratios) == 2 and (ratios["read_ratio"] > 0.9).all()
    # The profile run directory alone is a run the report reads too (latency: ncu's kernel time).
    assert load_one(FIX / "h100_profile_run").ok["dram_read_bytes"].notna().all()
    with pytest.raises(FileExistsError):
        rows.merge_runs(sweep_dir.path, FIX / "h100_profile_run", tmp_path / "merged")


# ---- the command line ---------------------------------------------------------------------------

cli = CliRunner()
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
CASE = ["--phase", "decode", "--kv-len", "32,48", "--q-heads", "4", "--kv-heads", "2", "--head-dim", "16"]


@pytest.fixture
def no_ncu(monkeypatch, tmp_path):
    monkeypatch.delenv("ATTNBENCH_NCU", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # python runs from sys.executable


def _one_line_exit_2(args: list[str], needle: str) -> None:
    result = cli.invoke(app, ["profile", *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_cli_without_ncu_exits_2(no_ncu, tmp_path):
    _one_line_exit_2(["--tool", "ncu", *CASE, "--out", str(tmp_path / "p")], "ncu) is not on the PATH")
    assert not (tmp_path / "p").exists()


@no_gpu
def test_cli_without_gpu_exits_2(fake_ncu, monkeypatch, tmp_path):  # noqa: F811 - the imported fixture
    monkeypatch.setenv("ATTNBENCH_NCU", fake_ncu)
    _one_line_exit_2(["--tool", "ncu", *CASE], "no CUDA GPU visible")
    _one_line_exit_2(["--tool", "torch", *CASE], "no CUDA GPU visible")
    _one_line_exit_2(["--tool", "ncu", "--device", "cpu", *CASE], "needs a GPU")


def test_cli_bad_input_exits_2(tmp_path):
    config = str(Path(__file__).parent.parent / "configs" / "smoke.yaml")
    cpu = ["--tool", "torch", "--device", "cpu"]
    _one_line_exit_2([config, "--seqlen", "64", *cpu], "describe one case")
    _one_line_exit_2(["--tool", "perf", *CASE], "--tool 'perf' is not one of ncu, torch")
    _one_line_exit_2([*cpu, "--backend", "warp-drive", *CASE], "unknown backend")
    _one_line_exit_2([config, "--workload", "nope", *cpu], "--workload 'nope'")


def test_cli_torch_profile_on_cpu_writes_a_run_directory(tmp_path):
    from attnbench.case_flags import case_from_flags

    # A sweep run holding the naive point: --sweep puts its timings under the profile's fields.
    paged = case_from_flags("decode", "1", "32,48", 4, 2, 16, "bf16", True, 16, "shuffled", 0)
    sweep = RunDir(tmp_path / "sweep")
    sweep.create()
    sweep.write_manifest({"run_id": "sweep", "device": "cpu"})
    sweep.append_row({**paged.describe(), "backend": "naive", "status": "ok", "reason": "",
                      "latency_ms_p50": 123.0, "samples_ms": [123.0] * 3, "timer": "host-perf-counter"})
    out = tmp_path / "prof"
    args = ["profile", "--tool", "torch", "--device", "cpu", "--backend", "naive", "--backend", "sdpa-flash",
            *CASE, "--block-size", "16", "--calls", "2", "--out", str(out), "--sweep", str(sweep.path)]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest, got = load_run(out)
    assert manifest["kind"] == "profile" and manifest["tool"] == "torch" and manifest["status"] == "complete"
    assert manifest["timer"] == "torch-profiler-cpu-span" and manifest["merged_sweep"] == str(sweep.path)
    by = {r["backend"]: r for r in got}
    assert by["sdpa-flash"]["status"] == "skipped" and "cuda" in by["sdpa-flash"]["reason"]
    naive = by["naive"]
    assert naive["case_id"] == paged.case_id and naive["block_size"] == 16  # the paged KV form
    assert naive["status"] == naive["profile_status"] == "ok"
    assert naive["latency_ms_p50"] == 123.0 and naive["timer"] == "host-perf-counter"  # the sweep's
    assert naive["torch_calls"] == 2 and naive["torch_kernels"]
    assert (out / naive["torch_trace"]).name == point_name(paged, "naive") + ".json"
    assert (out / naive["torch_trace"]).exists()


def test_config_points_follow_the_plan_narrowed_by_workload_and_phase():
    from attnbench.profile.command import config_points

    smoke = Path(__file__).parent.parent / "configs" / "smoke.yaml"
    a = {"config": smoke, "workload": None, "phase": "decode,prefill"}
    points, skips, cfg, _plan = config_points(a, ["naive", "sdpa-flash"], "cpu")
    assert {w.phase for w in cfg.workloads} == {"decode", "prefill"}
    assert points and {p.backend for p in points} == {"naive"}
    assert {p.case.phase for p in points} == {"decode", "prefill"}
    assert skips and all(r["backend"] == "sdpa-flash" and r["status"] == "skipped" for r in skips)
    only, _, cfg, _ = config_points({**a, "workload": ["decode"], "phase": None}, ["naive"], "cpu")
    assert [w.name for w in cfg.workloads] == ["decode"] and {p.case.workload for p in only} == {"decode"}


def test_child_past_its_time_limit_is_ended():
    from attnbench.profile.proc import run_group

    sleeper = "print('started', flush=True); import time; time.sleep(60)"
    code, out = run_group([sys.executable, "-c", sleeper], 2)
    assert code is None and "started" in out
    assert run_group([sys.executable, "-c", "print('done')"], 30) == (0, "done\n")
