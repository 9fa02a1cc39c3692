"""The gate on baselines of K runs: the spread rule's false-alarm rate and power on synthetic runs
with known between-run noise, NOISY, launch-bound and timing-method handling, old single-run
baselines, `baseline save` of K runs and `sweep --repeat K` (CPU only)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.gate import stats as gate_stats
from attnbench.gate.judge import Rules, judge_point
from attnbench.gate.runs import compare, read_baseline
from tests.synthetic_runs import keys, lognormal, row, run_medians, runs_rows, write_run, write_runs

runner = CliRunner()
RULES = Rules(threshold=0.05, point_alpha=0.05)


def _trials(rng, sigma: float, slowdown: float, k: int, trials: int, rules: Rules = RULES) -> float:
    """Fraction of SLOW verdicts for one point over independent (baseline of k runs, fresh run) draws."""
    key = keys(1)[0]
    slow = 0
    for _ in range(trials):
        meds = run_medians(rng, [1.0], sigma, k + 1)[:, 0]
        brows = [row(key, lognormal(rng, m, 0.003, 15)) for m in meds[:k]]
        crow = row(key, lognormal(rng, meds[k] * (1 + slowdown), 0.003, 15))
        slow += judge_point(key, brows, crow, rules).verdict == "SLOW"
    return slow / trials


def _within(observed: float, claimed: float, n: int, sds: float = 4.0) -> bool:
    """observed rate within `sds` binomial sds (plus one count) of the claimed one."""
    return abs(observed - claimed) <= sds * math.sqrt(claimed * (1 - claimed) / n) + 1 / n


def test_t_tail_matches_known_values():
    assert gate_stats.t_sf(0.0, 4) == pytest.approx(0.5, abs=1e-9)
    assert gate_stats.t_sf(2.776445, 4) == pytest.approx(0.025, rel=1e-3)  # the t table's 97.5% point
    assert gate_stats.t_sf(6.0, 1) == pytest.approx(0.5 - math.atan(6.0) / math.pi, rel=1e-6)
    # with no floor the analytic false-alarm rate of the spread rule is the t tail
    assert gate_stats.catch_probability(0.0, 0.02, 5, floor=0.0) == pytest.approx(
        gate_stats.t_sf(6.0, 4), rel=0.01
    )


def test_false_alarm_rate_without_floor_is_the_claimed_t_tail():
    """No floor, K = 5, multiplier 2.5 so that false alarms are frequent enough to count: the
    observed rate of SLOW on pure between-run noise matches P(T_4 > 2.5) = 3.4%; with the default
    multiplier 6 the rate stays within what P(T_4 > 6) = 0.19% allows."""
    rng = np.random.default_rng(21)
    n = 3000
    loose = Rules(0.05, 0.05, multiplier=2.5, floor=0.0, cap=10.0)
    claimed = gate_stats.t_sf(2.5, 4)
    assert _within(_trials(rng, 0.02, 0.0, 5, n, loose), claimed, n)
    strict = Rules(0.05, 0.05, floor=0.0, cap=10.0)
    claimed = gate_stats.t_sf(6.0, 4)
    observed = _trials(rng, 0.02, 0.0, 5, n, strict)
    assert observed <= claimed + 4 * math.sqrt(claimed / n) + 1 / n


def test_false_alarms_over_many_points_stay_within_the_family_claim(tmp_path):
    """14 points (the ci-gate count) with sds from 0.3% to 3%, 5-run baselines and 60 fresh runs:
    the whole-gate false-alarm rate stays under the design's bound 14 x P(T_4 > 6) = 2.7%."""
    rng = np.random.default_rng(22)
    ks = keys(14)
    sds = np.linspace(0.003, 0.03, 14)
    medians = list(np.linspace(0.1, 5.0, 14))
    base = write_runs(tmp_path / "base", runs_rows(rng, ks, run_medians(rng, medians, sds, 5), 0.01, 30))
    b = read_baseline(str(tmp_path / "base"))
    assert b.k == 5 and [r.path for r in b.runs] == base
    claimed_family = 14 * gate_stats.t_sf(6.0, 4)
    failed = 0
    fresh = 60
    for i in range(fresh):
        cur = write_run(
            tmp_path / f"cur-{i}", runs_rows(rng, ks, run_medians(rng, medians, sds, 1), 0.01, 30)[0]
        )
        res = compare(str(tmp_path / "base"), str(cur))
        assert {p.rule for p in res.points} == {"spread"}
        failed += res.exit_code == 1
    # one baseline: the fresh runs share its sds, so allow the binomial spread of 60 runs on top
    assert failed / fresh <= claimed_family + 4 * math.sqrt(claimed_family / fresh)


