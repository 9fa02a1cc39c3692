"""Shared selections over a run's ok rows: best row per backend and problem, paired comparisons,
representative cases and the length series the complexity fits use."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

import numpy as np
import pandas as pd

from attnbench.report.classify import add_classes
from attnbench.report.table import geomean

# The block size the comparison (and vLLM) uses by default; preferred where a choice is arbitrary.
DEFAULT_BLOCK = 16


def best_per_label(ok: pd.DataFrame) -> pd.DataFrame:
    """One row per (problem, label): the fastest, preferring the shuffled block order.

    A paged backend runs a problem at several block sizes and both block orders; a user picks the
    block size, but a serving system's blocks end up scattered, so shuffled rows win over
    contiguous ones whenever a backend has both.
    """
    if ok.empty:
        return ok
    contig = (ok["paged"] & (ok["kv_layout"] != "shuffled")).to_numpy(dtype=int)
    # one stable sort on (contiguous last, latency) and one row selection: the report calls this
    # dozens of times on a wide frame, where every intermediate copy costs
    order = np.lexsort((ok["latency_ms_p50"].to_numpy(), contig))
    keys = zip(ok["problem"].to_numpy()[order], ok["label"].to_numpy()[order], strict=True)
    return ok.iloc[order[_first_of_each(keys)]]


def _first_of_each(keys: Iterable[Hashable]) -> list[int]:
    """The positions of each key's first occurrence, in order."""
    seen: set[Hashable] = set()
    first = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            first.append(i)
    return first


