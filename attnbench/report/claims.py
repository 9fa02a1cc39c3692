"""Claims check: each quantitative claim of the comparison document against the run's numbers.

Every check states its rule; the verdict is "holds", "does not hold", "undecided (...)" or "not
measured (reason)", and the numbers behind it are printed beside it. "undecided" is the verdict of a
claim judged on an interval (the paired block-order measurement, claims_layout) when the interval
contains the claim's limit: measured, but not precisely enough to tell which side of it the value
is. A claim with a range ("2-4x") holds only inside
the range: a measured 9x speed-up means the claim understates, and the verdict says it does not hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from attnbench.report import claims_layout, claims_patterns
from attnbench.report import fragmentation as frag
from attnbench.report.bandwidth import kv_elem_bytes_of
from attnbench.report.complexity import TOLERANCE
from attnbench.report.load import RunData
from attnbench.report.select import best_per_label, class_paired, paired, paired_summary
from attnbench.report.table import Table, not_measured, pct, ratio, signed_pct

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"
# A "~0.1%" cost is indistinguishable from noise below 1% (ten times the claim) with medians of
# tens of samples; above it the claim is off by more than an order of magnitude.
INDIRECTION_LIMIT = 0.01
# A paged backend and the contiguous backend of the same implementation (FlexAttention with and
# without a paged block mask). A backend with both KV forms (flash-attn) pairs with itself.
SAME_IMPL = {"flex-paged": "flex"}
# Paged and contiguous kernels of one code base but different kernels: shown as context only.
OTHER_KERNEL = {"triton-paged": "triton-flash", "cuda-paged": "cuda-flash"}
# What a run on a CPU cannot measure, and why (the claims check says it instead of a bare "no rows").
CPU_NO_DRAM = ("DRAM bytes come from Nsight Compute, which profiles NVIDIA GPUs only: a GPU run with "
               "`attnbench profile` answers this")
CPU_NO_BOTH_FORMS = ("no CPU backend runs one kernel on both a paged and a contiguous KV cache; on a GPU "
                     "flash-attn's block_table path and flex-paged / flex do")


def on_cpu(run: RunData) -> bool:
    return run.manifest.get("device") == "cpu"


class ClaimLike(Protocol):
    """What build() reads of a check's result: Claim, or claims_patterns' duck-typed copy of it (that
    module cannot import this one, which imports it)."""

    key: str
    claim: str
    source: str
    rule: str
    verdict: str
    numbers: str
    values: dict[str, Any]


@dataclass
class Claim:
    key: str
    claim: str
    source: str  # section of the comparison document
    rule: str
    verdict: str = ""
    numbers: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def _verdict(ok: bool) -> str:
    return HOLDS if ok else FAILS


def flash_vs_standard(run: RunData, _tables: dict) -> Claim:
    c = Claim("flash_2_4x", "FlashAttention is 2-4x faster than standard attention",
              "FlashAttention: Advantages",
              "median over prefill cases of best naive-family time / best flash time lies in [2, 4]")
    ok = run.ok
    pre = paired(ok[ok["phase"] != "decode"], "naive", "flash")
    if pre.empty:
        c.verdict = not_measured("no prefill case ran both a standard (naive) and a flash backend")
        return c
    speed = pre["lat_a"] / pre["lat_b"]
    med = float(speed.median())
    inside = int(((speed >= 2) & (speed <= 4)).sum())
    c.values = {"median": med, "min": float(speed.min()), "max": float(speed.max()), "n": len(speed),
                "in_range": inside}
    c.verdict = _verdict(2.0 <= med <= 4.0)
    side = ""
    if not 2.0 <= med <= 4.0:
        side = ": above the claimed range" if med > 4 else ": below the claimed range"
    c.numbers = (f"median {ratio(med)}{side} over {len(speed)} prefill case(s) (range {ratio(speed.min())}–"
                 f"{ratio(speed.max())}; {inside} inside 2–4x)")
    dec = paired(ok[ok["phase"] == "decode"], "naive", "flash")
    if not dec.empty:
        d = dec["lat_a"] / dec["lat_b"]
        c.values["decode_median"] = float(d.median())
        c.numbers += f"; decode: median {ratio(d.median())} over {len(d)} case(s)"
    return c


def _overhead_text(values: pd.Series, what: str) -> str:
    return (f"median {signed_pct(values.median())} over {len(values)} {what} "
            f"(range {signed_pct(values.min())} to {signed_pct(values.max())})")


def layout_cost(run: RunData, _tables: dict) -> Claim:
    """From the sweep's paired measurement (layout_pairs.json) when the run has one with a measured
    record; else from the sweep's rows, unpaired (each side its own point, timed at its own moment)."""
    c = Claim("indirection_layout", "Block-table indirection costs ~0.1% (scattered vs contiguous blocks)",
              "Memory Bandwidth Comparison",
              "same paged kernel, case and block size: median (shuffled / contiguous - 1) "
              f"<= {pct(INDIRECTION_LIMIT)}")
    unpaired = _unpaired_layout(run)
    paired = claims_layout.paired_outcome(run.layout_pairs, INDIRECTION_LIMIT)
    failed = claims_layout.failed_note(run.layout_pairs)
    if paired is None:
        if unpaired is None:
            c.verdict = not_measured("no paged case ran with both shuffled and contiguous block order")
        else:
            c.values, c.numbers = unpaired
            c.verdict = _verdict(c.values["median"] <= INDIRECTION_LIMIT)
        if failed:
            c.numbers = "; ".join(x for x in (c.numbers, failed) if x)
        return c
    c.rule = claims_layout.rule_text(INDIRECTION_LIMIT, float((run.layout_pairs or {}).get("alpha", 0.05)))
    c.values = paired.values
    if paired.outcome == claims_layout.UNDECIDED:
        c.verdict = (f"{UNDECIDED} (the {paired.confidence:.0%} interval contains the "
                     f"{pct(INDIRECTION_LIMIT)} limit: more pairs or rounds would tell)")
    else:
        c.verdict = _verdict(paired.outcome == claims_layout.HOLDS)
    extra = [failed] if failed else []
    if unpaired is not None:
        c.values["unpaired"] = unpaired[0]
        extra.append(f"unpaired sweep rows, context only: median {signed_pct(unpaired[0]['median'])} over "
                     f"{unpaired[0]['n']} pair(s)")
    c.numbers = "; ".join([paired.numbers, *extra])
    return c


