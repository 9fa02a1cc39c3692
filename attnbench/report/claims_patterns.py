"""Claims about attention patterns (sliding window, soft-cap, ALiBi), judged from rows that carry them.

The comparison says paged attention's "block table indirection supports any pattern; no recompilation
needed for different window sizes", against FlashAttention's "predefined" patterns and "per-config"
compile time. Rows carry the pattern (Case.pattern, window, softcap, alibi), the set-up time of the
point (prepare_s: every compile and first call the backend made for it) and, where the backend can
tell, whether that set-up built a new kernel (new_kernel: Triton's per-function kernel cache,
dynamo's graph count for FlexAttention).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.report.load import RunData
from attnbench.report.table import not_measured, num, pct

HOLDS, FAILS = "holds", "does not hold"


def patterned(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of cases with a pattern beyond causal masking."""
    if "pattern" not in df.columns:
        return df.iloc[0:0]
    return df[df["pattern"].fillna("none").astype(str) != "none"]


def _features(pattern: str) -> set[str]:
    return {f for f in ("window", "softcap", "alibi") if f in pattern}


def support_by_kind(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per kind (paged / flash): the pattern features some backend ran correctly, and points ok / asked."""
    out: dict[str, dict[str, Any]] = {}
    rows = patterned(df)
    for kind in ("paged", "flash"):
        sub = rows[rows["kind"] == kind]
        ok = sub[sub["status"] == "ok"]
        feats: set[str] = set()
        for p in ok["pattern"].unique():
            feats |= _features(str(p))
        out[kind] = {"asked": len(sub), "ok": len(ok), "features": sorted(feats),
                     "backends": sorted(ok["backend"].unique())}
    return out


class _Claim:
    """Duck-typed like attnbench.report.claims.Claim (key, claim, source, rule, verdict, numbers, values)."""

    def __init__(self, key: str, claim: str, source: str, rule: str) -> None:
        self.key, self.claim, self.source, self.rule = key, claim, source, rule
        self.verdict, self.numbers = "", ""
        self.values: dict[str, Any] = {}


def special_patterns(run: RunData, _tables: dict) -> _Claim:
    c = _Claim("paged_any_pattern",
               "Complex attention patterns (sliding window, ...): block table indirection supports "
               "any pattern",
               "PagedAttention: Advantages / Summary: Special patterns",
               "every pattern feature (window, softcap, alibi) the run asks for has a correct (ok) paged row")
    rows = patterned(run.df)
    if rows.empty:
        c.verdict = not_measured("the run has no sliding-window, soft-cap or ALiBi cases")
        return c
    asked: set[str] = set()
    for p in rows["pattern"].unique():
        asked |= _features(str(p))
    sup = support_by_kind(run.df)
    paged, flash = sup["paged"], sup["flash"]
    missing = sorted(asked - set(paged["features"]))
    c.values = {"asked": sorted(asked), "paged": paged, "flash": flash}
    c.verdict = HOLDS if not missing and paged["ok"] else FAILS
    def side(name: str, s: dict[str, Any]) -> str:
        return (f"{name}: {s['ok']}/{s['asked']} patterned points ok ({', '.join(s['backends'])}), "
                f"features {', '.join(s['features']) or 'none'}")

    c.numbers = (side("paged", paged) + "; " + side("flash", flash)
                 + (f"; no correct paged row for {', '.join(missing)}" if missing else ""))
    return c


def _shape_key(row: pd.Series) -> str:
    """The problem without its window size: rows differing only in the window value share it."""
    other = sorted(_features(str(row["pattern"])) - {"window"})
    shape = [row.get(c) for c in ("phase", "num_q_heads", "num_kv_heads", "head_dim", "dtype", "causal",
                                  "block_size", "kv_layout")]
    lens = [list(row["q_lens"]) if isinstance(row.get("q_lens"), list) else row.get("q_lens"),
            list(row["kv_lens"]) if isinstance(row.get("kv_lens"), list) else row.get("kv_lens")]
    return f"{row['backend']}|{shape}|{lens}|{'+'.join(other)}"


def recompile_groups(df: pd.DataFrame) -> pd.DataFrame:
    """Per (backend, problem without the window size): window sizes run and set-ups that built a kernel.

    Only ok rows with a window and a recorded new_kernel count; a group needs two window sizes.
    """
    rows = patterned(df)
    if "new_kernel" not in rows.columns or rows.empty:
        return pd.DataFrame(columns=["backend", "kind", "sizes", "new_kernels", "prepare_s_max"])
    rows = rows[(rows["status"] == "ok") & rows["window"].notna() & rows["new_kernel"].notna()]
    # The no-window row of the same shape is the reference point for what a first compile costs.
    records = []
    for key, g in rows.groupby(rows.apply(_shape_key, axis=1)):
        sizes = sorted({int(w) for w in g["window"]})
        if len(sizes) < 2:
            continue
        built = int(g["new_kernel"].astype(bool).sum())
        records.append({"group": key, "backend": g["backend"].iloc[0], "kind": g["kind"].iloc[0],
                        "sizes": sizes, "new_kernels": built,
                        "prepare_s_max": float(pd.to_numeric(g["prepare_s"], errors="coerce").max())})
    return pd.DataFrame(records)


def no_recompilation(run: RunData, _tables: dict) -> _Claim:
    c = _Claim("paged_no_recompile_window",
               "No recompilation needed for different window sizes (paged); FlashAttention compiles "
               "per config",
               "PagedAttention: Advantages / Summary: Compile time",
               "per backend and shape with >= 2 window sizes: at most one set-up builds a kernel (the first "
               "window compiles the windowed variant; later sizes reuse it); holds when every paged group "
               "does so")
    groups = recompile_groups(run.df)
    if groups.empty:
        c.verdict = not_measured("no backend ran one shape at two window sizes with new_kernel recorded "
                                 "(a GPU run of the patterns workloads does)")
        return c
    reuse = groups[groups["new_kernels"] <= 1]
    per_backend = groups.groupby("backend").agg(groups=("group", "size"), builds=("new_kernels", "sum"),
                                                sizes=("sizes", lambda s: sum(len(x) for x in s)))
    c.values = {"groups": groups.to_dict("records")}
    paged = groups[groups["kind"] == "paged"]
    if paged.empty:
        c.verdict = not_measured("no paged backend ran one shape at two window sizes")
    else:
        c.verdict = HOLDS if bool((paged["new_kernels"] <= 1).all()) else FAILS
    parts = [f"{b}: {int(r['builds'])} kernel build(s) over {int(r['sizes'])} windowed set-ups"
             for b, r in per_backend.iterrows()]
    c.numbers = (f"{len(reuse)}/{len(groups)} shape groups reuse one kernel across window sizes ("
                 f"{pct(len(reuse) / len(groups), 0)}); " + "; ".join(parts)
                 + f"; slowest windowed set-up {num(groups['prepare_s_max'].max())} s")
    return c


CHECKS = (special_patterns, no_recompilation)
