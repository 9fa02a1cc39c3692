"""The one-case table shows the correctness check's ratio of error to allowed beside the error."""

from __future__ import annotations

from rich.console import Console

from attnbench.console import rows_table


def render(rows) -> str:
    console = Console(width=200, record=True)
    console.print(rows_table(rows, "t"))
    return console.export_text()


def test_ratio_to_allowed_is_shown():
    ok = {"backend": "naive", "status": "ok", "latency_ms_p50": 1.0, "tflops": 1.0, "hbm_gbps": 1.0,
          "rel_err": 1.5e-3, "rel_err_ratio": 0.314, "rel_err_seq": 2}
    bad = {"backend": "mutant", "status": "incorrect", "reason": "sequence 3 ...", "rel_err": 4e-2,
           "rel_err_ratio": 3.9}
    skipped = {"backend": "sdpa-flash", "status": "skipped", "reason": "needs cuda"}
    text = render([ok, bad, skipped])
    assert "err/allowed" in text
    assert "0.31x" in text and "3.90x" in text
