"""attnbench report: tables, verdicts, figures and rendering against SYNTHETIC fixture runs.

Expectations are computed here from the fixture's results.jsonl with plain Python, independently of
the report's pandas code, and compared with the report's table records.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))

import make_fixture_run as fx  # noqa: E402

from attnbench.report.build import write_report  # noqa: E402
from attnbench.report.fit import loglog_fit  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def h100(tmp_path_factory):
    run = fx.make_h100_like(tmp_path_factory.mktemp("runs") / "h100")
    report, written = write_report([run], plot=True)
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    return run, report, written, rows


@pytest.fixture(scope="module")
def cpu(tmp_path_factory):
    run = fx.make_cpu_only(tmp_path_factory.mktemp("runs") / "cpu")
    report, written = write_report([run], plot=True)
    return run, report, written


def records(report, key):
    return report.table(key).records


def claim(report, key):
    return next(r for r in records(report, "claims") if r["key"] == key)


def ok_rows(rows):
    return [r for r in rows if r["status"] == "ok"]


def problem(r):
    return (r["phase"], tuple(r["q_lens"]), tuple(r["kv_lens"]), r["num_q_heads"], r["num_kv_heads"],
            r["head_dim"], r["dtype"], r["causal"], r["prefix_len"])


def side(r):
    """naive | flash | paged as the report defines them (kind), by hand."""
    if r["family"] == "naive":
        return "naive"
    return "paged" if r["block_size"] is not None else "flash"


def best_by(rows, key, layout_pref=True):
    """min latency per key(row), shuffled blocks preferred over contiguous ones."""
    out = {}
    for r in rows:
        rank = (r["block_size"] is not None and r["kv_layout"] != "shuffled", r["latency_ms_p50"])
        k = key(r)
        if k not in out or rank < out[k][0]:
            out[k] = (rank, r)
    return {k: v[1] for k, v in out.items()}


# ---- tables -----------------------------------------------------------------------------------
def test_writes_every_output(h100):
    run, report, written, _ = h100
    names = {p.name for p in written}
    assert {"report.md", "report.html"} <= names
    assert all(p.parent.parent == run / "report" or p.parent == run / "report" for p in written)
    md = (run / "report" / "report.md").read_text()
    for table in report.tables:
        assert f"## {table.title}" in md


def test_quick_summary_matches_fixture_rows(h100):
    _, report, _, rows = h100
    ok = ok_rows(rows)
    prefill = defaultdict(set)
    for r in ok:
        if r["phase"] == "prefill":
            prefill[problem(r)].add((r["backend"], r["block_size"] is not None))
    rep = max(prefill, key=lambda p: (len(prefill[p]), sum(p[1]) ** 2 * p[3]))
    recs = {r["backend"]: r for r in records(report, "quick_summary")}
    expected = {r["backend"]: r["latency_ms_p50"] for r in ok
                if problem(r) == rep and r["block_size"] is None and r["family"] != "paged"}
    assert expected, "the fixture has a representative prefill case"
    for backend, ms in expected.items():
        assert recs[backend]["prefill_ms"] == pytest.approx(ms)
    labels = {r["backend"] for r in rows} | {f"{r['backend']} [paged]" for r in rows
                                             if r["block_size"] is not None and r["family"] != "paged"}
    assert set(recs) == labels
    assert "not measured (skipped: decode only" in str(report.table("quick_summary").rows)


def test_complexity_fits_the_latency_model(h100):
    _, report, _, rows = h100
    recs = {(r["backend"], r["phase"]): r for r in records(report, "complexity")}
    naive = sorted((r["max_q"], r["latency_ms_p50"], r["working_mem_bytes"]) for r in ok_rows(rows)
                   if r["workload"] == "prefill-scaling" and r["backend"] == "naive")
    upper = naive[-3:]  # 5 lengths: the upper half is the largest 3
    b, _ = _polyfit([n for n, _, _ in upper], [t for _, t, _ in upper])
    rec = recs[("naive", "prefill")]
    assert rec["lengths"] == [n for n, _, _ in naive]
    assert rec["time_fit_upper"].exponent == pytest.approx(b, abs=1e-9)
    assert 1.85 < b < 2.1  # the model is O(N^2) once launch cost is small
    assert rec["memory_fit"].exponent == pytest.approx(2.0, abs=0.01)  # 6 bytes per score
    assert recs[("flash-attn", "prefill")]["memory_fit"].exponent == pytest.approx(1.0, abs=0.01)
    assert 0.85 < recs[("cuda-paged", "decode")]["time_fit_upper"].exponent < 1.1
    assert recs[("cuda-paged", "decode")]["memory_note"].startswith("1 zero-byte")  # v1 keeps nothing
    assert rec["time_vs_claim"] == "matches N^2"


def _polyfit(ns, ys):
    lx, ly = [math.log(n) for n in ns], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    b = sum((x - mx) * (y - my) for x, y in zip(lx, ly, strict=True)) / sum((x - mx) ** 2 for x in lx)
    return b, my - b * mx


def test_loglog_fit_needs_three_lengths():
    assert loglog_fit([1, 2], [1, 4]) is None
    fit = loglog_fit([1, 2, 4, 8], [3, 12, 48, 192])
    assert fit.exponent == pytest.approx(2.0) and fit.r2 == pytest.approx(1.0)
    assert loglog_fit([1, 2, 4], [5, 5, 5]).exponent == 0.0


def test_bandwidth_peak_and_share(h100):
    _, report, _, rows = h100
    rec = next(r for r in records(report, "bandwidth") if r["backend"] == "cuda-paged")
    dec = [r["hbm_gbps"] for r in ok_rows(rows)
           if r["backend"] == "cuda-paged" and r["phase"] == "decode" and not r["prefix_len"]]
    assert rec["points"] == len(dec)
    assert rec["peak_gbps"] == pytest.approx(max(dec))
    assert rec["peak_util"] == pytest.approx(max(dec) / fx.COPY_GBPS)
    assert rec["median_gbps"] == pytest.approx(statistics.median(dec))
    naive = next(r for r in records(report, "bandwidth") if r["backend"] == "naive")
    assert naive["dram_read_ratio"] > 5  # the N x N scores go through DRAM


def test_decode_bandwidth_dram_column_prefers_decode_profiles(tmp_path):
    """A backend profiled on prefill and decode: the decode table quotes its decode points only."""
    run = fx.make_h100_like(tmp_path / "run")
    rows = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    decode = [r for r in ok_rows(rows) if r["backend"] == "naive" and r["phase"] == "decode"
              and not r["prefix_len"]][:2]
    for r, factor in zip(decode, (5.0, 7.0), strict=True):
        r["dram_read_bytes"], r["dram_write_bytes"] = factor * r["min_hbm_bytes"], r["min_hbm_bytes"]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report, _ = write_report([run], plot=False)
    naive = next(r for r in records(report, "bandwidth") if r["backend"] == "naive")
    assert 4 < naive["dram_read_ratio"] < 8  # not pulled up by the prefill profiles (~100x)
    cell = next(row for row in report.table("bandwidth").rows if row[0] == "naive")[-1]
    # (against the minimum read bytes, a little below min_hbm_bytes, which counts the output too)
    assert re.search(r"median of 2 decode points, 5\.0\dx–7\.0\dx", cell) and "prefill" not in cell, cell


def test_when_to_use_winner_per_class(h100):
    _, report, _, rows = h100
    single_decode = [r for r in ok_rows(rows) if r["phase"] == "decode" and r["batch"] == 1]
    best = best_by(single_decode, lambda r: (problem(r), _label(r)))
    problems = {p for p, _ in best}
    per_label = defaultdict(dict)
    for (p, label), r in best.items():
        per_label[label][p] = r["latency_ms_p50"]
    case_best = {p: min(v[p] for v in per_label.values() if p in v) for p in problems}
    full = [lab for lab, v in per_label.items() if len(v) == len(problems)]
    slow = {lab: math.exp(statistics.fmean(math.log(per_label[lab][p] / case_best[p]) for p in problems))
            for lab in full}
    expected = min(slow, key=slow.get)
    rec = next(r for r in records(report, "when_to_use") if r["class"] == "single" and r["phase"] == "decode")
    assert rec["winner"] == expected == "flash-attn"
    assert rec["cases"] == len(problems)
    assert rec["margin"] >= 1.0
    prefix = next(r for r in records(report, "when_to_use") if r["class"] == "prefix")
    assert prefix["paged_over_flash"] < 1 and prefix["agrees"] is True
    long = [r for r in records(report, "when_to_use") if r["class"] == "long"]
    assert {r["phase"] for r in long} == {"prefill", "decode"}


def _label(r):
    if r["block_size"] is not None and r["family"] != "paged":
        return r["backend"] + " [paged]"
    return r["backend"]


def test_claim_flash_vs_standard(h100):
    _, report, _, rows = h100
    pre = [r for r in ok_rows(rows) if r["phase"] == "prefill"]
    naive = best_by([r for r in pre if side(r) == "naive"], problem)
    flash = best_by([r for r in pre if side(r) == "flash"], problem)
    speed = [naive[p]["latency_ms_p50"] / flash[p]["latency_ms_p50"] for p in naive if p in flash]
    med = statistics.median(speed)
    c = claim(report, "flash_2_4x")
    assert c["values"]["median"] == pytest.approx(med)
    assert c["values"]["n"] == len(speed)
    assert c["verdict"] == ("holds" if 2 <= med <= 4 else "does not hold")


def test_claim_block_table_indirection(h100):
    _, report, _, rows = h100
    paged = [r for r in ok_rows(rows) if side(r) == "paged"]
    by = defaultdict(dict)
    for r in paged:
        by[(problem(r), r["backend"], r["block_size"])][r["kv_layout"]] = r["latency_ms_p50"]
    over = [v["shuffled"] / v["contiguous"] - 1 for v in by.values() if len(v) == 2]
    c = claim(report, "indirection_layout")
    assert c["values"]["median"] == pytest.approx(statistics.median(over))
    assert c["verdict"] == ("holds" if statistics.median(over) <= 0.01 else "does not hold")
    # Same implementation on both KV forms: flash-attn's two paths, flex-paged vs flex.
    ok = ok_rows(rows)
    contiguous = {(problem(r), r["backend"]): r["latency_ms_p50"] for r in ok if r["block_size"] is None}
    best = best_by([r for r in paged if r["backend"] in ("flash-attn", "flex-paged")],
                   lambda r: (problem(r), r["backend"]))
    pairs = [r["latency_ms_p50"] / contiguous[(p, {"flex-paged": "flex"}.get(b, b))] - 1
             for (p, b), r in best.items() if (p, {"flex-paged": "flex"}.get(b, b)) in contiguous]
    k = claim(report, "indirection_kernel")
    assert k["values"]["n"] == len(pairs)
    assert k["values"]["median"] == pytest.approx(statistics.median(pairs))
    assert k["verdict"] == "does not hold"  # the model charges flash-attn 3% and flex 5% for paging


def test_claim_hbm_traffic_from_dram_counters(h100):
    _, report, _, rows = h100
    prof = [r for r in ok_rows(rows) if "dram_read_bytes" in r]
    least = defaultdict(dict)
    for r in prof:
        total = r["dram_read_bytes"] + r["dram_write_bytes"]
        k = side(r)
        least[problem(r)][k] = min(total, least[problem(r)].get(k, math.inf))
    ratios = [v["flash"] / v["naive"] for v in least.values() if {"flash", "naive"} <= set(v)]
    c = claim(report, "flash_halves_hbm")
    assert c["values"]["median"] == pytest.approx(statistics.median(ratios))
    assert c["verdict"] == "does not hold"  # far more than halved in the model
    assert "larger cut than claimed" in c["numbers"]


def test_claims_memory_fit_fragmentation_prefix(h100):
    _, report, _, rows = h100
    assert claim(report, "memory_n2_vs_n")["verdict"] == "holds"
    fits = claim(report, "paged_fits_more")
    assert fits["verdict"] == "holds" and fits["values"]["source"] == "fragmentation"
    sharegpt_max = next(x for x in fits["values"]["ratios"]
                        if x["dataset"] == "sharegpt" and x["policy"] == "orca-max")
    assert sharegpt_max["ratio"] == pytest.approx(30.2 / 7.1)
    assert claim(report, "paged_less_waste")["verdict"] == "holds"
    prefix = [r for r in ok_rows(rows) if r["prefix_len"] and r["block_size"] is not None]
    saved = []
    for r in prefix:
        token = 2 * r["num_kv_heads"] * r["head_dim"] * 2
        private = sum(-(-k // r["block_size"]) for k in r["kv_lens"]) * r["block_size"] * token
        saved.append(1 - r["kv_bytes_allocated"] / private)
    c = claim(report, "paged_prefix")
    assert c["values"]["saved"] == pytest.approx(statistics.median(saved))
    assert c["verdict"] == "holds"
    assert claim(report, "flash_single_latency")["verdict"] == "holds"
    # The H100-like fixture measures every claim but the pattern ones (it has no patterned rows;
    # tests/test_claims_patterns.py judges those from rows that carry patterns).
    pattern_claims = {"paged_any_pattern", "paged_no_recompile_window"}
    verdicts = {r["verdict"] for r in records(report, "claims") if r["key"] not in pattern_claims}
    assert verdicts <= {"holds", "does not hold"}


def test_fragmentation_table(h100):
    _, report, _, _ = h100
    recs = records(report, "fragmentation")
    assert len(recs) == len(fx.FRAGMENTATION["rows"])
    paged = next(r for r in recs if r["dataset"] == "sharegpt" and r["policy"] == "paged")
    assert paged["token_states"] == pytest.approx(0.95) and paged["block_size"] == 16
    assert "95.0%" in str(report.table("fragmentation").rows)


def test_summary_has_every_document_row(h100):
    _, report, _, _ = h100
    aspects = [r["aspect"] for r in records(report, "summary")]
    assert aspects[:3] == ["Abstraction level", "Primary benefit", "Memory I/O"]
    assert len(aspects) == 12
    latency = next(r for r in records(report, "summary") if r["aspect"] == "Latency (1 seq)")
    assert "flash faster" in latency["comparison"]


def test_not_run_table_counts(h100):
    _, report, _, rows = h100
    recs = records(report, "not_run")
    assert sum(r["n"] for r in recs) == sum(r["status"] != "ok" for r in rows)
    assert {r["status"] for r in recs} == {"skipped", "failed", "incorrect"}


# ---- figures ----------------------------------------------------------------------------------
def test_figures_are_valid_pngs(h100):
    from matplotlib.image import imread
    from PIL import Image

    _, report, _, _ = h100
    drawn = [f for f in report.figures if f.path is not None]
    assert {f.key for f in drawn} == {"latency_vs_seqlen", "decode_bandwidth", "roofline",
                                      "block_size_tradeoff", "speedup_heatmap", "fragmentation"}
    for fig in drawn:
        assert fig.path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(fig.path) as im:
            im.verify()
        pixels = imread(fig.path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600
        assert pixels.std() > 0.05  # not a blank canvas


# ---- rendering --------------------------------------------------------------------------------


def test_html_embeds_figures(h100):
    run, report, _, _ = h100
    html = (run / "report" / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len([f for f in report.figures if f.path])


def test_cpu_only_run_renders_with_not_measured(cpu):
    run, report, written = cpu
    claims = {r["key"]: r["verdict"] for r in records(report, "claims")}
    assert claims["flash_2_4x"].startswith("not measured (")
    assert claims["flash_halves_hbm"].startswith("not measured (DRAM bytes come from Nsight Compute")
    assert claims["memory_n2_vs_n"].startswith("not measured (")
    quick = {r[0]: r for r in report.table("quick_summary").rows}
    assert quick["sdpa-flash"][5] == "not measured (skipped: runs on cuda only, not cpu)"
    assert "ms" in quick["naive"][5]
    figs = {f.key: f for f in report.figures}
    assert figs["latency_vs_seqlen"].path is not None
    assert figs["roofline"].path is None and "calibrated" in figs["roofline"].reason
    assert figs["fragmentation"].path is None
    assert "interrupted" in str(report.table("runs").notes)
    md = (run / "report" / "report.md").read_text()
    assert "not drawn (" in md and "not measured (" in md


def test_two_runs_side_by_side(tmp_path, h100):
    first = h100[0]
    second = fx.make_h100_like(tmp_path / "slow", run_id="20260601-h100-slower", slow=1.5)
    report, written = write_report([first, second], tmp_path / "both", plot=True)
    quick = report.table("quick_summary")
    assert quick.columns[0] == "Run"
    by_run = defaultdict(dict)
    for rec in quick.records:
        by_run[rec["run"]][rec["backend"]] = rec
    assert set(by_run) == {"20260501-100000-h100-cuda", "20260601-h100-slower"}
    a, b = by_run["20260501-100000-h100-cuda"]["sdpa-flash"], by_run["20260601-h100-slower"]["sdpa-flash"]
    assert b["prefill_ms"] == pytest.approx(1.5 * a["prefill_ms"])
    compared = {r["backend"]: r for r in report.table("compare").records}
    assert compared["sdpa-flash"]["ratios"]["20260601-h100-slower"] == pytest.approx(1.5)
    assert compared["cuda-paged"]["decode_ms"]["20260601-h100-slower"] == pytest.approx(
        1.5 * compared["cuda-paged"]["decode_ms"]["20260501-100000-h100-cuda"])
    names = {p.name for p in written}
    assert {"latency_vs_seqlen.png", "roofline_run1.png", "roofline_run2.png"} <= names
    md = (tmp_path / "both" / "report.md").read_text()
    assert "20260601-h100-slower" in md and "| Run |" in md


def test_classes_come_from_case_columns():
    import pandas as pd

    from attnbench.report.classify import classes_of

    row = pd.Series({"workload": "prefix-demo", "tags": ["prefix-sharing"], "batch": 4,
                     "kv_lens": [512, 512, 512, 512], "q_lens": [1, 1, 1, 1], "max_kv": 512,
                     "gqa_ratio": 4, "prefix_len": 0})
    assert classes_of(row) == ["batched-equal", "gqa"]  # a tag alone does not make prefix sharing
    row.update(pd.Series({"prefix_len": 256, "kv_lens": [512, 900, 512, 512]}))
    assert classes_of(row) == ["batched-mixed", "gqa", "prefix"]
    long_single = pd.Series({"batch": 1, "kv_lens": [32768], "q_lens": [32768], "max_kv": 32768,
                             "gqa_ratio": 1, "prefix_len": 0, "tags": [], "workload": "x"})
    assert classes_of(long_single) == ["single", "long"]


def test_every_drawn_figure_is_in_the_markdown_and_the_html(h100):
    """Every figure drawn appears, after its table or at the end: decode_window was drawn into the
    committed H200 report's folder and shown nowhere; a figure of a kind no table names goes last."""
    import inspect
    from dataclasses import replace as dc_replace

    from attnbench.report import draw
    from attnbench.report.document import FIGURES_AFTER, figures_after
    from attnbench.report.figures import FigureResult

    kinds = set(re.findall(r'\(\s*"([a-z_]+)", "', inspect.getsource(draw.draw_all)))
    assert "decode_window" in kinds and kinds <= {k for v in FIGURES_AFTER.values() for k in v}
    _, report, written, _ = h100
    md = next(p for p in written if p.name == "report.md").read_text()
    drawn = [f for f in report.figures if f.path is not None]
    assert drawn and all(f"figures/{f.path.name}" in md for f in drawn)
    stray = FigureResult("new_kind", "A new figure", "caption", base="new_kind")
    with_stray = dc_replace(report, figures=[*report.figures, stray])
    last = report.tables[-1].key
    assert stray in figures_after(with_stray, last)
    assert all(stray not in figures_after(with_stray, t.key) for t in report.tables[:-1])
