"""attnbench profile under Nsight Compute: the ncu CSV parser on real H100 output, and the runner's
ncu path with a stand-in ncu. The CSV fixtures under tests/fixtures/ncu/ were recorded on an H100 with
record.sh beside them. The PyTorch profiler, rows beside a sweep's and the CLI: test_profile.py.
"""

from __future__ import annotations

import csv
import stat
import sys
from pathlib import Path

import pytest

from attnbench.case import Case
from attnbench.metrics import min_hbm_bytes
from attnbench.profile import ncu
from attnbench.profile.runner import Point, Runner, Setup, point_name
from attnbench.runner.results import RunDir

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
