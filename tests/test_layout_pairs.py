"""The paired layout measurement (the sweep's `layout_pairs:` post-step) and the claim it answers.

Timing assertions use planted effects far beyond the limit (3x) or identical work, never a small
ratio, so a busy 2-core machine under xdist cannot flip them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from attnbench.config.layout_pairs import LayoutPairs
from attnbench.config.sweep_config import ConfigError, parse_config
from attnbench.report.claims import layout_cost
from attnbench.report.load import RunData, load_one, normalize
from attnbench.runner.layout_measure import PairJob
from attnbench.runner.layout_pairs import LAYOUT_FILE, find_jobs, measure_pairs, write_layout_pairs
from attnbench.runner.layout_stats import layout_ratio, quads
from attnbench.runner.plan import build_plan
from attnbench.runner.results import RunDir
from attnbench.runner.sweep import run_sweep
from attnbench.sysinfo import environment

# tests.layout_fakes' settings, repeated here: importing that module would register its backends in
# this process for good (every later test of the worker would plan them); the plugin loader loads it
FAIL_ENV = "ATTNBENCH_TEST_LAYOUT_FAIL"
SLOW_FACTOR = 3

CONFIG = """
name: lp
timing: {max_time_s: 0.05, point_timeout_s: 30}
layout_pairs: {pairs: 40, rounds: 3, max_time_s: 1.5}
workloads:
  - name: d
    phase: decode
    batch: [2]
    lengths: ["uniform:20-60"]
    q_heads: [4]
    kv_heads: [2]
    head_dim: [16]
    dtype: [fp32]
    block_size: [8]
    block_order: [shuffled, contiguous]