def _unpaired_layout(run: RunData) -> tuple[dict[str, Any], str] | None:
    """(values, numbers) of the sweep rows' rule: the same paged kernel, case and block size timed as
    two points, shuffled and contiguous; None without such a pair."""
    ok = run.ok
    paged_rows = ok[ok["paged"] & (ok["kind"] == "paged")]  # naive gathers blocks first: not a paged kernel
    key = ["problem", "label", "block_size"]
    lat = paged_rows.pivot_table(index=key, columns="kv_layout", values="latency_ms_p50", aggfunc="min")
    if not {"shuffled", "contiguous"} <= set(lat.columns) or lat[["shuffled", "contiguous"]].dropna().empty:
        return None
    both = lat[["shuffled", "contiguous"]].dropna()
    over = both["shuffled"] / both["contiguous"] - 1.0
    per_kernel = over.groupby(level="label").median()
    values = {"source": "rows", "median": float(over.median()), "n": len(over),
              "per_kernel": per_kernel.to_dict()}
    numbers = _overhead_text(over, "(case, kernel, block size) pairs") + "; per kernel: " + ", ".join(
        f"{k} {signed_pct(v)}" for k, v in per_kernel.items())
    return values, numbers


def paged_vs_contiguous(run: RunData, _tables: dict) -> Claim:
    c = Claim("indirection_kernel",
              "Block-table indirection costs ~0.1% (paged vs contiguous KV, same kernel)",
              "Memory Bandwidth Comparison",
              "one implementation run on both KV forms (a backend's paged and contiguous paths, or "
              f"{', '.join(f'{a} / {b}' for a, b in SAME_IMPL.items())}), same case: median (paged time / "
              f"contiguous time - 1) <= {pct(INDIRECTION_LIMIT)}; paged at its best block size, "
              "shuffled blocks")
    best = best_per_label(run.ok)
    paged_best = best[best["paged"] & (best["kind"] != "naive")]
    contiguous = best[~best["paged"]].groupby(["problem", "backend"])["latency_ms_p50"].min()
    same: list[tuple[str, float]] = []  # ("paged backend vs contiguous one", paged / contiguous - 1)
    other: list[tuple[str, float]] = []
    for _, row in paged_best.iterrows():
        for sib, bucket in ((SAME_IMPL.get(row["backend"], row["backend"]), same),
                            (OTHER_KERNEL.get(row["backend"]), other)):
            if sib is not None and (row["problem"], sib) in contiguous.index:
                over = row["latency_ms_p50"] / contiguous[(row["problem"], sib)] - 1
                bucket.append((f"{row['backend']} vs {sib}", over))
    context = ""
    if other:
        per = pd.Series([o for _, o in other], index=[k for k, _ in other]).groupby(level=0).median()
        context = ("; different kernels, context only: "
                   + ", ".join(f"{k} {signed_pct(v)}" for k, v in per.items()))
    if not same:
        c.verdict = not_measured(CPU_NO_BOTH_FORMS if on_cpu(run) else
                                 "no case ran one implementation on both a paged and a contiguous KV cache")
        c.numbers = context.lstrip("; ")
        return c
    over = pd.Series([o for _, o in same])
    per = pd.Series([o for _, o in same], index=[k for k, _ in same]).groupby(level=0).median()
    c.values = {"median": float(over.median()), "n": len(over), "per_pair": per.to_dict()}
    c.verdict = _verdict(over.median() <= INDIRECTION_LIMIT)
    c.numbers = (_overhead_text(over, "case pairs") + "; per implementation: "
                 + ", ".join(f"{k} {signed_pct(v)}" for k, v in per.items()) + context)
    return c


