"""The pattern claims (any pattern on paged KV; no recompilation per window size) from synthetic rows."""

from __future__ import annotations

from pathlib import Path

from attnbench.report.claims_patterns import no_recompilation, special_patterns
from attnbench.report.load import RunData, normalize


def _row(backend: str, family: str, window, new_kernel, status="ok", block_size=16, softcap=None) -> dict:
    pattern = "+".join(p for p in (f"window{window}" if window else "", f"softcap{softcap:g}" if softcap
                                   else "") if p) or "none"
    return {"case_id": f"c/{pattern}/{block_size}", "workload": "patterns-decode", "phase": "decode",
            "q_lens": [1, 1], "kv_lens": [8192, 8192], "num_q_heads": 32, "num_kv_heads": 8, "head_dim": 128,
            "dtype": "bf16", "causal": False, "prefix_len": 0, "block_size": block_size, "backend": backend,
            "family": family, "status": status, "reason": "", "latency_ms_p50": 1.0, "window": window,
            "softcap": softcap, "alibi": False, "pattern": pattern, "new_kernel": new_kernel,
            "prepare_s": 0.5}


def _run(rows: list[dict]) -> RunData:
    return RunData(Path("r"), {"device": "cuda"}, normalize(rows))


def test_no_patterned_rows_is_not_measured():
    run = _run([_row("triton-paged", "paged", None, None)])
    assert special_patterns(run, {}).verdict.startswith("not measured")
    assert no_recompilation(run, {}).verdict.startswith("not measured")


def test_runtime_window_holds_and_a_recompiling_paged_backend_fails():
    reuse = [_row("triton-paged", "paged", w, nk) for w, nk in ((1024, True), (2048, False), (4096, False))]
    claim = no_recompilation(_run(reuse), {})
    assert claim.verdict == "holds", claim.numbers
    assert "triton-paged: 1 kernel build(s) over 3 windowed set-ups" in claim.numbers
    rebuild = reuse + [_row("flex-paged", "paged", w, True) for w in (1024, 2048)]
    claim = no_recompilation(_run(rebuild), {})
    assert claim.verdict == "does not hold" and "flex-paged: 2 kernel build(s)" in claim.numbers


def test_special_patterns_needs_a_correct_paged_row_per_feature():
    rows = [_row("triton-paged", "paged", 4096, False), _row("flex", "flash", 4096, True, block_size=None),
            _row("triton-paged", "paged", 4096, False, status="incorrect", softcap=50.0)]
    claim = special_patterns(_run(rows), {})
    assert claim.verdict == "does not hold" and "no correct paged row for softcap" in claim.numbers
    rows[2]["status"] = "ok"
    claim = special_patterns(_run(rows), {})
    assert claim.verdict == "holds", claim.numbers
    assert "paged: 2/2 patterned points ok" in claim.numbers


def _decode_rows(window) -> list[dict]:
    rows = []
    for n in (8192, 16384, 32768):
        r = _row("triton-paged", "paged", window, False)
        r.update(kv_lens=[n, n], case_id=f"c/{n}/{window}", batch=2,
                 latency_ms_p50=(min(n, 4096) if window else n) / 1000)
        rows.append(r)
    return rows


def test_decode_window_figure_pairs_full_and_windowed_series(tmp_path):
    import pytest

    from attnbench.report.figures import NoData, save
    from attnbench.report.plots_patterns import decode_window, window_series

    run = _run(_decode_rows(None) + _decode_rows(4096))
    rows, window = window_series(run.ok)
    assert window == 4096 and len(rows) == 6
    path = save(decode_window([run], {}, "t"), tmp_path / "w.png")
    assert path.stat().st_size > 1000
    with pytest.raises(NoData):
        decode_window([_run(_decode_rows(None))], {}, "t")


def test_length_sweep_keeps_windowed_rows_apart():
    from attnbench.report.select import length_series

    series = length_series(_run(_decode_rows(None) + _decode_rows(4096)).ok, "decode")
    rows = next(iter(series.values()))
    assert rows["pattern"].nunique() == 1  # one sweep: never the fastest of full and windowed per N