"""


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "tests.layout_fakes")
    import attnbench.backends as b

    monkeypatch.setattr(b, "_loaded", False)


def _sweep(tmp_path: Path, backends: list[str]):
    cfg = parse_config(CONFIG, "lp.yaml")
    plan = build_plan(cfg, "cpu", backends)
    run = RunDir(tmp_path / "run")
    run_sweep(cfg, plan, run, "cpu", environment("cpu"), isolate=False)
    return cfg, plan, run


def _layout_claim(run_dir: Path):
    return layout_cost(load_one(run_dir), {})


# ---- config -------------------------------------------------------------------------------------
WL = ("workloads:\n  - name: w\n    phase: decode\n    lengths: ['fixed:8']\n    q_heads: [2]\n"
      "    kv_heads: [2]\n    head_dim: [16]\n    block_size: [4]\n")


@pytest.mark.parametrize("value,needle", [
    ("{pairs: 1}", "layout_pairs.pairs: bad value 1; expected an integer >= 2"),
    ("{pairs: 2.5}", "layout_pairs.pairs: bad value 2.5"),
    ("{rounds: 0}", "layout_pairs.rounds: bad value 0; expected an integer >= 1"),
    ("{max_time_s: -1}", "layout_pairs.max_time_s: bad value -1; expected a finite number of seconds > 0"),
    ("{alpha: 1.5}", "layout_pairs.alpha: bad value 1.5; expected a number in (0, 1)"),
    ("{colour: red}", "layout_pairs.colour: bad value 'red'; expected no key 'colour' here; allowed keys"),
    ("many", "layout_pairs: bad value 'many'; expected a mapping with keys pairs, rounds"),
])
def test_bad_layout_pairs_values_are_one_line_naming_key_and_allowed(value, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(f"name: x\nlayout_pairs: {value}\n{WL}", "x.yaml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_layout_pairs_defaults_and_absence():
    assert parse_config(f"name: x\n{WL}").layout_pairs is None
    assert parse_config(f"name: x\nlayout_pairs: {{}}\n{WL}").layout_pairs == LayoutPairs()
    assert parse_config(f"name: x\nlayout_pairs: true\n{WL}").layout_pairs == LayoutPairs()
    got = parse_config(f"name: x\nlayout_pairs: {{pairs: 50, rounds: 4, max_time_s: 2, alpha: 0.01}}\n{WL}")
    assert got.layout_pairs == LayoutPairs(pairs=50, rounds=4, max_time_s=2, alpha=0.01)


# ---- statistics ---------------------------------------------------------------------------------
def test_quads_cancel_an_order_effect_that_single_pairs_show():
    """The second call of a pair 20% slower whatever its side: AB pairs read 1.2, BA pairs 1/1.2;
    a quad (AB + the next BA) reads exactly 1."""
    orders = ["ab", "ba"] * 50
    a = [1.0 if o == "ab" else 1.2 for o in orders]
    b = [1.2 if o == "ab" else 1.0 for o in orders]
    a_q, b_q = quads(a, b, orders)
    assert a_q.size == 50 and np.allclose(b_q / a_q, 1.0)
    # a dropped pair leaves its partner out instead of pairing two AB pairs
    a_q, _ = quads(a[1:], b[1:], orders[1:])
    assert a_q.size == 49


def test_interval_widens_when_rounds_disagree_more_than_their_pairs():
    rng = np.random.default_rng(0)
    rounds = []
    for shift in (1.00, 1.05, 1.10, 1.02, 1.08):  # placement: each round its own ratio
        a = list(1.0 + 0.001 * rng.random(40))
        rounds.append((a, [x * shift for x in a], ["ab", "ba"] * 20))
    r = layout_ratio(rounds, 0.05)
    assert r is not None and r.widened and r.rounds == 5 and r.n_pairs == 200 and r.n_quads == 100
    assert r.low is not None and r.high is not None and r.pooled_low is not None and r.pooled_high is not None
    assert r.low < r.pooled_low and r.high > r.pooled_high and r.low < 1.045 < r.high


# ---- the measurement in a sweep ------------------------------------------------------------------
def test_find_jobs_pairs_only_ok_paged_kernels_with_both_orders():
    cfg = parse_config(CONFIG)
    plan = build_plan(cfg, "cpu", ["test-paged-same", "naive"])
    cases = [pc.case for pc in plan.cases]
    shuffled = next(c for c in cases if c.paged and c.kv_layout == "shuffled")
    twin = PairJob(shuffled, "x").contiguous
    rows = [{"case_id": c.case_id, "backend": b, "family": f, "block_size": c.block_size, "status": "ok"}
            for c in (shuffled, twin) for b, f in (("test-paged-same", "paged"), ("naive", "naive"))]
    assert [(j.shuffled, j.backend) for j in find_jobs(cases, rows)] == [(shuffled, "test-paged-same")]
    rows[1]["status"] = "failed"  # naive's shuffled row: irrelevant, naive is never paired
    rows[2]["status"] = "incorrect"  # the contiguous twin of test-paged-same
    assert find_jobs(cases, rows) == []


def test_sweep_post_step_writes_records_and_the_claim_reads_them(tmp_path, monkeypatch, capsys):
    cfg, plan, run = _sweep(tmp_path, ["test-paged-slow", "test-paged-same", "test-paged-flaky"])
    assert {r["status"] for r in run.rows()} == {"ok"}
    monkeypatch.setenv(FAIL_ENV, "raise")  # ok in the sweep, failing in the post-step
    write_layout_pairs(cfg.layout_pairs, [pc.case for pc in plan.cases], run.path, "cpu", False,
                       isolate=False, timeout_s=60)
    assert "layout pairs: 3 (case, backend) pairs in" in capsys.readouterr().out
    doc = json.loads((run.path / LAYOUT_FILE).read_text())
    assert doc["complete"] and doc["settings"]["rounds"] == 3 and doc["device"] == "cpu"
    assert doc["point_alpha"] == pytest.approx(0.05 / 2)  # Bonferroni over the two timed records
    by = {r["backend"]: r for r in doc["records"]}
    for name in ("test-paged-slow", "test-paged-same"):
        r = by[name]
        assert r["status"] == "ok" and r["rounds_done"] == 3 and r["rounds"] == 3, r
        assert r["shuffled_case_id"].endswith("/bs8-shuffled") and r["contiguous_case_id"].endswith(
            "/bs8-contiguous") and r["block_size"] == 8
        assert r["n_pairs"] == sum(len(x) for x in r["samples_ms"]["shuffled"]) >= 3 * 10
        sides = r["samples_ms"]
        assert [len(x) for x in sides["shuffled"]] == [len(x) for x in sides["contiguous"]]
        assert all(0 <= e <= 1 for side in r["errors"].values() for e in side)
        assert len(r["errors"]["shuffled"]) == len(r["errors"]["contiguous"]) == 3
        assert r["low"] <= r["ratio"] <= r["high"] and "perf_counter" in r["timer"]
    assert by["test-paged-slow"]["ratio"] > 0.6 * SLOW_FACTOR and by["test-paged-slow"]["low"] > 1.5
    assert 0.5 < by["test-paged-same"]["ratio"] < 2.0
    flaky = by["test-paged-flaky"]
    assert flaky["status"] == "failed" and "planted layout failure" in flaky["reason"]
    assert "ratio" not in flaky and flaky["reason"].startswith("round 0: ")

    claim = _layout_claim(run.path)
    assert claim.verdict == "does not hold", claim.numbers  # median of +200% and ~0%
    assert claim.values["source"] == "layout_pairs" and claim.values["n"] == 2
    assert claim.numbers.startswith("paired: median +") and "over 2 (case, kernel) pair(s)" in claim.numbers
    assert "test-paged-slow d uniform20-60 bs8 +" in claim.numbers and "pairs in 3 rounds" in claim.numbers
    assert "1 of 3 paired record(s) not measured: test-paged-flaky" in claim.numbers
    assert "unpaired sweep rows, context only" in claim.numbers and "paired" in claim.rule


def test_identical_work_on_both_orders_is_not_called_a_cost(tmp_path):
    cfg, plan, run = _sweep(tmp_path, ["test-paged-same"])
    write_layout_pairs(cfg.layout_pairs, [pc.case for pc in plan.cases], run.path, "cpu", False,
                       isolate=False, timeout_s=60)
    claim = _layout_claim(run.path)
    assert claim.values["source"] == "layout_pairs"
    assert claim.verdict != "does not hold", claim.numbers
    assert claim.verdict == "holds" or claim.verdict.startswith("undecided")


def test_a_crashing_backend_is_a_record_and_a_fresh_process_measures_the_next(tmp_path, monkeypatch):
    cfg = parse_config(CONFIG)
    shuffled = next(pc.case for pc in build_plan(cfg, "cpu", ["test-paged-same"]).cases
                    if pc.case.paged and pc.case.kv_layout == "shuffled")
    monkeypatch.setenv(FAIL_ENV, "crash")  # the spawned measuring process inherits it
    settings = LayoutPairs(pairs=20, rounds=1, max_time_s=0.5)
    doc = measure_pairs([PairJob(shuffled, "test-paged-flaky"), PairJob(shuffled, "test-paged-same")],
                        settings, "cpu", tmp_path, isolate=True, timeout_s=120)
    crashed, good = doc["records"]
    assert crashed["status"] == "failed" and "exit code 3" in crashed["reason"]
    assert "measuring process replaced" in crashed["reason"]
    assert good["status"] == "ok" and good["n_pairs"] >= 10 and math.isfinite(good["ratio"])
    assert json.loads((tmp_path / LAYOUT_FILE).read_text())["records"][0]["status"] == "failed"


# ---- the claim's rule on given records ------------------------------------------------------------
def _run_with(records: list[dict]) -> RunData:
    doc = {"alpha": 0.05, "records": [{"status": "ok", "backend": "k", "workload": "w", "seqlen_mix": "m",
                                       "block_size": 16, "n_pairs": 400, "rounds": 4, **r} for r in records]}
    return RunData(path=Path("."), manifest={"device": "cpu"}, df=normalize([]), layout_pairs=doc)


@pytest.mark.parametrize("records,verdict", [
    ([{"ratio": 1.002, "low": 0.998, "high": 1.006}], "holds"),
    ([{"ratio": 1.03, "low": 1.02, "high": 1.04}], "does not hold"),
    ([{"ratio": 1.01, "low": 1.004, "high": 1.016}], "undecided"),
    ([{"ratio": 1.01, "low": None, "high": None}], "undecided"),  # unbounded: cannot tell
    # the figure's bounds are the medians of the records' bounds
    ([{"ratio": 1.0, "low": 0.99, "high": 1.005}, {"ratio": 1.001, "low": 0.995, "high": 1.008},
      {"ratio": 1.3, "low": 1.2, "high": 1.4}], "holds"),
])
def test_claim_verdict_from_intervals(records, verdict):
    c = layout_cost(_run_with(records), {})
    assert c.verdict.startswith(verdict), (c.verdict, c.numbers)
    assert c.numbers.startswith("paired: median ")
    if verdict == "undecided":
        assert "interval contains the 1.0% limit" in c.verdict


def test_claim_text_shows_each_interval_and_falls_back_without_records():
    c = layout_cost(_run_with([{"ratio": 1.008, "low": 0.997, "high": 1.019}]), {})
    assert "paired: median +0.80% [-0.30%, +1.90%] over 1 (case, kernel) pair(s)" in c.numbers
    assert "k w m bs16 +0.80% [-0.30%, +1.90%] over 400 pairs in 4 rounds" in c.numbers
    failed = _run_with([])
    assert failed.layout_pairs is not None
    failed.layout_pairs["records"] = [{"status": "failed", "backend": "k", "workload": "w", "block_size": 16,
                                       "reason": "planted"}]
    c = layout_cost(failed, {})
    assert c.verdict.startswith("not measured") and "1 of 1 paired record(s) not measured" in c.numbers
