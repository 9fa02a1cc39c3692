"""Run directories -> one tidy pandas frame per run, with the derived columns every table uses.

Derived columns (all computed here, once):
- label: the backend name, plus "-<variant>" only where one backend wrote two variants of one case,
  plus " [paged]" on paged-KV rows of a non-paged-family backend (see _labels).
- paged: the row ran on a paged KV cache (block_size set).
- kind: naive | flash | paged, the side of the comparison a row stands for. Any non-naive row on a
  paged KV cache counts as "paged" (flash-attn's block_table path included); contiguous flash rows
  are "flash"; every naive-family row is "naive".
- problem: the attention problem without its KV form (phase, lengths, heads, head dim, dtype,
  masking, prefix, a quantised cache's kv_dtype and kv_scale), so a paged row and a contiguous row
  of the same work share it, as do two workloads of a config that sweep the same geometry (a
  block-size sweep and the main decode case).
- n_len: the sequence length of an equal-length case (prefill N, decode context), else NaN.
- ok: status == "ok" with a latency.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from attnbench.row import field as column
from attnbench.runner.results import ROWS, RunDir, bad_lines_note, load_run, read_rows
from attnbench.runner.run_end import abandoned

# Columns the report reads (each defined in attnbench.row); a run that lacks one (older or
# partial) gets it as all-missing.
EXPECTED = (
    "case_id", "workload", "phase", "batch", "q_lens", "kv_lens", "total_q", "total_kv", "max_q", "max_kv",
    "mean_kv", "num_q_heads", "num_kv_heads", "gqa_ratio", "head_dim", "dtype", "causal", "seqlen_mix",
    "block_size", "kv_layout", "prefix_len", "tags", "backend", "family", "impl", "status", "reason",
    "rel_err", "latency_ms_p50", "latency_ms_p10", "latency_ms_p90", "latency_ms_ci_low",
    "latency_ms_ci_high", "samples_ms", "n_samples", "tflops", "hbm_gbps", "bw_util", "flop_util", "flops",
    "min_hbm_bytes", "peak_mem_bytes", "working_mem_bytes", "kv_bytes_allocated", "kv_bytes_used",
    "padding_waste", "throttled", "variant", "dram_read_bytes", "dram_write_bytes",
    "pattern", "window", "softcap", "alibi", "compile_s", "prepare_s", "new_kernel", "kv_dtype", "kv_scale",
)
# The number columns among them (attnbench.row's types): read with to_numeric, a missing or odd
# value becoming NaN.
NUMERIC = tuple(c for c in EXPECTED if column(c).numeric)
FRAGMENTATION_FILE = "fragmentation.json"
LAYOUT_PAIRS_FILE = "layout_pairs.json"  # attnbench.runner.layout_pairs.LAYOUT_FILE (no torch import here)


class ReportError(Exception):
    """Bad input to the report: the message is one line naming what was wrong."""


@dataclass
class RunData:
    path: Path
    manifest: dict[str, Any]
    df: pd.DataFrame
    fragmentation: dict[str, Any] | None = None
    fragmentation_source: str | None = None
    # the sweep's paired block-order measurement (attnbench.runner.layout_pairs), when it ran
    layout_pairs: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def gpu(self) -> str:
        if self.manifest.get("gpu_name"):
            return str(self.manifest["gpu_name"])
        return "CPU" if self.manifest.get("device") == "cpu" else "unknown device"

    @property
    def label(self) -> str:
        return f"{self.run_id} ({self.gpu})"

    def calibration(self, key: str) -> float | None:
        """A calibrated ceiling (copy_gbps, matmul_tflops, ...) as a positive float, else None."""
        raw = (self.manifest.get("calibration") or {}).get(key)
        if raw is None:
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    @property
    def ok(self) -> pd.DataFrame:
        return self.df[self.df["ok"]]


def _as_tuple(value: Any) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return ()


def _problem_key(row: Mapping[str, Any]) -> str:
    parts = [row.get("phase"), list(_as_tuple(row.get("q_lens"))),
             list(_as_tuple(row.get("kv_lens"))), row.get("num_q_heads"), row.get("num_kv_heads"),
             row.get("head_dim"), row.get("dtype"), row.get("causal"), row.get("prefix_len")]
    pattern = row.get("pattern")
    if isinstance(pattern, str) and pattern != "none":
        parts.append(pattern)  # a windowed case is a different problem from the full one
    kv = row.get("kv_dtype")
    if isinstance(kv, str) and kv != "auto":  # an fp8 cache is another problem; rows without it: as before
        parts.append(f"kv {kv} {row.get('kv_scale')}")
    if not parts[1] and isinstance(row.get("case_id"), str):
        # No length lists: the case_id without its "/bs<N>-<layout>" suffix names the problem.
        cid = row["case_id"]
        return cid.rsplit("/bs", 1)[0] if "/bs" in cid else cid
    return json.dumps(parts, default=str)


def _labels(df: pd.DataFrame) -> pd.Series:
    """Backend name; "-<variant>" where one backend wrote two variants of one case; " [paged]" on the
    paged-KV rows of a backend outside the paged family (flash-attn's block_table path), so its two
    KV forms are two series."""
    labels = df["backend"].astype(str)
    variant = df["variant"].where(df["variant"].notna(), "")
    dup = df.duplicated(subset=["case_id", "backend"], keep=False) & (variant != "")
    labels = labels.where(~dup, labels + "-" + variant.astype(str))
    paged_form = df["block_size"].notna() & (df["family"].fillna("") != "paged")
    return labels.where(~paged_form, labels + " [paged]")


def normalize(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a frame with every expected column and the derived columns of this module."""
    df = pd.DataFrame(rows)
    for col in EXPECTED:
        if col not in df.columns:
            df[col] = None
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    if df.empty:
        for col, dtype in (("label", object), ("kind", object), ("problem", object), ("n_len", float),
                           ("paged", bool), ("ok", bool), ("lengths_equal", bool)):
            df[col] = pd.Series(dtype=dtype)
        return df
    df["status"] = df["status"].fillna("unknown").astype(str)
    df["reason"] = df["reason"].fillna("").astype(str)
    df["backend"] = df["backend"].fillna("?").astype(str)
    df["kv_layout"] = df["kv_layout"].fillna("shuffled")
    df["pattern_recorded"] = df["pattern"].notna()  # False: a row from before the pattern axes
    df["pattern"] = df["pattern"].fillna("none").astype(str)
    df["tags"] = df["tags"].apply(lambda t: list(t) if isinstance(t, (list, tuple)) else [])
    # A resumed sweep may hold a point twice: the last row written wins.
    df = df.drop_duplicates(subset=["case_id", "backend", "variant"], keep="last").reset_index(drop=True)
    df["label"] = _labels(df)
    df["paged"] = df["block_size"].notna()
    fam = df["family"].fillna("")
    df["kind"] = "flash"
    df.loc[df["paged"], "kind"] = "paged"
    df.loc[fam == "naive", "kind"] = "naive"
    df.loc[(fam == "") & ~df["paged"], "kind"] = "other"
    # per row in plain Python over the columns: apply(axis=1) built a Series per row
    key_cols = ["phase", "q_lens", "kv_lens", "num_q_heads", "num_kv_heads", "head_dim", "dtype", "causal",
                "prefix_len", "pattern", "case_id", "kv_dtype", "kv_scale"]
    df["problem"] = [_problem_key(dict(zip(key_cols, values, strict=True)))
                     for values in zip(*(df[c] for c in key_cols), strict=True)]

    def equal_len(kv_lens: Any, q_lens: Any) -> float:
        kv = _as_tuple(kv_lens)
        if kv and len(set(kv)) == 1 and len(set(_as_tuple(q_lens))) == 1:
            return float(kv[0])
        return float("nan")

    df["n_len"] = [equal_len(kv, q) for kv, q in zip(df["kv_lens"], df["q_lens"], strict=True)]
    df["lengths_equal"] = df["n_len"].notna()
    df["ok"] = (df["status"] == "ok") & df["latency_ms_p50"].notna() & (df["latency_ms_p50"] > 0)
    from attnbench.report.classify import add_classes

    df = add_classes(df)  # once here: several tables select by workload class
    # pandas' Arrow-backed strings make each of the report's many row selections several times
    # slower on a frame this wide; plain object columns hold the same values.
    df = df.astype({c: object for c in df.columns if str(df[c].dtype) == "str"})
    return df.copy()  # one block per dtype: the columns added one by one above leave it fragmented


def _find_fragmentation(run_dir: Path) -> Path | None:
    direct = run_dir / FRAGMENTATION_FILE
    if direct.exists():
        return direct
    nested = sorted(run_dir.glob(f"*/{FRAGMENTATION_FILE}"))
    return nested[0] if nested else None


def read_fragmentation(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        why = f"{exc.__class__.__name__}: {exc}"
        raise ReportError(f"{path}: cannot read the fragmentation study ({why})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ReportError(f"{path}: not a fragmentation study (expected an object with a 'rows' list)")
    return data


def read_layout_pairs(run_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """The run's layout_pairs.json, or (None, why not) when it is absent ('') or unreadable."""
    path = run_dir / LAYOUT_PAIRS_FILE
    if not path.exists():
        return None, ""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{path}: cannot read the paired layout measurement ({exc.__class__.__name__}: {exc})"
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        return None, f"{path}: not a paired layout measurement (expected an object with a 'records' list)"
    return data, ""


def _read_run(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not path.is_dir():
        raise ReportError(f"{path}: not a directory (RUN must be a run directory with a manifest.json)")
    try:
        return load_run(path)
    except FileNotFoundError as exc:
        raise ReportError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}/manifest.json: not valid JSON ({exc})") from None


def load_one(path: Path, fragmentation: Path | None = None, profiles: Sequence[Path] = ()) -> RunData:
    """One run; rows of `profiles` (attnbench profile runs) add their ncu fields to matching points."""
    manifest, rows = _read_run(path)
    from attnbench.runner.profile_phase import PROFILE_DIR

    if not profiles and (path / PROFILE_DIR / "manifest.json").is_file():
        profiles = [path / PROFILE_DIR]  # written by `attnbench sweep --profile`
    if profiles:
        from attnbench.profile.rows import merge_rows

        for profile in profiles:
            rows = merge_rows(rows, _read_run(Path(profile))[1])
    run = RunData(path=path, manifest=manifest, df=normalize(rows))
    frag_path = fragmentation or _find_fragmentation(path)
    if frag_path is not None:
        run.fragmentation = read_fragmentation(frag_path)
        run.fragmentation_source = str(frag_path)
    run.layout_pairs, problem = read_layout_pairs(path)
    if problem:
        run.warnings.append(problem + "; the indirection claim uses the unpaired rows")
    if manifest.get("status") == "running" and abandoned(RunDir(path)):
        run.warnings.append("run status is 'running' but no process is running it (the sweep was killed): "
                            "the report covers the rows written; finish it with attnbench sweep --resume")
    elif manifest.get("status") not in (None, "complete"):
        run.warnings.append(f"run status is {manifest.get('status')!r}: the report covers the rows written")
    unreadable = bad_lines_note(path / ROWS, read_rows(path / ROWS)[1])
    if unreadable:
        run.warnings.append(unreadable)
    if not rows:
        run.warnings.append("results.jsonl has no rows")
    return run


def load_runs(
    paths: list[Path], fragmentation: Path | None = None, profiles: Sequence[Path] = ()
) -> list[RunData]:
    """Load several runs; --fragmentation (if given) applies to every run, --profile to the first."""
    if fragmentation is not None and not fragmentation.exists():
        raise ReportError(f"--fragmentation {fragmentation}: no such file")
    return [load_one(Path(p), fragmentation, profiles if i == 0 else ()) for i, p in enumerate(paths)]
