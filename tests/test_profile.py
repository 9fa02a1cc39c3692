"""attnbench profile: the ncu CSV parser on real H100 output, the runner's ncu path with a stand-in
ncu, the PyTorch-profiler summary on a CPU run, the merge with sweep rows, the CLI's clean exits.

The CSV fixtures under tests/fixtures/ncu/ were recorded on an H100 with record.sh beside them.
"""

from __future__ import annotations

import csv
import json
import stat
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from attnbench.case import Case
from attnbench.cli import app
from attnbench.metrics import min_hbm_bytes
from attnbench.profile import ncu, rows, torchprof
from attnbench.profile.runner import Point, Runner, Setup, point_name
from attnbench.runner.results import RunDir, load_run

FIX = Path(__file__).parent / "fixtures" / "ncu"
FLASH_RAW = FIX / "h100_decode_b8_sdpa-flash_raw.csv"
NAIVE_RAW = FIX / "h100_decode_b8_bs16_naive_raw.csv"
FLASH_DETAILS = FIX / "h100_decode_b8_sdpa-flash_details.csv"
# The recorded case: decode, 8 sequences of context 4096, Hq 32, Hkv 8, d 128, bf16 (record.sh).
B8 = Case("cli", "decode", (1,) * 8, (4096,) * 8, 32, 8, 128, "bf16", False, "list")
B8_PAGED = Case("cli", "decode", (1,) * 8, (4096,) * 8, 32, 8, 128, "bf16", False, "list", 16)


def csv_column(path: Path, metric: str) -> list[float]:
    """A metric's per-kernel values read with the csv module alone (units row skipped)."""
    table = list(csv.reader(line for line in path.read_text().splitlines() if line.startswith('"')))
    col = table[0].index(metric)
    return [float(r[col].replace(",", "")) for r in table[2:]]


# ---- the ncu CSV parser ----------------------------------------------------------------------


def test_raw_page_of_real_h100_output_gives_each_kernel_and_its_metrics():
    kernels = ncu.parse_csv(FLASH_RAW.read_text())
    assert [k["name"] for k in kernels] == ["flash_fwd_splitkv_kernel", "flash_fwd_splitkv_combine_kernel"]
    assert [k["id"] for k in kernels] == [0, 1]
    # The units row says ns and byte; values keep their thousands separators in the file.
    assert [k["duration_ns"] for k in kernels] == csv_column(FLASH_RAW, "gpu__time_duration.sum")
    assert [k["dram_read_bytes"] for k in kernels] == csv_column(FLASH_RAW, "dram__bytes_read.sum")
    main = kernels[0]
    assert main["full_name"].startswith("void flash_fwd_splitkv_kernel<")
    for f in ("l2_hit_pct", "occupancy_pct", "sm_throughput_pct", "tensor_pipe_pct", "dram_throughput_pct"):
        assert 0.0 <= main[f] <= 100.0, f
    assert main["registers_per_thread"] == csv_column(FLASH_RAW, "launch__registers_per_thread")[0]
    assert main["smem_dynamic_bytes"] > 0 and main["grid_size"] > 0 and main["block_size"] > 0


def test_details_page_gives_the_same_kernels_as_the_raw_page():
    raw = ncu.parse_csv(FLASH_RAW.read_text())
    details = ncu.parse_csv(FLASH_DETAILS.read_text())
    assert [k["name"] for k in details] == [k["name"] for k in raw]
    for a, b in zip(raw, details, strict=True):
        for f in ("duration_ns", "dram_read_bytes", "dram_write_bytes", "l2_hit_pct", "tensor_pipe_pct"):
            assert a[f] == pytest.approx(b[f]), f