def best_of_kind(ok: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Per problem, the fastest row of one kind (naive | flash | paged), indexed by problem."""
    best = best_per_label(ok[ok["kind"] == kind])
    if best.empty:
        return best
    # the first row per problem in latency order (sort_values' own quicksort), taken in one step
    order = np.argsort(best["latency_ms_p50"].to_numpy(), kind="quicksort")
    problems = best["problem"].to_numpy()[order]
    return best.iloc[order[_first_of_each(problems)]].set_index("problem")


def paired(ok: pd.DataFrame, kind_a: str, kind_b: str) -> pd.DataFrame:
    """Problems where both kinds ran: latency and label of the best row of each side."""
    a, b = best_of_kind(ok, kind_a), best_of_kind(ok, kind_b)
    if a.empty or b.empty:
        return pd.DataFrame(columns=["lat_a", "lat_b", "label_a", "label_b"])
    common = a.index.intersection(b.index)
    side_a, side_b = a.loc[common], b.loc[common]
    # the four columns joined in one step: one insert at a time re-laid the wide frame each time
    pairs = pd.DataFrame({"lat_a": side_a["latency_ms_p50"], "lat_b": side_b["latency_ms_p50"],
                          "label_a": side_a["label"], "label_b": side_b["label"]}, index=common)
    return pd.concat([side_a, pairs], axis=1)


def class_paired(
    ok: pd.DataFrame, class_key: str, kind_a: str = "paged", kind_b: str = "flash"
) -> pd.DataFrame:
    """paired() restricted to the cases of one workload class (classify.CLASSES)."""
    if ok.empty:
        return paired(ok, kind_a, kind_b)
    ok = add_classes(ok)
    return paired(ok[ok["classes"].apply(lambda cl: class_key in cl)], kind_a, kind_b)


def eager_times(ok: pd.DataFrame) -> pd.DataFrame:
    """Rows with latency_ms_p50 replaced by what an eager loop pays per call: the larger of the
    device time and the host's call time (call_ms_p50). Rows without a host figure are dropped."""
    if ok.empty or "call_ms_p50" not in ok.columns:
        return ok.iloc[0:0]
    rows = ok[ok["call_ms_p50"].notna()].copy()
    rows["latency_ms_p50"] = rows[["latency_ms_p50", "call_ms_p50"]].max(axis=1)
    return rows


def paired_summary(pairs: pd.DataFrame) -> dict:
    """Geometric mean of lat_a / lat_b and the count (ratio > 1: side a is slower)."""
    if pairs.empty:
        return {"n": 0, "geomean": float("nan"), "min": float("nan"), "max": float("nan")}
    r = pairs["lat_a"] / pairs["lat_b"]
    return {"n": len(r), "geomean": geomean(list(r)), "min": float(r.min()), "max": float(r.max())}


def representative(ok: pd.DataFrame, phase: str) -> str | None:
    """The problem of a phase that the most backends ran ok; ties go to the most FLOPs."""
    rows = ok[ok["phase"] == phase]
    if rows.empty:
        return None
    stats = rows.groupby("problem").agg(backends=("label", "nunique"), flops=("flops", "max"))
    stats["flops"] = stats["flops"].fillna(0)
    return str(stats.sort_values(["backends", "flops"], ascending=False).index[0])


def representative_row(ok: pd.DataFrame, problem: str, label: str) -> pd.Series | None:
    """A backend's row on a problem: shuffled blocks at the default block size if it ran it, else its
    fastest shuffled row, else its fastest row."""
    rows = ok[(ok["problem"] == problem) & (ok["label"] == label)]
    if rows.empty:
        return None
    default = rows[(rows["block_size"] == DEFAULT_BLOCK) & (rows["kv_layout"] == "shuffled")]
    if not default.empty:
        return default.iloc[0]
    return best_per_label(rows).iloc[0]


def _series_key(df: pd.DataFrame) -> pd.Series:
    cols = ["phase", "batch", "num_q_heads", "num_kv_heads", "head_dim", "dtype", "causal", "prefix_len"]
    if "pattern" in df.columns:  # a windowed sweep is not the full one (its time stops growing)
        cols.append("pattern")
    # joined in Python: a row-wise agg builds one Series per row, the slowest step of the report
    keys = ["|".join(map(str, values)) for values in zip(*(df[c] for c in cols), strict=True)]
    return pd.Series(keys, index=df.index, dtype=object)


def length_series(ok: pd.DataFrame, phase: str) -> dict[str, pd.DataFrame]:
    """Per label, the rows of the run's main length sweep of a phase, sorted by N ({} without one).

    The sweep is the set of equal-length cases that differ only in length and has the most
    (backend, N) points. A paged backend contributes one (block size, layout) sub-series: the one
    with the most points, shuffled and the default block size preferred.
    """
    rows = ok[(ok["phase"] == phase) & ok["lengths_equal"]]
    if rows.empty:
        return {}
    # the helper columns live in small side frames: adding them to (and dropping them from) the wide
    # frame copied every column, several times per label
    series = _series_key(rows).rename("_series")
    size = rows.groupby([series, "label"])["n_len"].nunique().groupby(level="_series").sum()
    distinct = rows.groupby(series)["n_len"].nunique()
    score = pd.DataFrame({"points": size, "lengths": distinct}).sort_values(
        ["lengths", "points"], ascending=False
    )
    if score["lengths"].iloc[0] < 2:
        return {}  # one length is a point, not a sweep
    main = rows[series == score.index[0]]
    # per label, the sub-series in plain Python over the columns' arrays (positions into main): a
    # groupby, sort and drop_duplicates per label on frames of a few rows cost more than the search
    block = main["block_size"]
    bs, layout = block.fillna(-1).to_numpy(), main["kv_layout"].to_numpy()
    n_len, lat = main["n_len"].to_numpy(), main["latency_ms_p50"].to_numpy()
    pref = ((layout != "shuffled").astype(int) + (block.fillna(DEFAULT_BLOCK) != DEFAULT_BLOCK).to_numpy())
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(main["label"].to_numpy()):
        if not pd.isna(label):  # as groupby: a missing label is no series
            by_label.setdefault(label, []).append(i)
    out: dict[str, pd.DataFrame] = {}
    for label in sorted(by_label):
        subs: dict[tuple, list[int]] = {}  # (block size, layout) -> positions; a missing layout is no group
        for i in by_label[label]:
            if not pd.isna(layout[i]):
                subs.setdefault((bs[i], layout[i]), []).append(i)
        # the most distinct lengths, then the preferred form; ties: the first in (block size, layout) order
        chosen = min((subs[key] for key in sorted(subs)),
                     key=lambda pos: (-len({n_len[i] for i in pos if not pd.isna(n_len[i])}),
                                      int(min(pref[i] for i in pos))))
        # by (N, latency), missing values last, then the first row of each N
        chosen = sorted(chosen, key=lambda i: (_missing(n_len[i]), _missing(lat[i])))
        keep = [chosen[j] for j in _first_of_each(_n_key(n_len[i]) for i in chosen)]
        out[str(label)] = main.iloc[keep]
    return out


def _missing(value) -> tuple[bool, float]:
    """A sort key that puts missing values last, as pandas' sort_values does."""
    return (True, 0.0) if pd.isna(value) else (False, value)


def _n_key(value):
    """drop_duplicates treats every missing value as one."""
    return None if pd.isna(value) else value


def describe_case(row: pd.Series) -> str:
    """A short human description of a row's case (lengths, heads, head dim, dtype, masking)."""
    kv = row.get("kv_lens")
    kv = list(kv) if isinstance(kv, (list, tuple)) else []
    if kv and len(set(kv)) == 1:
        lengths = f"context {kv[0]:,}" if row.get("phase") == "decode" else f"N={kv[0]:,}"
    elif kv:
        lengths = f"lengths {min(kv):,}–{max(kv):,} (mean {sum(kv) / len(kv):,.0f})"
    else:
        lengths = f"max {row.get('max_kv')}"
    parts = [f"{row.get('workload')}: {row.get('phase')}", f"batch {row.get('batch'):.0f}"
             if row.get("batch") == row.get("batch") else "batch ?", lengths,
             f"heads {row.get('num_q_heads'):.0f}/{row.get('num_kv_heads'):.0f}"
             if row.get("num_q_heads") == row.get("num_q_heads") else "heads ?",
             f"d{row.get('head_dim'):.0f}" if row.get("head_dim") == row.get("head_dim") else "d?",
             str(row.get("dtype")), "causal" if row.get("causal") else "full"]
    if row.get("prefix_len") and row.get("prefix_len") == row.get("prefix_len"):
        parts.append(f"shared prefix {row.get('prefix_len'):.0f}")
    kv = row.get("kv_dtype")
    if isinstance(kv, str) and kv != "auto":
        parts.append(f"KV {kv} ({row.get('kv_scale')} scale)")
    return ", ".join(parts)


KIND_ORDER = {"naive": 0, "flash": 1, "paged": 2, "other": 3}


def label_order(df: pd.DataFrame) -> list[str]:
    """Labels sorted by kind (naive, flash, paged: a flash backend's paged-KV path sits with the
    paged kernels) then name."""
    if df.empty:
        return []
    kind = df.groupby("label")["kind"].first().fillna("other")
    return sorted(kind.index, key=lambda lab: (KIND_ORDER.get(kind[lab], 3), lab))