@pytest.mark.parametrize(("sigma", "slowdown"), [(0.004, 0.05), (0.004, 0.03), (0.006, 0.05), (0.002, 0.03)])
def test_planted_slowdowns_are_caught_at_the_claimed_rate(sigma, slowdown):
    rng = np.random.default_rng(int(sigma * 1e4) + int(slowdown * 100))
    n = 400
    claimed = gate_stats.catch_probability(slowdown, sigma, 5)
    assert _within(_trials(rng, sigma, slowdown, 5, n), claimed, n)


def test_stable_points_catch_five_percent_noisy_points_are_noisy(tmp_path):
    rng = np.random.default_rng(23)
    ks = keys(4)
    medians, sds = [0.3, 0.5, 1.2, 2.0], [0.002, 0.003, 0.08, 0.002]  # point 2: power-capped prefill
    write_runs(tmp_path / "base", runs_rows(rng, ks, run_medians(rng, medians, sds, 5), 0.01, 40))
    cur_meds = run_medians(rng, medians, sds, 1)
    cur_meds[0, 0] *= 1.05  # planted +5% on a stable point
    cur = write_run(tmp_path / "cur", runs_rows(rng, ks, cur_meds, 0.01, 40)[0])
    summary = tmp_path / "s.md"
    out = runner.invoke(app, ["gate", "--baseline", str(tmp_path / "base"), "--current", str(cur),
                              "--summary", str(summary)], env={"COLUMNS": "250"})  # fmt: skip
    assert out.exit_code == 1, out.output
    res = compare(str(tmp_path / "base"), str(cur))
    by_key = {p.key: p for p in res.points}
    assert by_key[ks[0]].verdict == "SLOW" and by_key[ks[0]].k_runs == 5
    assert by_key[ks[2]].verdict == "NOISY" and by_key[ks[2]].spread > 0.03
    assert "not gated" in by_key[ks[2]].note
    assert by_key[ks[1]].verdict == by_key[ks[3]].verdict == "SAME"
    for k in (ks[1], ks[3]):  # stable points: the tolerance is the floor or a little above
        p = by_key[k]
        expected = max(math.log1p(0.02), 6 * math.log1p(p.spread) * math.sqrt(1 + 1 / 5))
        assert p.tolerance == pytest.approx(math.expm1(expected)) and 0.02 <= p.tolerance < 0.04
    md = summary.read_text()
    assert "NOISY" in md and "spread rule" in md and "max(2%, 6 x sd" in md


def test_launch_bound_points_are_gated_on_device_time_and_say_so(tmp_path):
    rng = np.random.default_rng(24)
    ks = keys(2)
    timing = {"timing_method": "blocking-kernel", "launch_bound": True, "call_ms_p50": 0.05}
    meds = run_medians(rng, [0.01, 0.02], 0.002, 6)
    write_runs(tmp_path / "base", runs_rows(rng, ks, meds[:5], 0.01, 30, **timing))
    # the host got much slower (not gated); the device time did not change
    cur = write_run(
        tmp_path / "cur", runs_rows(rng, ks, meds[5:], 0.01, 30, **{**timing, "call_ms_p50": 0.5})[0]
    )
    res = compare(str(tmp_path / "base"), str(cur))
    assert {p.verdict for p in res.points} == {"SAME"}
    assert all("launch-bound (host 0.5 ms per call, gated on device time)" in p.note for p in res.points)
    assert all(p.launch_bound and p.call_ms == 0.5 for p in res.points)


def test_another_timing_method_is_not_compared(tmp_path):
    rng = np.random.default_rng(25)
    ks = keys(2)
    meds = run_medians(rng, [1.0, 2.0], 0.002, 6)
    write_runs(tmp_path / "base", runs_rows(rng, ks, meds[:5], 0.01, 30, timing_method="cuda-events"))
    cur_rows = runs_rows(rng, ks, meds[5:], 0.01, 30)[0]
    cur_rows[0]["timing_method"] = "blocking-kernel"
    res = compare(str(tmp_path / "base"), str(write_run(tmp_path / "cur", cur_rows)))
    by_key = {p.key: p for p in res.points}
    assert by_key[ks[0]].verdict == "UNKNOWN" and "timing method differs" in by_key[ks[0]].note
    assert by_key[ks[1]].verdict == "SAME"  # a row without the field (an older run) is compared as it is