def test_point_sums_against_the_model_minimum():
    flash = ncu.summarize(ncu.parse_csv(FLASH_RAW.read_text()), B8)
    naive_kernels = ncu.parse_csv(NAIVE_RAW.read_text())
    naive = ncu.summarize(naive_kernels, B8_PAGED)
    assert flash["ncu_kernel_count"] == 2 and naive["ncu_kernel_count"] == len(naive_kernels) > 5
    assert flash["dram_read_bytes"] == sum(csv_column(FLASH_RAW, "dram__bytes_read.sum"))
    assert naive["dram_write_bytes"] == sum(csv_column(NAIVE_RAW, "dram__bytes_write.sum"))
    duration_ns = sum(csv_column(FLASH_RAW, "gpu__time_duration.sum"))
    assert flash["ncu_duration_ms"] == pytest.approx(duration_ns / 1e6)
    # Minimum read: K and V once (2 * 8 * 4096 * 8 * 128 * 2 B) plus Q (8 * 32 * 128 * 2 B).
    assert flash["min_read_bytes"] == 2 * 8 * 4096 * 8 * 128 * 2 + 8 * 32 * 128 * 2
    assert flash["dram_read_ratio"] == pytest.approx(flash["dram_read_bytes"] / flash["min_read_bytes"])
    total = flash["dram_read_bytes"] + flash["dram_write_bytes"]
    assert flash["dram_total_ratio"] == pytest.approx(total / min_hbm_bytes(B8))
    # What the recording showed: the flash kernel reads K/V about once, the naive path several times.
    assert 0.99 < flash["dram_read_ratio"] < 1.1
    assert naive["dram_read_ratio"] > 3
    assert naive["ncu_main_kernel"] == max(naive_kernels, key=lambda k: k["duration_ns"])["name"]
    # Percentages are duration-weighted: between the smallest and largest kernel value.
    pct = [k["l2_hit_pct"] for k in naive_kernels]
    assert min(pct) <= naive["ncu_l2_hit_pct"] <= max(pct)


def test_scaled_units_and_missing_values():
    text = (
        '"ID","Kernel Name","gpu__time_duration.sum","dram__bytes_read.sum","lts__t_sector_hit_rate.pct"\n'
        '"","","usecond","Mbyte","%"\n'
        '"0","void k<1>(int)","1.5","2.25","n/a"\n'
        '==PROF== Disconnected from process 1\n'
    )
    (k,) = ncu.parse_csv(text)
    assert k["name"] == "k" and k["duration_ns"] == pytest.approx(1500.0)
    assert k["dram_read_bytes"] == pytest.approx(2.25e6) and k["l2_hit_pct"] is None
    summary = ncu.summarize([k], B8)
    assert summary["dram_write_bytes"] is None and summary["dram_total_ratio"] is None
    assert ncu.parse_csv("==PROF== nothing profiled\n") == []


@pytest.mark.parametrize(("full", "short"), [
    ("void at::native::(anonymous namespace)::cunn_SoftMaxFwd<float, float, flo", "cunn_SoftMaxFwd"),
    ("void at::<unnamed>::cunn_SoftMax<float, at::<unnamed>::E, long, 4>(T3 *)", "cunn_SoftMax"),
    ("void at::unrolled_elementwise_kernel<at::direct_copy_kernel_cuda(at::TensorIteratorBase &)::[l",
     "unrolled_elementwise_kernel"),
    ("nvjet_sm90_tst_128x8_64x12_1x1_h_bz_NNT", "nvjet_sm90_tst_128x8_64x12_1x1_h_bz_NNT"),
    ("aten::matmul", "matmul"),
])
def test_short_kernel_names(full, short):
    assert ncu.short_name(full) == short


def test_metric_choice_follows_what_the_gpu_lists():
    listed = ncu.parse_metric_names((FIX / "h100_query_metrics_excerpt.txt").read_text())
    assert {"dram__bytes_read", "sm__pipe_tensor_op_hmma_cycles_active", "dram__throughput"} <= listed
    chosen = ncu.choose_metrics(listed)
    assert chosen[: len(ncu.CORE_METRICS)] == list(ncu.CORE_METRICS)
    assert "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active" in chosen
    assert ncu.choose_metrics(set()) == list(ncu.CORE_METRICS)  # ncu could not say: core only


def test_command_lines():
    cmd = ncu.profile_command("ncu", ["a.sum", "b.pct"], Path("/r/x"), ["python", "-m", "t"])
    text = " ".join(cmd)
    for flag in ("--clock-control none", "--profile-from-start off", "--cache-control all",
                 "--metrics a.sum,b.pct", "--export /r/x"):
        assert flag in text
    assert cmd[-3:] == ["python", "-m", "t"]
    imp = ncu.import_command("ncu", Path("/r/x.ncu-rep"))
    assert imp[:3] == ["ncu", "--import", "/r/x.ncu-rep"] and "--csv" in imp and "raw" in imp


# ---- the runner's ncu path, with a stand-in ncu ------------------------------------------------

