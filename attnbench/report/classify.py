"""Workload classes of the comparison's "when to use each" section, assigned to each case.

A case may belong to several classes (a long GQA decode is both "long context" and "GQA"). The
case's columns decide (batch, lengths, max_kv, gqa_ratio, prefix_len); the workload name and tags
are read only where a row lacks the column (keywords: mixed/sharegpt/alpaca/serving, long, gqa/mqa,
prefix), so a "prefix" tag on a case with prefix_len 0 does not make it a prefix-sharing case.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Contexts at or above this many tokens count as long (the comparison's long-context regime).
LONG_CONTEXT_TOKENS = 16384


@dataclass(frozen=True)
class WorkloadClass:
    key: str
    name: str
    rule: str  # how a case is put in the class, shown in the report
    doc_says: str  # the comparison document's recommendation, "" where it makes none
    doc_kind: str  # "flash" | "paged" | "" : the side the document recommends


CLASSES: tuple[WorkloadClass, ...] = (
    WorkloadClass("single", "single sequence latency", "batch = 1",
                  "FlashAttention (single sequence latency, chat inference)", "flash"),
    WorkloadClass("batched-equal", "batched equal lengths", "batch > 1, all lengths equal",
                  "FlashAttention (high throughput with fixed patterns)", "flash"),
    WorkloadClass("batched-mixed", "batched mixed lengths", "batch > 1, lengths differ",
                  "PagedAttention (multi-request batching, mixed lengths)", "paged"),
    WorkloadClass("long", "long context", f"longest context >= {LONG_CONTEXT_TOKENS:,} tokens", "", ""),
    WorkloadClass("gqa", "GQA / MQA", "num_q_heads > num_kv_heads", "", ""),
    WorkloadClass("prefix", "prefix sharing", "prefix_len > 0 (shared prompt prefix)",
                  "PagedAttention (prefix caching)", "paged"),
)


def _words(row: pd.Series) -> str:
    tags = row.get("tags")
    tags = " ".join(str(t) for t in tags) if isinstance(tags, (list, tuple)) else ""
    return f"{row.get('workload') or ''} {tags}".lower()


def classes_of(row: pd.Series) -> list[str]:
    """The class keys of one row's case."""
    out: list[str] = []
    batch = row.get("batch")
    kv = row.get("kv_lens")
    q = row.get("q_lens")
    lens = list(kv) if isinstance(kv, (list, tuple)) else []
    qlens = list(q) if isinstance(q, (list, tuple)) else []
    words = _words(row)
    if batch == 1:
        out.append("single")
    elif batch and batch > 1:
        mixed = (len(set(lens)) > 1 or len(set(qlens)) > 1) if lens else False
        if not lens and any(w in words for w in ("mixed", "sharegpt", "alpaca", "serving")):
            mixed = True
        out.append("batched-mixed" if mixed else "batched-equal")
    max_kv = row.get("max_kv")
    if (max_kv is not None and max_kv == max_kv and max_kv >= LONG_CONTEXT_TOKENS) or (
        max_kv != max_kv and "long" in words
    ):
        out.append("long")
    ratio = row.get("gqa_ratio")
    if (ratio is not None and ratio == ratio and ratio > 1) or (
        ratio != ratio and ("gqa" in words or "mqa" in words)
    ):
        out.append("gqa")
    prefix = row.get("prefix_len")
    if (prefix is not None and prefix == prefix and prefix > 0) or (prefix != prefix and "prefix" in words):
        out.append("prefix")
    return out


def add_classes(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of df with a `classes` column (list of class keys); frames from load already have it."""
    if "classes" in df.columns:
        return df
    df = df.copy()
    df["classes"] = df.apply(classes_of, axis=1) if len(df) else pd.Series(dtype=object)
    return df
