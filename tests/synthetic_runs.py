"""Synthetic run directories for the gate tests: manifest.json plus results.jsonl with seeded samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

GPU = "NVIDIA H100 80GB HBM3"


def lognormal(rng: np.random.Generator, median_ms: float, cv: float, n: int) -> list[float]:
    """n timing samples with the given median and coefficient of variation (multiplicative noise)."""
    sigma = math.sqrt(math.log1p(cv * cv))
    return (median_ms * np.exp(rng.normal(0.0, sigma, n))).tolist()


def keys(n: int) -> list[tuple[str, str]]:
    backends = ("sdpa-flash", "triton-paged")
    cases = [f"w/prefill/b4/fixed-{i:03d}/hq32-hkv8/d128/bf16/causal" for i in range(n)]
    return [(c, b) for c in cases for b in backends][:n]


def row(key: tuple[str, str], samples: list[float] | None, dtype: str = "bf16", **extra) -> dict:
    case_id, backend = key
    r = {
        "case_id": case_id,
        "backend": backend,
        "dtype": dtype,
        "status": "ok" if samples else "failed",
        "reason": "" if samples else "synthetic failure",
        "samples_ms": samples or [],
        "n_samples": len(samples or []),
        "latency_ms_p50": float(np.median(samples)) if samples else None,
    }
    r.update(extra)
    return r


def write_run(path: Path, rows: list[dict], gpu: str = GPU, config_hash: str = "c0ffee", **manifest) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    m = {
        "run_id": path.name,
        "device": "cuda",
        "gpu_name": gpu,
        "config_name": "ci-gate",
        "config_hash": config_hash,
        "git_commit": "abc1234",
        "status": "complete",
    }
    m.update(manifest)
    (path / "manifest.json").write_text(json.dumps(m))
    (path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def noisy_pair(
    tmp_path: Path,
    n_points: int,
    cv: float,
    n_samples: int,
    current_factor: dict[int, float] | None = None,
    seed: int = 0,
) -> tuple[Path, Path, list[tuple[str, str]]]:
    """Baseline and current runs drawn independently from the same noise; point i of the current run
    is slower by current_factor[i] (a ratio of medians)."""
    rng = np.random.default_rng(seed)
    ks = keys(n_points)
    factor = current_factor or {}
    base_rows, cur_rows = [], []
    for i, k in enumerate(ks):
        median = 0.2 + 0.05 * i
        base_rows.append(row(k, lognormal(rng, median, cv, n_samples)))
        cur_rows.append(row(k, lognormal(rng, median * factor.get(i, 1.0), cv, n_samples)))
    return write_run(tmp_path / "base", base_rows), write_run(tmp_path / "cur", cur_rows), ks


def run_medians(
    rng: np.random.Generator, medians: list[float], between_sd: float | list[float], k: int
) -> np.ndarray:
    """k runs' per-point medians (ms): each run moves each point by exp(N(0, sd)), independently
    (the between-run noise a multi-run baseline measures); shape (k, points)."""
    sd = np.broadcast_to(np.asarray(between_sd, dtype=np.float64), (len(medians),))
    return np.asarray(medians) * np.exp(rng.normal(0.0, 1.0, (k, len(medians))) * sd)


def runs_rows(
    rng: np.random.Generator,
    ks: list[tuple[str, str]],
    medians: np.ndarray,
    cv: float,
    n_samples: int,
    **extra,
) -> list[list[dict]]:
    """Rows of each run: n_samples lognormal samples around each run's median for each point."""
    return [
        [row(k, lognormal(rng, float(m), cv, n_samples), **extra) for k, m in zip(ks, run, strict=True)]
        for run in medians
    ]


def write_runs(root: Path, rows_per_run: list[list[dict]], **manifest) -> list[Path]:
    """One run directory per list of rows: root/run-01, root/run-02, ..."""
    return [write_run(root / f"run-{i:02d}", rows, **manifest) for i, rows in enumerate(rows_per_run, 1)]