def hbm_traffic(run: RunData, _tables: dict) -> Claim:
    c = Claim("flash_halves_hbm", "FlashAttention halves HBM traffic (~2x instead of ~4x K/V loads)",
              "Memory Bandwidth Comparison",
              "Nsight Compute DRAM bytes (read + written), flash / standard on the same case: "
              "median in [0.4, 0.6]")
    ok = run.ok
    have = ok[ok["dram_read_bytes"].notna()].copy()
    if have.empty:
        c.verdict = not_measured(CPU_NO_DRAM if on_cpu(run) else
                                 "no Nsight Compute DRAM byte counts (dram_read_bytes) in the rows")
        return c
    have["dram"] = have["dram_read_bytes"] + have["dram_write_bytes"].fillna(0)
    least = have.groupby(["problem", "kind"])["dram"].min().unstack()
    if not {"naive", "flash"} <= set(least.columns) or least[["naive", "flash"]].dropna().empty:
        c.verdict = not_measured("no case profiled for both a standard (naive) and a flash backend")
        return c
    both = least[["naive", "flash"]].dropna()
    r = both["flash"] / both["naive"]
    c.values = {"median": float(r.median()), "n": len(r)}
    c.verdict = _verdict(0.4 <= r.median() <= 0.6)
    side = "" if 0.4 <= r.median() <= 0.6 else (": a larger cut than claimed" if r.median() < 0.4
                                                 else ": a smaller cut than claimed")
    c.numbers = (f"flash moves {ratio(r.median())} of standard attention's DRAM bytes{side} (median of "
                 f"{len(r)} case(s), range {ratio(r.min())}–{ratio(r.max())})")
    return c


def fits_more(run: RunData, _tables: dict) -> Claim:
    c = Claim("paged_fits_more", "Paged attention fits more sequences in the same memory",
              "Use PagedAttention When: memory efficiency",
              "fragmentation study: paged batches more requests than every Orca policy on every dataset; "
              "else batched mixed-length rows: padded (batch x max length) bytes / paged bytes allocated > 1")
    if run.fragmentation is not None:
        cmp = frag.batched_ratios(run.fragmentation)
        if cmp:
            worst = min(cmp, key=lambda x: x["ratio"])
            c.values = {"source": "fragmentation", "ratios": cmp}
            c.verdict = _verdict(all(x["ratio"] > 1 for x in cmp))
            pairs = "; ".join(f"{x['dataset']} vs {x['policy']} {ratio(x['ratio'])}" for x in cmp)
            c.numbers = (f"mean batched requests, paged (block size {worst['block_size']}) / Orca: {pairs} "
                         f"(smallest: {ratio(worst['ratio'])})")
            return c
    rows = run.ok
    rows = rows[rows["paged"] & (rows["batch"] > 1) & ~rows["lengths_equal"]]
    rows = rows[rows["kv_bytes_allocated"].notna()]
    if rows.empty:
        c.verdict = not_measured("no fragmentation study and no batched mixed-length paged rows with "
                                 "KV bytes")
        return c
    token = 2 * rows["num_kv_heads"] * rows["head_dim"] * kv_elem_bytes_of(rows)
    padded = rows["batch"] * rows["max_kv"] * token
    fit = (padded / rows["kv_bytes_allocated"]).groupby(rows["block_size"]).median()
    c.values = {"source": "rows", "by_block": fit.to_dict()}
    c.verdict = _verdict(bool((fit > 1).all()))
    c.numbers = "padded bytes / paged bytes allocated (median over cases): " + ", ".join(
        f"bs {b:.0f}: {ratio(v)}" for b, v in fit.items())
    return c