def test_a_baseline_behind_another_l2_flush_is_compared_with_a_note(tmp_path):
    """Rows of the read-only flush (no l2_flush_kind) against write-then-read ones: still gated, and
    the note says to re-save the baseline; the same flush on both sides says nothing."""
    rng = np.random.default_rng(26)
    ks = keys(2)
    meds = run_medians(rng, [1.0, 2.0], 0.002, 6)
    write_runs(tmp_path / "base", runs_rows(rng, ks, meds[:5], 0.01, 30, l2_flush=True))
    cur_rows = runs_rows(rng, ks, meds[5:], 0.01, 30, l2_flush=True)[0]
    cur_rows[0]["l2_flush_kind"] = "write-read"
    res = compare(str(tmp_path / "base"), str(write_run(tmp_path / "cur", cur_rows)))
    by_key = {p.key: p for p in res.points}
    assert by_key[ks[0]].verdict == "SAME" and "L2 flush read -> write-read" in by_key[ks[0]].note
    assert "L2 flush" not in by_key[ks[1]].note


def test_old_single_run_baseline_uses_the_single_run_rule_and_warns():
    root = Path("results/baselines/ci-gate-h100")
    res = compare(str(root), str(root / "evidence" / "run-2"))
    assert res.baseline.k == 1
    assert {p.rule for p in res.points if p.verdict in ("SAME", "SLOW", "FAST")} == {"single-run"}
    assert any("single-run rule" in w and "sweep --repeat 5" in w for w in res.warnings)
    assert res.exit_code == 0  # as committed: run 2 passes against run 1


def test_two_run_baseline_is_slow_only_against_both(tmp_path):
    rng = np.random.default_rng(26)
    k = keys(1)[0]
    b = write_runs(
        tmp_path / "base",
        [[row(k, lognormal(rng, 1.0, 0.005, 40))], [row(k, lognormal(rng, 1.3, 0.005, 40))]],
    )
    assert len(b) == 2
    cur = write_run(tmp_path / "cur", [row(k, lognormal(rng, 1.2, 0.005, 40))])
    (p,) = compare(str(tmp_path / "base"), str(cur)).points
    assert p.rule == "single-run" and p.verdict == "SAME" and "baseline runs disagree" in p.note


def test_baseline_save_of_k_runs_and_the_gate_by_name(tmp_path):
    rng = np.random.default_rng(27)
    ks = keys(3)
    meds = run_medians(rng, [0.5, 1.0, 2.0], 0.003, 7)
    write_runs(tmp_path / "rep", runs_rows(rng, ks, meds[:4], 0.01, 30))
    extra = write_run(tmp_path / "extra", runs_rows(rng, ks, meds[4:5], 0.01, 30)[0])
    root = tmp_path / "baselines"
    out = runner.invoke(app, ["baseline", "save", str(tmp_path / "rep"), "ci-gate-h100", "--add", str(extra),
                              "--baselines-dir", str(root)])  # fmt: skip
    assert out.exit_code == 0, out.output
    saved = root / "ci-gate-h100"
    info = json.loads((saved / "baseline.json").read_text())
    assert info["runs"] == 5 and len(list((saved / "runs").iterdir())) == 5
    assert (saved / "results.jsonl").read_text() == (
        tmp_path / "rep" / "run-01" / "results.jsonl"
    ).read_text()
    cur = write_run(tmp_path / "cur", runs_rows(rng, ks, meds[6:], 0.01, 30)[0])
    out = runner.invoke(
        app, ["gate", "--baseline", "ci-gate-h100", "--current", str(cur), "--baselines-dir", str(root)]
    )
    assert out.exit_code == 0, out.output
    assert read_baseline("ci-gate-h100", root).k == 5
    slug = runner.invoke(app, ["baseline", "slug", str(tmp_path / "rep")])
    assert slug.stdout.strip() == "h100"
    # runs of another config cannot form one baseline
    other = write_run(tmp_path / "other", runs_rows(rng, ks, meds[5:6], 0.01, 30)[0], config_hash="beef")
    out = runner.invoke(app, ["baseline", "save", str(tmp_path / "rep"), "x", "--add", str(other),
                              "--baselines-dir", str(root)])  # fmt: skip
    assert out.exit_code == 2 and "differ in config_hash" in out.stderr


def test_baseline_runs_of_different_configs_are_refused_by_the_gate(tmp_path):
    rng = np.random.default_rng(28)
    ks = keys(2)
    runs = runs_rows(rng, ks, run_medians(rng, [1.0, 2.0], 0.003, 4), 0.01, 30)
    write_runs(tmp_path / "base", runs[:3])
    write_run(tmp_path / "base" / "run-04", runs[3], config_hash="beef")
    cur = write_run(tmp_path / "cur", runs[0])
    out = runner.invoke(app, ["gate", "--baseline", str(tmp_path / "base"), "--current", str(cur)])
    assert out.exit_code == 2 and "the baseline's runs differ in config hash" in out.stderr


