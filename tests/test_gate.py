"""The regression gate on synthetic runs: verdicts, exit codes and outputs (CPU only)."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.gate import stats as gate_stats
from attnbench.gate.runs import GateError, compare
from tests.synthetic_runs import keys, lognormal, noisy_pair, row, write_run

runner = CliRunner()


def gate_cli(*args: str):
    return runner.invoke(app, ["gate", *args])


# ---- verdicts --------------------------------------------------------------------------------
def test_identical_sample_sets_are_same_everywhere(tmp_path):
    rng = np.random.default_rng(1)
    rows = [row(k, lognormal(rng, 0.5, 0.03, 40)) for k in keys(12)]
    b = write_run(tmp_path / "b", rows)
    c = write_run(tmp_path / "c", rows)
    res = compare(str(b), str(c))
    assert [p.verdict for p in res.points] == ["SAME"] * 12
    assert all(p.ratio == pytest.approx(1.0) and p.low < 1.0 < p.high for p in res.points)
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 0, out.output
    assert "PASS" in out.stdout


def test_baseline_twenty_percent_faster_gives_slow_on_exactly_those_points(tmp_path):
    slow = {1, 4, 7}
    # the baseline 20% faster means the current takes 1/0.8 = 1.25x as long
    b, c, ks = noisy_pair(tmp_path, 10, cv=0.03, n_samples=40, current_factor=dict.fromkeys(slow, 1 / 0.8))
    res = compare(str(b), str(c))
    flagged = {p.key for p in res.points if p.verdict == "SLOW"}
    assert flagged == {ks[i] for i in slow}
    assert {p.verdict for p in res.points if p.key not in flagged} == {"SAME"}
    for p in res.points:
        if p.key in flagged:
            assert p.ratio == pytest.approx(1.25, rel=0.03) and p.low > 1.05
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 1, out.output
    assert "FAIL" in out.stdout and "SLOW" in out.stdout


def test_faster_current_is_fast_and_passes(tmp_path):
    b, c, ks = noisy_pair(tmp_path, 6, cv=0.03, n_samples=40, current_factor={2: 0.8})
    res = compare(str(b), str(c))
    assert [p.verdict for p in res.points if p.key == ks[2]] == ["FAST"]
    assert res.count("SLOW") == 0 and res.exit_code == 0


def test_noisy_samples_with_small_shift_are_same(tmp_path):
    # 10% CV noise, every point 2% slower: below the 5% threshold, so never SLOW
    b, c, _ = noisy_pair(tmp_path, 30, cv=0.10, n_samples=50, current_factor=dict.fromkeys(range(30), 1.02))
    res = compare(str(b), str(c))
    assert {p.verdict for p in res.points} == {"SAME"}
    assert gate_cli("--baseline", str(b), "--current", str(c)).exit_code == 0


def test_shift_between_threshold_and_noise_needs_both(tmp_path):
    # 3% slower with tiny noise: significant, but under a 5% threshold (SAME); over a 1% one (SLOW)
    b, c, _ = noisy_pair(tmp_path, 4, cv=0.005, n_samples=60, current_factor=dict.fromkeys(range(4), 1.03))
    assert {p.verdict for p in compare(str(b), str(c), threshold=0.05).points} == {"SAME"}
    assert {p.verdict for p in compare(str(b), str(c), threshold=0.01).points} == {"SLOW"}
    # a 30% shift drowned in 60% CV noise with few samples: not provably above the threshold
    shift = dict.fromkeys(range(4), 1.3)
    b2, c2, _ = noisy_pair(tmp_path / "n", 4, cv=0.6, n_samples=8, current_factor=shift)
    assert "SLOW" not in {p.verdict for p in compare(str(b2), str(c2)).points}


def test_false_alarm_rate_over_200_pure_noise_points(tmp_path):
    """Pure noise (5% CV plus 5% of samples hit by +50% hiccups): no SLOW at threshold 0.05, and none
    even at threshold 0, where only the Bonferroni correction stands between noise and a verdict."""
    rng = np.random.default_rng(7)
    ks = [(f"case-{i:03d}", "cuda-paged") for i in range(200)]

    def samples(median: float) -> list[float]:
        s = np.array(lognormal(rng, median, 0.05, 30))
        hit = rng.random(s.size) < 0.05
        s[hit] *= 1.5
        return s.tolist()

    medians = rng.uniform(0.05, 5.0, len(ks))
    b = write_run(tmp_path / "b", [row(k, samples(m)) for k, m in zip(ks, medians, strict=True)])
    c = write_run(tmp_path / "c", [row(k, samples(m)) for k, m in zip(ks, medians, strict=True)])
    res = compare(str(b), str(c), threshold=0.05)
    assert res.count("SLOW") == 0 and res.count("UNKNOWN") == 0
    assert res.point_alpha == pytest.approx(0.05 / 200)
    strict = compare(str(b), str(c), threshold=0.0)
    assert strict.count("SLOW") + strict.count("FAST") == 0
    # without the correction (95% per point) the same noise does produce verdicts at threshold 0
    uncorrected = 0
    for k in ks:
        iv = gate_stats.ratio_interval(
            gate_stats.clean_samples(res.baseline.runs[0].rows[k]["samples_ms"]),
            gate_stats.clean_samples(res.current.rows[k]["samples_ms"]),
            alpha=0.05,
        )
        uncorrected += iv.low > 1.0 or iv.high < 1.0
    assert uncorrected >= 3


def test_missing_samples_are_unknown_and_say_which_side(tmp_path):
    rng = np.random.default_rng(2)
    ks = keys(3)
    b = write_run(
        tmp_path / "b",
        [row(ks[0], lognormal(rng, 1, 0.02, 30)), row(ks[1], None), row(ks[2], [1.0, 1.1])],
    )
    c = write_run(
        tmp_path / "c",
        [row(ks[0], None), row(ks[1], lognormal(rng, 1, 0.02, 30)), row(ks[2], [1.0, 1.05])],
    )
    res = compare(str(b), str(c))
    by_key = {p.key: p for p in res.points}
    # ok in the baseline and failed now is BROKEN (issue 15), not UNKNOWN
    assert by_key[ks[0]].verdict == "BROKEN"
    assert by_key[ks[0]].note == "ok in the baseline; failed now: synthetic failure"
    assert by_key[ks[1]].verdict == by_key[ks[2]].verdict == "UNKNOWN"
    assert "baseline lacks samples" in by_key[ks[1]].note and "current" not in by_key[ks[1]].note
    assert "too few samples" in by_key[ks[2]].note  # 2 vs 2 samples cannot bound a 95% interval
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 1 and "BROKEN" in out.stdout
    # without the broken point, UNKNOWN is reported, not failed
    c2 = write_run(tmp_path / "c2", [row(ks[1], lognormal(rng, 1, 0.02, 30)), row(ks[2], [1.0, 1.05])])
    b2 = write_run(tmp_path / "b2", [row(ks[1], None), row(ks[2], [1.0, 1.1]), row(ks[0], None)])
    assert gate_cli("--baseline", str(b2), "--current", str(c2)).exit_code == 2  # 0 points compared
    b3 = write_run(tmp_path / "b3", [row(ks[1], None), row(ks[2], lognormal(rng, 1, 0.02, 30))])
    c3 = write_run(tmp_path / "c3", [row(k, lognormal(rng, 1, 0.02, 30)) for k in ks[1:]])
    assert gate_cli("--baseline", str(b3), "--current", str(c3)).exit_code == 0


def test_new_and_vanished_points_are_listed(tmp_path):
    rng = np.random.default_rng(3)
    ks = keys(4)
    b = write_run(tmp_path / "b", [row(k, lognormal(rng, 1, 0.02, 30)) for k in ks[:3]])
    c = write_run(tmp_path / "c", [row(k, lognormal(rng, 1, 0.02, 30)) for k in ks[1:]])
    res = compare(str(b), str(c))
    assert res.new == [ks[3]] and res.vanished == [ks[0]]
    assert {p.key: p.verdict for p in res.points} == {ks[0]: "VANISHED", ks[1]: "SAME", ks[2]: "SAME"}
    summary = tmp_path / "summary.md"
    out = gate_cli("--baseline", str(b), "--current", str(c), "--summary", str(summary))
    assert out.exit_code == 1  # a point ok in the baseline and missing now fails the gate (issue 15)
    md = summary.read_text()
    assert "New points (current only)" in md and ks[3][0] in md.split("New points")[1]
    (vanished_row,) = [line for line in md.splitlines() if "**VANISHED**" in line]
    assert ks[0][0] in vanished_row and "not in the current run" in vanished_row


def test_repeated_point_uses_the_last_row(tmp_path):
    rng = np.random.default_rng(4)
    k = keys(1)[0]
    good = lognormal(rng, 1.0, 0.02, 30)
    b = write_run(tmp_path / "b", [row(k, good)])
    c = write_run(tmp_path / "c", [row(k, [x * 2 for x in good]), row(k, good)])
    res = compare(str(b), str(c))
    assert res.points[0].verdict == "SAME"
    assert any("repeated" in w for w in res.warnings)


# ---- comparability and exit 2 ----------------------------------------------------------------
def test_gpu_model_mismatch_exits_2_and_force_overrides(tmp_path):
    b, c, _ = noisy_pair(tmp_path, 4, cv=0.02, n_samples=30, current_factor={0: 1.3})
    manifest = json.loads((c / "manifest.json").read_text())
    manifest["gpu_name"] = "NVIDIA A100-SXM4-80GB"
    (c / "manifest.json").write_text(json.dumps(manifest))
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 2
    assert "GPU model differs" in out.stderr and "A100" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.output
    forced = gate_cli("--baseline", str(b), "--current", str(c), "--force")
    assert forced.exit_code == 1  # gated anyway: point 0 is 30% slower
    assert "FORCED" in forced.stdout


def test_config_hash_and_dtype_mismatches_exit_2(tmp_path):
    rng = np.random.default_rng(5)
    ks = keys(2)
    b = write_run(tmp_path / "b", [row(k, lognormal(rng, 1, 0.02, 20)) for k in ks])
    c = write_run(tmp_path / "c", [row(k, lognormal(rng, 1, 0.02, 20)) for k in ks], config_hash="beef")
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 2 and "config hash differs" in out.stderr
    d = write_run(tmp_path / "d", [row(k, lognormal(rng, 1, 0.02, 20), dtype="fp16") for k in ks])
    out = gate_cli("--baseline", str(b), "--current", str(d))
    assert out.exit_code == 2 and "dtype sets differ" in out.stderr
    with pytest.raises(GateError, match="dtype sets differ"):
        compare(str(b), str(d))
    assert compare(str(b), str(d), force=True).forced


def test_missing_run_directory_or_file_exits_2(tmp_path):
    b, _, _ = noisy_pair(tmp_path, 2, cv=0.02, n_samples=20)
    out = gate_cli("--baseline", str(b), "--current", str(tmp_path / "nope"), "--force")
    assert out.exit_code == 2
    assert "nope" in out.stderr and "neither a run directory nor a baseline" in out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "manifest.json").write_text("{}")
    out = gate_cli("--baseline", str(b), "--current", str(empty))
    assert out.exit_code == 2 and "no results.jsonl" in out.stderr
    assert "Traceback" not in out.output


def test_bad_threshold_exits_2(tmp_path):
    b, c, _ = noisy_pair(tmp_path, 2, cv=0.02, n_samples=20)
    out = gate_cli("--baseline", str(b), "--current", str(c), "--threshold", "-0.1")
    assert out.exit_code == 2 and "--threshold" in out.stderr


def test_not_comparable_still_writes_the_ci_outputs(tmp_path, monkeypatch):
    b, c, _ = noisy_pair(tmp_path, 2, cv=0.02, n_samples=20)
    (c / "results.jsonl").unlink()
    step = tmp_path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    junit = tmp_path / "junit.xml"
    out = gate_cli("--baseline", str(b), "--current", str(c), "--junit", str(junit))
    assert out.exit_code == 2
    assert "NOT COMPARED" in step.read_text()
    assert ET.parse(junit).getroot().find("testsuite/testcase/error") is not None


# ---- outputs ---------------------------------------------------------------------------------
def test_junit_xml_has_one_testcase_per_point(tmp_path):
    b, c, ks = noisy_pair(tmp_path, 8, cv=0.03, n_samples=40, current_factor={3: 1.25})
    cur_rows = [json.loads(x) for x in (c / "results.jsonl").read_text().splitlines()]
    cur_rows[5] = row(ks[5], None)  # UNKNOWN
    write_run(c, cur_rows)
    junit = tmp_path / "out" / "gate.xml"
    out = gate_cli("--baseline", str(b), "--current", str(c), "--junit", str(junit))
    assert out.exit_code == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 8 and suite.get("tests") == "8"
    assert {(tc.get("name"), tc.get("classname").rsplit(".", 1)[-1]) for tc in cases} == set(ks)
    failures = {tc.get("name"): tc.find("failure") for tc in cases if tc.find("failure") is not None}
    assert set(failures) == {ks[3][0], ks[5][0]}
    assert suite.get("failures") == "2" and suite.get("skipped") == "0"
    slow = failures[ks[3][0]]
    assert slow.get("type") == "SLOW" and slow.get("message").startswith("SLOW: baseline")
    assert "ratio 1.2" in slow.get("message") and "interval [" in slow.get("message")
    broken = failures[ks[5][0]]
    assert broken.get("type") == "BROKEN" and "failed now: synthetic failure" in broken.get("message")


def test_markdown_summary_has_the_table_and_goes_to_the_step_summary(tmp_path, monkeypatch):
    b, c, ks = noisy_pair(tmp_path, 5, cv=0.03, n_samples=40, current_factor={0: 1.25})
    step = tmp_path / "step.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    summary = tmp_path / "summary.md"
    out = gate_cli("--baseline", str(b), "--current", str(c), "--summary", str(summary))
    assert out.exit_code == 1
    md = summary.read_text()
    lines = md.splitlines()
    columns = "point | backend | baseline ms | current ms | ratio | tolerance | spread | runs | run interval"
    header = lines.index(f"| {columns} | verdict |")
    table = list(itertools.takewhile(lambda s: s.startswith("|"), lines[header:]))
    assert len(table) == 2 + 5
    assert "**SLOW**" in table[2] and ks[0][0] in table[2]  # SLOW rows first
    assert "Bonferroni" in md and "1.050" in md and "0.952" in md
    assert step.read_text() == "earlier step\n" + md + "\n"


def test_rich_table_lists_every_point(tmp_path):
    b, c, ks = noisy_pair(tmp_path, 3, cv=0.03, n_samples=30)
    out = runner.invoke(app, ["gate", "--baseline", str(b), "--current", str(c)], env={"COLUMNS": "250"})
    assert out.exit_code == 0
    for case_id, backend in ks:
        assert case_id in out.stdout and backend in out.stdout
    assert "baseline ms" in out.stdout and "interval" in out.stdout and "tolerance" in out.stdout


# ---- a real run ------------------------------------------------------------------------------
REAL_CONFIG = """
name: gate-e2e
timing: {warmup_ms: 1, min_samples: 8, max_samples: 8, max_time_s: 10}
workloads:
  - name: p
    phase: prefill
    batch: [2]
    lengths: ["fixed:16"]
    q_heads: [2]
    kv_heads: [1]
    head_dim: [16]
    dtype: [fp32]
    causal: [true]
