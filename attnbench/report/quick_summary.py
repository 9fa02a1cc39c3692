"""Quick summary: per backend, what it is, and its measured latency and throughput on the run's
representative prefill and decode cases (the problems the most backends ran)."""

from __future__ import annotations

from attnbench.report.describe import describe
from attnbench.report.load import RunData
from attnbench.report.select import describe_case, label_order, representative, representative_row
from attnbench.report.table import Table, missing, ms_spread, not_measured, num, pct


def _why_missing(run: RunData, problem: str | None, label: str) -> str:
    if problem is None:
        return not_measured("no ok case of this phase in the run")
    rows = run.df[(run.df["problem"] == problem) & (run.df["label"] == label)]
    if rows.empty:
        return not_measured("backend did not run this case")
    row = rows.iloc[0]
    return not_measured(f"{row['status']}: {row['reason']}" if row["reason"] else row["status"])


def build(run: RunData) -> Table:
    ok = run.ok
    pre, dec = representative(ok, "prefill"), representative(ok, "decode")
    copy = run.calibration("copy_gbps")
    table = Table(
        key="quick_summary",
        title="Quick summary",
        intro="Each backend: its purpose and memory model, and its median latency (p50, with the 95% "
        "interval of the median in brackets and the sample count n) and throughput "
        "on the representative prefill and decode cases (the cases the most backends ran). Paged "
        "backends use shuffled blocks of 16 tokens where they ran them.",
        columns=["Backend", "Family", "Impl", "Purpose", "Memory model", "Prefill p50 [95% CI] n",
                 "Prefill TFLOP/s", "Decode p50 [95% CI] n", "Decode GB/s (% of copy)", "Decode tokens/s",
                 "Rows ok"],
    )
    for problem, phase in ((pre, "prefill"), (dec, "decode")):
        if problem is not None:
            first = ok[ok["problem"] == problem].iloc[0]
            table.notes.append(f"Representative {phase} case: {describe_case(first)}.")
        else:
            table.notes.append(f"Representative {phase} case: {not_measured(f'no ok {phase} rows')}.")
    for label in label_order(run.df):
        rows = run.df[run.df["label"] == label]
        first = rows.iloc[0]
        info = describe(str(first["backend"]), first.get("family"), first.get("impl"))
        name = label
        version = first.get("flash_attn_version") if "flash_attn_version" in rows else None
        if isinstance(version, str) and version:
            name = f"{label} ({version})"
        rec = {"backend": label, "family": info.family, "impl": info.impl, "purpose": info.purpose,
               "memory_model": info.memory_model, "n_ok": int(rows["ok"].sum()), "n_rows": len(rows)}
        family = info.family
        if first["kind"] == "paged" and info.family != "paged":
            family += " (paged KV path)"
        cells = [name, family, info.impl, info.purpose, info.memory_model]
        p = representative_row(ok, pre, label) if pre else None
        if p is not None:
            rec.update(prefill_ms=p["latency_ms_p50"], prefill_tflops=p["tflops"])
            bs = f" (bs {p['block_size']:.0f})" if p["paged"] else ""
            rec.update(prefill_n=p["n_samples"],
                       prefill_ci_ms=(p["latency_ms_ci_low"], p["latency_ms_ci_high"]))
            cells += [ms_spread(p) + bs, num(p["tflops"])]
        else:
            cells += [_why_missing(run, pre, label), "—"]
        d = representative_row(ok, dec, label) if dec else None
        if d is not None:
            gbps = d["hbm_gbps"]
            share = gbps / copy if copy and not missing(gbps) else d["bw_util"]
            tokens = d["batch"] / (d["latency_ms_p50"] * 1e-3)
            rec.update(decode_ms=d["latency_ms_p50"], decode_gbps=gbps, decode_bw_util=share,
                       decode_tokens_per_s=tokens)
            bs = f" (bs {d['block_size']:.0f})" if d["paged"] else ""
            share_txt = f" ({pct(share)})" if not missing(share) else " (no calibrated ceiling)"
            rec.update(decode_n=d["n_samples"],
                       decode_ci_ms=(d["latency_ms_ci_low"], d["latency_ms_ci_high"]))
            cells += [ms_spread(d) + bs, num(gbps) + share_txt, num(tokens)]
        else:
            cells += [_why_missing(run, dec, label), "—", "—"]
        cells.append(f"{rec['n_ok']}/{rec['n_rows']}")
        table.rows.append(cells)
        table.records.append(rec)
    if not table.rows:
        table.empty_reason = "the run has no rows"
    return table