def less_fragmentation(run: RunData, _tables: dict) -> Claim:
    c = Claim("paged_less_waste", "Paging reduces KV-cache memory fragmentation",
              "PagedAttention: Advantages",
              "fragmentation study: paged wastes less (reserved + internal + external) than every "
              "Orca policy")
    if run.fragmentation is None:
        c.verdict = not_measured("no fragmentation.json in the run (attnbench fragmentation writes one)")
        return c
    cmp = frag.waste_comparison(run.fragmentation)
    if not cmp:
        c.verdict = not_measured("the fragmentation study has no paged and Orca rows for one dataset")
        return c
    c.values = {"comparisons": cmp}
    c.verdict = _verdict(all(x["paged"] < x["orca"] for x in cmp))
    c.numbers = f"paged at block size {cmp[0]['block_size']}: " + "; ".join(
        f"{x['dataset']}: paged {pct(x['paged'])} vs {x['policy']} {pct(x['orca'])} wasted" for x in cmp)
    return c


def working_memory(run: RunData, tables: dict) -> Claim:
    c = Claim("memory_n2_vs_n", "Working memory is O(N²) for standard attention and O(N) for FlashAttention",
              "Computational Complexity",
              f"prefill fits: standard (naive) exponent within ±{TOLERANCE} of 2 and every flash exponent "
              f"<= {1 + TOLERANCE} (or no working memory at all)")
    recs = [r for r in tables["complexity"].records if r["phase"] == "prefill"]
    naive = [r for r in recs if r["kind"] == "naive" and r["memory_fit"] is not None]
    flash = [r for r in recs if r["kind"] == "flash"]
    flash_known = [r for r in flash if r["memory_fit"] is not None or r["memory_note"].startswith("0 B")]
    if not naive or not flash_known:
        why = "no prefill length sweep with working_mem_bytes for both standard and flash backends"
        c.verdict = not_measured(why)
        return c
    n_exp = {r["backend"]: r["memory_fit"].exponent for r in naive}
    f_exp = {r["backend"]: (r["memory_fit"].exponent if r["memory_fit"] else 0.0) for r in flash_known}
    c.values = {"naive": n_exp, "flash": f_exp}
    good = all(abs(e - 2) <= TOLERANCE for e in n_exp.values())
    good = good and all(e <= 1 + TOLERANCE for e in f_exp.values())
    c.verdict = _verdict(good)
    c.numbers = ("standard: " + ", ".join(f"{k} N^{v:.2f}" for k, v in n_exp.items()) + "; flash: "
                 + ", ".join(f"{k} N^{v:.2f}" for k, v in f_exp.items()))
    return c


def single_latency(run: RunData, _tables: dict) -> Claim:
    c = Claim("flash_single_latency",
              "FlashAttention for single-sequence latency; paged is 'not optimized' for it",
              "When to Use Each / PagedAttention trade-off",
              "batch-1 cases: geometric mean of best paged time / best flash time > 1")
    return _side_claim(c, class_paired(run.ok, "single"), want_flash=True, what="batch-1")


def batched_mixed(run: RunData, _tables: dict) -> Claim:
    c = Claim("paged_mixed_batches", "PagedAttention for multi-request batches of mixed lengths",
              "When to Use Each",
              "batched mixed-length cases: geometric mean of best paged / best flash time < 1")
    pairs = class_paired(run.ok, "batched-mixed")
    return _side_claim(c, pairs, want_flash=False, what="batched mixed-length")