REPEAT_CONFIG = """
name: repeat-e2e
device: cpu
timing: {warmup_ms: 1, min_samples: 5, max_samples: 5, max_time_s: 5}
workloads:
  - name: p
    phase: prefill
    batch: [1]
    lengths: ["fixed:8"]
    q_heads: [1]
    kv_heads: [1]
    head_dim: [16]
    dtype: [fp32]
    causal: [true]
"""


def test_sweep_repeat_makes_k_fresh_runs_that_form_a_baseline(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(REPEAT_CONFIG)
    out = tmp_path / "rep"
    cmd = [sys.executable, "-m", "attnbench", "sweep", str(cfg), "--repeat", "3", "--out", str(out),
           "--backends", "naive", "--no-isolate", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = json.loads((out / "repeat.json").read_text())
    assert [r["run"] for r in meta["runs"]] == ["run-01", "run-02", "run-03"]
    assert all(r["exit_code"] == 0 for r in meta["runs"])
    manifests = [json.loads((out / r / "manifest.json").read_text()) for r in ("run-01", "run-02", "run-03")]
    assert len({m["run_id"] for m in manifests}) == 3  # three separate runs
    assert read_baseline(str(out)).k == 3
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert again.returncode == 2 and "already holds runs" in again.stderr


def test_a_current_of_three_runs_is_judged_on_its_median_run(tmp_path):
    """One slow process (+6% on a stable point) does not fail the gate when the current side is three
    runs; the same slowdown in every run does; a point incorrect in one run is BROKEN."""
    rng = np.random.default_rng(31)
    ks = keys(3)
    medians = [0.3, 0.5, 1.2]
    write_runs(tmp_path / "base", runs_rows(rng, ks, run_medians(rng, medians, 0.002, 5), 0.005, 40))

    def current(name: str, factors: list[float], broken_run: int | None = None) -> str:
        meds = run_medians(rng, medians, 0.002, 3)
        meds[:, 0] *= np.asarray(factors)
        rows = runs_rows(rng, ks, meds, 0.005, 40)
        if broken_run is not None:
            rows[broken_run][2] = {**rows[broken_run][2], "status": "incorrect", "reason": "planted"}
        write_runs(tmp_path / name, rows)
        return str(tmp_path / name)

    one_slow = compare(str(tmp_path / "base"), current("one", [1.06, 1.0, 1.0]))
    lone = {p.key: p for p in one_slow.points}[ks[0]]
    # the three runs disagree by 6%: their spread, pooled with the baseline's, makes the point NOISY
    assert one_slow.exit_code == 0 and lone.verdict == "NOISY" and "current runs disagree" in lone.note
    all_slow = compare(str(tmp_path / "base"), current("all", [1.06, 1.06, 1.06]))
    assert {p.key: p for p in all_slow.points}[ks[0]].verdict == "SLOW" and all_slow.exit_code == 1
    broken = compare(str(tmp_path / "base"), current("broken", [1.0, 1.0, 1.0], broken_run=1))
    assert {p.key: p for p in broken.points}[ks[2]].verdict == "BROKEN"
    single = compare(str(tmp_path / "base"), str(tmp_path / "one" / "run-01"))  # that slow run alone
    assert {p.key: p for p in single.points}[ks[0]].verdict == "SLOW"


def _trials_of_m(rng, sigma: float, slowdown: float, k: int, m: int, trials: int, rules: Rules) -> float:
    """Fraction of SLOW verdicts for one point: a baseline of k runs against the median run of m."""
    from attnbench.gate.sides import RunSide, combine_runs

    key = keys(1)[0]
    slow = 0
    for _ in range(trials):
        meds = run_medians(rng, [1.0], sigma, k + m)[:, 0]
        brows = [row(key, lognormal(rng, x, 0.002, 9)) for x in meds[:k]]
        slowed = [row(key, lognormal(rng, x * (1 + slowdown), 0.002, 9)) for x in meds[k:]]
        sides = [RunSide(f"c{i}", Path("."), {}, {key: r}, 0) for i, r in enumerate(slowed)]
        crow = combine_runs("c", Path("."), sides).rows[key]
        slow += judge_point(key, brows, crow, rules).verdict == "SLOW"
    return slow / trials


def test_pooled_spread_of_three_current_runs_has_the_claimed_false_alarm_and_catch_rates():
    """The current side is three runs whose spread is pooled with the baseline's (K + M - 2 = 6
    degrees of freedom): on runs with known between-run noise the observed SLOW rates match
    gate_stats.catch_probability(..., m=3), with no slowdown (multiplier 2.5 so that false alarms are
    frequent enough to count) and with a planted 3% at sigma 0.6%."""
    rng = np.random.default_rng(41)
    n = 1500
    loose = Rules(0.05, 0.05, multiplier=2.5, floor=0.0, cap=10.0)
    claimed = gate_stats.catch_probability(0.0, 0.01, 5, multiplier=2.5, floor=0.0, m=3)
    assert 0.005 < claimed < 0.05  # the median of three is steadier than one run: below P(T_4 > 2.5)
    assert _within(_trials_of_m(rng, 0.01, 0.0, 5, 3, n, loose), claimed, n)
    claimed = gate_stats.catch_probability(0.03, 0.006, 5, m=3)
    assert _within(_trials_of_m(rng, 0.006, 0.03, 5, 3, 400, RULES), claimed, 400)
    assert gate_stats.median_variance(1) == 1.0
    assert gate_stats.median_variance(3) == pytest.approx(0.4487, abs=2e-3)  # the order-statistic value


def test_a_baseline_whose_runs_happen_to_agree_does_not_gate_runs_that_do_not(tmp_path):
    """Five baseline runs within 0.2% and three current runs 2-4% apart (a point whose true spread
    between processes is 2%, as triton-flash causal prefill on an H200): the pooled spread keeps it
    from a false SLOW; the same three runs agreeing at +6% are SLOW."""
    ks = keys(1)
    rng = np.random.default_rng(43)
    base = np.array([[1.000], [1.002], [0.998], [1.001], [0.999]])
    write_runs(tmp_path / "base", runs_rows(rng, ks, base, 0.002, 30))
    write_runs(tmp_path / "disagree", runs_rows(rng, ks, np.array([[1.0], [1.036], [1.04]]), 0.002, 30))
    write_runs(tmp_path / "agree", runs_rows(rng, ks, np.array([[1.058], [1.06], [1.061]]), 0.002, 30))
    disagree = compare(str(tmp_path / "base"), str(tmp_path / "disagree")).points[0]
    assert disagree.verdict in ("SAME", "NOISY") and disagree.ratio > 1.03
    assert compare(str(tmp_path / "base"), str(tmp_path / "agree")).points[0].verdict == "SLOW"


def test_a_compute_bound_point_at_another_power_state_is_not_gated(tmp_path):
    """Baseline runs settled at 1965 MHz, current runs at 1830 MHz and 4% slower (a power cap's two
    states, as sdpa-cudnn prefill on an H200): NOISY with the clocks named, not SLOW; the same +6%
    at the baseline's clock is SLOW."""
    ks = keys(1)
    rng = np.random.default_rng(47)

    def runs(name: str, medians: list[float], clock: float) -> str:
        rows = runs_rows(rng, ks, np.array([[m] for m in medians]), 0.002, 30, sm_clock_mhz_settled=clock)
        write_runs(tmp_path / name, rows)
        return str(tmp_path / name)

    base = runs("base", [1.000, 1.002, 0.998, 1.001, 0.999], 1965.0)
    other = compare(base, runs("other", [1.04, 1.041, 1.039], 1830.0)).points[0]
    assert other.verdict == "NOISY" and "1830 MHz now, 1965 MHz" in other.note
    same_state = compare(base, runs("same", [1.06, 1.061, 1.059], 1950.0)).points[0]
    assert same_state.verdict == "SLOW"


def test_a_current_run_on_another_card_is_warned_about(tmp_path):
    rng = np.random.default_rng(32)
    ks = keys(2)
    write_runs(tmp_path / "base", runs_rows(rng, ks, run_medians(rng, [0.3, 0.5], 0.002, 5), 0.005, 30),
               gpu_uuid="card-a")
    def one_run() -> list[dict]:
        return runs_rows(rng, ks, run_medians(rng, [0.3, 0.5], 0.002, 1), 0.005, 30)[0]

    same = write_run(tmp_path / "same", one_run(), gpu_uuid="card-a")
    other = write_run(tmp_path / "other", one_run(), gpu_uuid="card-b")
    assert not any("another card" in w for w in compare(str(tmp_path / "base"), str(same)).warnings)
    assert any("another card (card-b)" in w for w in compare(str(tmp_path / "base"), str(other)).warnings)
