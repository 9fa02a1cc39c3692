"""The comparison document's summary table, with the run's numbers in place of its adjectives.

"Paged" is the best non-naive row on a paged KV cache per case; "flash" the best flash-family row
on a contiguous one (see load.py); ratios are geometric means over the cases both sides ran.
"""

from __future__ import annotations

import re

import pandas as pd

from attnbench.report.load import RunData
from attnbench.report.select import class_paired, paired, paired_summary
from attnbench.report.support import compile_summary
from attnbench.report.table import Table, geomean, ms, not_measured, num, pct, ratio

DOC = {  # aspect -> (PagedAttention, FlashAttention) as the document's summary table says
    "Abstraction level": ("Memory/Storage", "Computation"),
    "Primary benefit": ("Flexibility", "Speed"),
    "Memory I/O": ("O(Nd)", "O(Nd) [optimized]"),
    "Intermediate storage": ("O(N²) full", "O(Nd) streaming"),
    "Batch diversity": ("Excellent", "Good"),
    "Latency (1 seq)": ("OK", "Excellent"),
    "Throughput (batch)": ("Excellent", "Excellent"),
    "Configurability": ("High", "Limited"),
    "Prefix caching": ("Native", "Compatible"),
    "Special patterns": ("Flexible", "Predefined"),
    "GPU support": ("Broad", "Modern only"),
    "Compile time": ("Once", "Per-config"),
}
PATTERN_WORDS = re.compile(r"window|sparse|alibi|softcap|sliding", re.I)


def _latency_row(pairs: pd.DataFrame, what: str) -> tuple[str, str, str]:
    s = paired_summary(pairs)
    if not s["n"]:
        nm = not_measured(f"no {what} case with both sides")
        return nm, nm, "—"
    side = "flash faster" if s["geomean"] > 1 else "paged faster"
    return (f"geo-mean {ms(geomean(list(pairs['lat_a'])))}", f"geo-mean {ms(geomean(list(pairs['lat_b'])))}",
            f"paged/flash time {ratio(s['geomean'])} ({side}, {s['n']} cases)")


def _throughput(ok: pd.DataFrame) -> tuple[str, str, str]:
    batched = ok[ok["batch"] > 1]
    pairs = paired(batched, "paged", "flash")
    if pairs.empty:
        nm = not_measured("no batched case with both sides")
        return nm, nm, "—"
    tok_a = geomean(list(pairs["total_q"] / (pairs["lat_a"] * 1e-3)))
    tok_b = geomean(list(pairs["total_q"] / (pairs["lat_b"] * 1e-3)))
    return (f"geo-mean {num(tok_a)} tokens/s", f"geo-mean {num(tok_b)} tokens/s",
            f"paged/flash throughput {ratio(tok_a / tok_b)} ({len(pairs)} batched cases)")


def _decode_bw(ok: pd.DataFrame, copy: float | None) -> tuple[str, str, str]:
    pairs = paired(ok[ok["phase"] == "decode"], "paged", "flash")
    if pairs.empty:
        nm = not_measured("no decode case with both sides")
        return nm, nm, "—"
    gb_a = pairs["min_hbm_bytes"] / (pairs["lat_a"] * 1e-3) / 1e9
    gb_b = pairs["min_hbm_bytes"] / (pairs["lat_b"] * 1e-3) / 1e9

    def text(v: pd.Series) -> str:
        share = f" ({pct(v.median() / copy)} of copy)" if copy else ""
        return f"median {num(v.median())} GB/s{share}"

    return (text(gb_a), text(gb_b), f"paged/flash achieved bandwidth {ratio(gb_a.median() / gb_b.median())} "
            f"(decode, {len(pairs)} cases)")


def _memory_exponents(tables: dict[str, Table], kind: str) -> str:
    recs = [r for r in tables["complexity"].records if r["kind"] == kind and r["phase"] == "prefill"]
    parts = []
    for r in recs:
        if r["memory_fit"] is not None:
            parts.append(f"{r['backend']} N^{r['memory_fit'].exponent:.2f}")
        elif r["memory_note"].startswith("0 B"):
            parts.append(f"{r['backend']} none")
    return "prefill working memory " + ", ".join(parts) if parts else not_measured("no prefill memory fit")