FAKE_NCU = """#!{python}
import json, os, pathlib, sys
args = sys.argv[1:]
if "--version" in args:
    print("Version 2025.3.1.0 (stand-in)")
elif "--import" in args:
    sys.stdout.write(pathlib.Path(os.environ["FAKE_NCU_CSV"]).read_text())
else:
    if os.environ.get("FAKE_NCU_METRIC_ERROR") and "sm__pipe_tensor" in ",".join(args):
        print("==ERROR== Failed to find metric sm__pipe_tensor_op_hmma_cycles_active")
        sys.exit(1)
    pathlib.Path(args[args.index("--export") + 1] + ".ncu-rep").write_text("report")
    if not os.environ.get("FAKE_NCU_NO_RESULT"):
        result = {{"status": "ok", "reason": "", "rel_err": 0.002, "warmup_calls": 3,
                  "info": {{"variant": "v"}}}}
        pathlib.Path(args[args.index("--result") + 1]).write_text(json.dumps(result))
    print("==PROF== Connected to process 1")
    if os.environ.get("FAKE_NCU_ERROR"):
        print("==ERROR== " + os.environ["FAKE_NCU_ERROR"])
"""


@pytest.fixture
def fake_ncu(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / "ncu"
    exe.parent.mkdir()
    exe.write_text(FAKE_NCU.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("FAKE_NCU_CSV", str(FLASH_RAW))
    for var in ("FAKE_NCU_ERROR", "FAKE_NCU_NO_RESULT", "FAKE_NCU_METRIC_ERROR"):
        monkeypatch.delenv(var, raising=False)
    return str(exe)


def _runner(tmp_path, exe, metrics=None) -> Runner:
    run = RunDir(tmp_path / "run")
    run.create()
    return Runner(run, Setup("ncu", "cuda", ncu=exe, metrics=metrics or list(ncu.CORE_METRICS), timeout_s=60))


def test_runner_ncu_ok_row(tmp_path, fake_ncu):
    runner = _runner(tmp_path, fake_ncu)
    row = runner.profile(Point(B8, "sdpa-flash"))
    assert row["status"] == "ok", row["reason"]
    assert row["case_id"] == B8.case_id and row["min_hbm_bytes"] == min_hbm_bytes(B8)
    assert row["dram_read_bytes"] == sum(csv_column(FLASH_RAW, "dram__bytes_read.sum"))
    assert row["variant"] == "v" and row["rel_err"] == 0.002 and row["profile_tool"] == "ncu"
    assert row["timer"] == "ncu-kernel-time" and row["latency_ms_p50"] == row["ncu_duration_ms"]
    assert row["samples_ms"] == [pytest.approx(row["ncu_duration_ms"])] and row["hbm_gbps"] > 0
    name = point_name(B8, "sdpa-flash")
    assert (runner.run.path / "ncu" / f"{name}.csv").exists()
    assert (runner.run.path / "logs" / f"{name}.log").read_text().startswith("==PROF==")
    assert row["ncu_report"] == f"ncu/{name}.ncu-rep"


def test_runner_kernel_ncu_cannot_profile_is_a_failed_row_with_reason(tmp_path, fake_ncu, monkeypatch):
    monkeypatch.setenv("FAKE_NCU_ERROR", 'Failed to profile "flash_fwd_kernel" in process 1')
    row = _runner(tmp_path, fake_ncu).profile(Point(B8, "sdpa-flash"))
    assert row["status"] == "failed" and "Failed to profile" in row["reason"]
    assert "dram_read_bytes" not in row and len(row["ncu_kernels"]) == 2  # no partial sums


def test_runner_stops_trying_after_a_fatal_ncu_error(tmp_path, fake_ncu, monkeypatch):
    monkeypatch.setenv("FAKE_NCU_ERROR", "ERR_NVGPUCTRPERM - The user does not have permission")
    runner = _runner(tmp_path, fake_ncu)
    first = runner.profile(Point(B8, "sdpa-flash"))
    second = runner.profile(Point(B8_PAGED, "naive"))
    assert first["status"] == second["status"] == "failed"
    assert "ERR_NVGPUCTRPERM" in first["reason"] and second["reason"].startswith("not profiled: ncu:")


def test_runner_child_without_result_and_metric_retry(tmp_path, fake_ncu, monkeypatch):
    monkeypatch.setenv("FAKE_NCU_NO_RESULT", "1")
    row = _runner(tmp_path, fake_ncu).profile(Point(B8, "sdpa-flash"))
    assert row["status"] == "failed" and "without a result" in row["reason"]
    monkeypatch.delenv("FAKE_NCU_NO_RESULT")
    monkeypatch.setenv("FAKE_NCU_METRIC_ERROR", "1")
    runner = _runner(tmp_path, fake_ncu, ncu.choose_metrics({"sm__pipe_tensor_op_hmma_cycles_active"}))
    row = runner.profile(Point(B8, "sdpa-flash"))
    assert row["status"] == "ok" and runner.setup.metrics == list(ncu.CORE_METRICS)


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
def test_cli_without_gpu_exits_2(fake_ncu, monkeypatch, tmp_path):
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