def _side_claim(c: Claim, pairs: pd.DataFrame, want_flash: bool, what: str) -> Claim:
    if pairs.empty:
        c.verdict = not_measured(f"no {what} case with both a paged and a flash row")
        return c
    s = paired_summary(pairs)
    c.values = s
    c.verdict = _verdict(s["geomean"] > 1 if want_flash else s["geomean"] < 1)
    c.numbers = (f"best paged / best flash time: geometric mean {ratio(s['geomean'])} over {s['n']} {what} "
                 f"case(s) (range {ratio(s['min'])}–{ratio(s['max'])})")
    return c


def prefix_sharing(run: RunData, _tables: dict) -> Claim:
    c = Claim("paged_prefix", "Prefix caching: paged KV shares a common prompt prefix across requests",
              "Use PagedAttention When: prefix caching",
              "prefix-sharing paged rows allocate fewer KV bytes than one private copy per sequence")
    ok = run.ok
    rows = ok[ok["paged"] & (ok["prefix_len"] > 0) & ok["kv_bytes_allocated"].notna()]
    rows = rows[rows["kv_lens"].apply(lambda v: isinstance(v, list) and len(v) > 0)]
    if rows.empty:
        c.verdict = not_measured("no paged row of a prefix-sharing case with kv_lens and kv_bytes_allocated")
        return c
    token = 2 * rows["num_kv_heads"] * rows["head_dim"] * kv_elem_bytes_of(rows)

    def private_tokens(r: pd.Series) -> float:
        """Slots of one private copy per sequence: ceil(kv_len / block_size) blocks each."""
        bs = int(r["block_size"])
        return float(sum(-(-int(k) // bs) for k in r["kv_lens"]) * bs)

    private = rows.apply(private_tokens, axis=1)
    saved = 1 - rows["kv_bytes_allocated"] / (private * token)
    med = float(saved.median())
    c.values = {"saved": med, "n": len(saved)}
    c.verdict = _verdict(med > 0)
    c.numbers = f"KV bytes saved by sharing: median {pct(med)} over {len(saved)} paged row(s)"
    pair = paired_summary(class_paired(run.ok, "prefix"))
    if pair["n"]:
        c.values["paged_over_flash"] = pair["geomean"]
        c.numbers += f"; time best paged / best flash {ratio(pair['geomean'])}"
    return c


CHECKS: tuple[Callable[[RunData, dict], ClaimLike], ...] = (
    flash_vs_standard, layout_cost, paged_vs_contiguous, hbm_traffic, working_memory, fits_more,
    less_fragmentation, single_latency, batched_mixed, prefix_sharing, *claims_patterns.CHECKS,
)


def build(run: RunData, tables: dict[str, Table]) -> Table:
    table = Table(
        key="claims",
        title="Claims check",
        intro="Each quantitative claim of the comparison, the rule applied to this run, the verdict and "
        "the numbers behind it.",
        columns=["Claim", "Document section", "Verdict", "Measured", "Rule"],
    )
    for check in CHECKS:
        claim = check(run, tables)
        table.records.append({"key": claim.key, "claim": claim.claim, "verdict": claim.verdict,
                              "numbers": claim.numbers, "values": claim.values, "rule": claim.rule})
        table.rows.append([claim.claim, claim.source, claim.verdict, claim.numbers or "—", claim.rule])
    verdicts = [r["verdict"] for r in table.records]
    if on_cpu(run):
        table.notes.append(
            "Measured on a CPU (host clock): the verdicts are about this machine's CPU kernels (naive and "
            "sdpa-math as standard attention, sdpa-flash-cpu as FlashAttention, cpu-paged as paged "
            "attention, each a different kernel from its GPU namesake); the comparison's claims are about "
            "GPU kernels and HBM. Only a GPU run answers them for GPUs, and only a GPU answers at all: HBM "
            "traffic (Nsight Compute), bandwidth against the GPU's ceiling, the GPU backends (FlashAttention "
            "2/3/4, FlashInfer, FlexAttention, the Triton and CUDA kernels) and the GPU support matrix. The "
            "fragmentation claims come from the KV-cache simulation, which is the same on any machine."
        )
    undecided = sum(v.startswith(UNDECIDED) for v in verdicts)
    table.notes.append(
        f"{verdicts.count(HOLDS)} hold, {verdicts.count(FAILS)} do not hold, "
        + (f"{undecided} undecided (measured, but the interval contains the claim's limit), " if undecided
           else "")
        + f"{sum(v.startswith('not measured') for v in verdicts)} not measured."
    )
    return table