def _support(df: pd.DataFrame, kind: str) -> str:
    rows = df[df["kind"] == kind]
    if rows.empty:
        return not_measured(f"no {kind} rows")
    ran = int((rows["status"] != "skipped").sum())
    return f"{ran}/{len(rows)} points supported ({pct(ran / len(rows), 0)})"


def _gpu_support(df: pd.DataFrame, kind: str, gpu: str) -> str:
    labels = df[df["kind"] == kind].groupby("label")["ok"].any()
    if labels.empty:
        return not_measured(f"no {kind} rows")
    return f"{int(labels.sum())}/{len(labels)} backends ran on {gpu}"


def build(run: RunData, tables: dict[str, Table]) -> Table:
    table = Table(
        key="summary",
        title="Summary table",
        intro="The comparison's summary rows: the document's words, then this run's numbers for the best "
        "paged and the best flash backend per case.",
        columns=["Aspect", "Document: paged", "Document: flash", "Measured: paged", "Measured: flash",
                 "Measured comparison"],
    )
    ok, df = run.ok, run.df
    claims = {r["key"]: r for r in tables["claims"].records}
    speed = claims.get("flash_2_4x", {})
    descriptive = "descriptive (not a measurement)"
    sup_p, sup_f = _support(df, "paged"), _support(df, "flash")
    measured: dict[str, tuple[str, str, str]] = {
        "Abstraction level": (descriptive, descriptive, "—"),
        "Primary benefit": (
            f"{ok[ok['paged']].groupby(['block_size', 'kv_layout']).ngroups} block size x layout configs run",
            f"{ratio(speed['values']['median'])} median speed-up over standard attention"
            if speed.get("values") else speed.get("verdict", not_measured("no claim result")),
            "—",
        ),
        "Memory I/O": _decode_bw(ok, run.calibration("copy_gbps")),
        "Intermediate storage": (_memory_exponents(tables, "paged"), _memory_exponents(tables, "flash"), "—"),
        "Batch diversity": _latency_row(class_paired(ok, "batched-mixed"), "batched mixed-length"),
        "Latency (1 seq)": _latency_row(class_paired(ok, "single"), "batch-1"),
        "Throughput (batch)": _throughput(ok),
        "Configurability": (sup_p, sup_f, "share of the run's points each side could run"),
        "Prefix caching": _latency_row(class_paired(ok, "prefix"), "prefix-sharing"),
        "Special patterns": _patterns(df),
        "GPU support": (_gpu_support(df, "paged", run.gpu), _gpu_support(df, "flash", run.gpu), "—"),
        "Compile time": (compile_summary(df, "paged"), compile_summary(df, "flash"), "—"),
    }
    prefix = claims.get("paged_prefix", {})
    if prefix.get("values", {}).get("saved") is not None:
        p, f, cmp = measured["Prefix caching"]
        saved = pct(prefix["values"]["saved"])
        measured["Prefix caching"] = (p, f, f"{cmp}; KV bytes saved by sharing {saved}")
    for aspect, (doc_p, doc_f) in DOC.items():
        m_p, m_f, cmp = measured[aspect]
        table.rows.append([aspect, doc_p, doc_f, m_p, m_f, cmp])
        table.records.append({"aspect": aspect, "paged": m_p, "flash": m_f, "comparison": cmp})
    return table


def _patterns(df: pd.DataFrame) -> tuple[str, str, str]:
    """Per side: patterned points run correctly and the pattern features they cover (rows' pattern
    column); older runs without it fall back to workload names and tags that mention a pattern."""
    from attnbench.report.claims_patterns import patterned, support_by_kind

    if not patterned(df).empty:
        sup = support_by_kind(df)

        def text(kind: str) -> str:
            s = sup[kind]
            if not s["asked"]:
                return not_measured(f"no patterned {kind} rows")
            return f"{s['ok']}/{s['asked']} patterned points ok; {', '.join(s['features']) or 'no feature'}"

        return text("paged"), text("flash"), "window / soft-cap / ALiBi points each side ran correctly"
    words = (df["workload"].astype(str) + " " + df["tags"].astype(str)).str.contains(PATTERN_WORDS)
    if not words.any():
        nm = not_measured("the run has no sliding-window or sparse cases")
        return nm, nm, "—"
    sub = df[words]
    p, f = _support(sub, "paged"), _support(sub, "flash")
    return p, f, "special-pattern cases each side could run"