"""


def test_gate_reads_a_run_the_sweep_wrote(tmp_path):
    """The row and manifest format the runner writes is what the gate reads: a run against itself is
    SAME on every measured point and UNKNOWN (with the skip reason) on the skipped ones."""
    from attnbench.config.sweep_config import parse_config
    from attnbench.runner.plan import build_plan
    from attnbench.runner.results import RunDir
    from attnbench.runner.sweep import run_sweep
    from attnbench.sysinfo import environment

    cfg = parse_config(REAL_CONFIG, "gate-e2e.yaml")
    plan = build_plan(cfg, "cpu", ["naive", "sdpa-math", "sdpa-flash"])
    outcome = run_sweep(cfg, plan, RunDir(tmp_path / "run"), "cpu", environment("cpu"), None, isolate=False)
    run = outcome.run_dir
    res = compare(str(run.path), str(run.path))
    verdicts = {p.backend: p.verdict for p in res.points}
    assert verdicts == {"naive": "SAME", "sdpa-math": "SAME", "sdpa-flash": "UNKNOWN"}
    flash = next(p for p in res.points if p.backend == "sdpa-flash")
    assert "status skipped" in flash.note
    assert gate_cli("--baseline", str(run.path), "--current", str(run.path)).exit_code == 0


def test_points_skipped_in_both_runs_say_so_once(tmp_path):
    k, other = keys(2)
    skipped = row(k, None, status="skipped", reason="unavailable: runs on cuda only, not cpu")
    measured = row(other, lognormal(np.random.default_rng(8), 1.0, 0.02, 30))
    b = write_run(tmp_path / "b", [skipped, measured])
    c = write_run(tmp_path / "c", [skipped, measured])
    p = next(p for p in compare(str(b), str(c)).points if p.key == k)
    assert p.verdict == "UNKNOWN"
    assert p.note == "no samples in either run (status skipped: unavailable: runs on cuda only, not cpu)"


# ---- issue 17 item 5: nothing compared, everything failed ------------------------------------
def test_a_baseline_without_samples_is_refused_in_one_line(tmp_path):
    ks = keys(3)
    b = write_run(tmp_path / "b", [row(k, None, status="skipped", reason="no GPU") for k in ks])
    c = write_run(tmp_path / "c", [row(k, lognormal(np.random.default_rng(1), 1, 0.02, 30)) for k in ks])
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 2
    assert "has no point with samples" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.output


def test_every_current_point_failed_fails_with_one_line(tmp_path):
    rng = np.random.default_rng(13)
    ks = keys(4)
    b = write_run(tmp_path / "b", [row(ks[0], lognormal(rng, 1, 0.02, 30))] + [row(k, None) for k in ks[1:]])
    c = write_run(tmp_path / "c", [row(k, None, status="incorrect", reason="wrong") for k in ks])
    res = compare(str(b), str(c))
    assert res.count("BROKEN") == 1 and res.problem.startswith("every current point is failed or incorrect")
    out = gate_cli("--baseline", str(b), "--current", str(c))
    assert out.exit_code == 1 and "every current point is failed or incorrect (4 points)" in out.stderr
    # even when none was ok in the baseline (no BROKEN verdict), the run as a whole fails
    b2 = write_run(tmp_path / "b2", [row(ks[0], None), row(keys(5)[4], lognormal(rng, 1, 0.02, 30))])
    c2 = write_run(tmp_path / "c2", [row(ks[0], None, status="failed", reason="boom")])
    res2 = compare(str(b2), str(c2), force=True)
    assert res2.count("BROKEN") == 0 and res2.exit_code == 1
    junit = tmp_path / "j.xml"
    out = gate_cli("--baseline", str(b2), "--current", str(c2), "--force", "--junit", str(junit))
    assert out.exit_code == 1
    assert ET.parse(junit).getroot().find("testsuite/testcase/error").get("type") == "RUN"


def test_skipped_now_after_ok_in_the_baseline_is_vanished(tmp_path):
    rng = np.random.default_rng(14)
    ks = keys(2)
    b = write_run(tmp_path / "b", [row(k, lognormal(rng, 1, 0.02, 30)) for k in ks])
    c = write_run(
        tmp_path / "c",
        [row(ks[0], lognormal(rng, 1, 0.02, 30)), row(ks[1], None, status="skipped", reason="unavailable: x")],  # noqa: E501
    )
    by_key = {p.key: p for p in compare(str(b), str(c)).points}
    assert by_key[ks[1]].verdict == "VANISHED" and "skipped now: unavailable: x" in by_key[ks[1]].note
    assert gate_cli("--baseline", str(b), "--current", str(c)).exit_code == 1


def test_a_changed_kernel_variant_is_noted(tmp_path):
    rng = np.random.default_rng(9)
    k = keys(1)[0]
    b = write_run(tmp_path / "b", [row(k, lognormal(rng, 1.0, 0.02, 40), variant="v2")])
    c = write_run(tmp_path / "c", [row(k, lognormal(rng, 3.0, 0.02, 40), variant="v1")])
    (p,) = compare(str(b), str(c)).points
    assert p.verdict == "SLOW" and p.note == "variant v2 -> v1"
