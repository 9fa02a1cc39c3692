"""`attnbench run`: --batch with length mixes, timing flags, --out/--csv, --baseline-backend."""

from __future__ import annotations

import io
import json

import pandas as pd
from typer.testing import CliRunner

import attnbench.runner.worker
from attnbench.cli import app
from attnbench.config.sweep_config import TimingPolicy

runner = CliRunner()
SMALL = ["--device", "cpu", "--q-heads", "2", "--head-dim", "16", "--dtype", "fp32", "--max-time-s", "0.2",
         "--min-samples", "3"]


def run(*args):
    return runner.invoke(app, ["run", *SMALL, *args], catch_exceptions=False)


def rows_of(result):
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_batch_repeats_one_context_length():
    result = run("--phase", "decode", "--batch", "5", "--kv-len", "64", "--json")
    assert result.exit_code == 0, result.output
    (row,) = rows_of(result)
    assert row["kv_lens"] == [64] * 5 and row["q_lens"] == [1] * 5 and row["batch"] == 5


def test_lengths_mix_draws_batch_lengths_like_a_config():
    from attnbench.workloads import draw_lengths, parse_mix

    result = run("--phase", "prefill", "--batch", "4", "--lengths", "uniform:8-40", "--json")
    (row,) = rows_of(result)
    assert tuple(row["kv_lens"]) == draw_lengths(parse_mix("uniform:8-40"), 4, 0, "prefill")
    assert row["seqlen_mix"] == "uniform8-40" and "/uniform8-40-" in row["case_id"]
    mixed = rows_of(run("--phase", "mixed", "--batch", "2", "--lengths", "fixed:64", "--chunk", "16",
                        "--json"))
    assert mixed[0]["q_lens"] == [16, 16] and mixed[0]["kv_lens"] == [64, 64]


def test_batch_with_a_list_of_lengths_is_one_line_exit_2():
    result = runner.invoke(app, ["run", "--device", "cpu", "--batch", "2", "--seqlen", "4,5"])
    assert result.exit_code == 2 and "--seqlen '4,5' lists lengths per sequence" in result.output
    result = runner.invoke(app, ["run", "--device", "cpu", "--lengths", "bogus:3"])
    assert result.exit_code == 2 and "--lengths 'bogus:3'" in result.output


def test_every_timing_policy_field_has_a_flag_and_reaches_the_executor(monkeypatch):
    seen = {}
    real = attnbench.runner.worker.executor_for

    def spy(device, policy, *args, **kwargs):
        seen["policy"] = policy
        return real(device, policy, *args, **kwargs)

    monkeypatch.setattr(attnbench.runner.worker, "executor_for", spy)
    help_text = runner.invoke(app, ["run", "--help"], terminal_width=200).stdout
    for name in TimingPolicy.__dataclass_fields__:
        assert "--" + name.replace("_", "-") in help_text, name
    result = run("--seqlen", "16", "--cuda-graph", "--no-l2-flush", "--max-samples", "7", "--json")
    assert result.exit_code == 0, result.output
    policy = seen["policy"]
    assert policy.cuda_graph is True and policy.l2_flush is False and policy.max_samples == 7
    assert policy.min_samples == 3  # given
    assert policy.target_rel_ci == TimingPolicy.for_device("cpu").target_rel_ci  # not given: CPU default


def test_bad_timing_flag_names_the_flag():
    result = runner.invoke(app, ["run", "--device", "cpu", "--min-samples", "0"])
    assert result.exit_code == 2 and "--min-samples: bad value 0" in result.output
    result = runner.invoke(app, ["run", "--device", "cpu", "--min-samples", "9", "--max-samples", "3"])
    assert result.exit_code == 2 and "at most timing.max_samples" in result.output


def test_out_csv_and_stdout_csv_carry_identity(tmp_path):
    out = tmp_path / "rows.csv"
    result = run("--seqlen", "16", "--backend", "naive", "--backend", "sdpa-math", "--out", str(out), "--csv")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out)
    assert list(df["backend"]) == ["naive", "sdpa-math"] and df["run_id"].str.startswith("20").all()
    assert pd.read_csv(io.StringIO(result.stdout))["case_id"].nunique() == 1
    jsonl = tmp_path / "rows.jsonl"
    assert run("--seqlen", "16", "--out", str(jsonl)).exit_code == 0
    assert json.loads(jsonl.read_text().splitlines()[0])["backend"] == "naive"


def test_baseline_backend_speedup_column_and_field():
    result = run("--seqlen", "16", "--backend", "sdpa-math", "--baseline-backend", "naive", "--json")
    rows = {r["backend"]: r for r in rows_of(result)}
    assert set(rows) == {"naive", "sdpa-math"}  # the baseline is measured too
    assert rows["naive"]["speedup_vs_baseline"] == 1.0
    expected = rows["naive"]["latency_ms_p50"] / rows["sdpa-math"]["latency_ms_p50"]
    assert rows["sdpa-math"]["speedup_vs_baseline"] == expected
    table = run("--seqlen", "16", "--backend", "sdpa-math", "--baseline-backend", "naive")
    assert "speed-up vs naive" in table.output and "1.00x" in table.output


def test_table_shows_n_and_interval_and_small_values_in_significant_digits():
    from attnbench.console import out as console
    from attnbench.console import rows_table

    row = {"backend": "b", "status": "ok", "latency_ms_p50": 0.001234, "latency_ms_ci_low": 0.001201,
           "latency_ms_ci_high": 0.001262, "n_samples": 1, "tflops": 0.0004321, "hbm_gbps": 0.002,
           "bw_util": 0.00001, "rel_err": 1e-3}
    with console.capture() as cap:
        console.print(rows_table([row], "t"))
    text = cap.get()
    assert "0.001234 [0.001201, 0.001262] n=1" in text  # digits enough to tell the ends apart
    assert "0.000432" in text and "0.00 " not in text
