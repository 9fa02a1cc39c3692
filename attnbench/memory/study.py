"""The KV-cache memory study: allocation policies served over the vLLM paper's setup, against its figures.

Pieces: length_dists (request lengths), contiguous (Orca policies on a buddy allocator), serving_sim
(the serving loop and the memory categories) and allocation (its policies), kvcache (the paged manager
the paged policy runs on), paper (published numbers), render (Markdown, figures), gpu_churn (the same
churn on PyTorch's caching allocator, on a GPU).
This module runs every (load, dataset, policy, block size) point of a config (study_config.py reads
and checks it) and assembles fragmentation.json; command.py is `attnbench fragmentation`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from attnbench.memory import paper
from attnbench.memory.contiguous import CONTIGUOUS_POLICIES
from attnbench.memory.length_dists import DATASETS, dataset_lengths, expected_means
from attnbench.memory.serving_sim import simulate
from attnbench.memory.study_config import SETUP_NUMBERS, ConfigError, StudyConfig, load_config

__all__ = ["ConfigError", "StudyConfig", "load_config", "plan", "run_point", "dataset_requests", "run_study",
           "study_notes", "implied_iteration_note", "write_json"]

def plan(cfg: StudyConfig) -> list[tuple[str, str, str, int | None]]:
    """(load, dataset, policy, block size) points; paged runs at paged_block_size and every block size."""
    points: list[tuple[str, str, str, int | None]] = []
    for load in cfg.loads:
        for ds in cfg.datasets:
            for pol in cfg.policies:
                if pol in CONTIGUOUS_POLICIES:
                    points.append((load, ds, pol, None))
                else:
                    for bs in sorted({cfg.paged_block_size, *cfg.block_sizes}):
                        points.append((load, ds, pol, bs))
    return points


def run_point(
    cfg: StudyConfig,
    load: str,
    dataset: str,
    policy: str,
    block_size: int | None,
    lengths: tuple[np.ndarray, np.ndarray],
    trace: list | None = None,
    timing: Any = None,
) -> dict[str, Any]:
    spec = cfg.datasets[dataset]
    rate = spec["request_rate"] if load == "paper-rate" else None
    res = simulate(
        policy,
        lengths[0],
        lengths[1],
        cfg.serving_setup(),
        block_size,
        request_rate=rate,
        seed=cfg.seed,
        warmup_fraction=cfg.warmup_fraction,
        trace=trace,
        timing=timing,
    )
    if res["measured_seconds"] <= 0:
        raise ConfigError(
            f"{cfg.path}: datasets.{dataset}.num_requests: {len(lengths[0])} requests never fill KV memory "
            f"under {policy}"
            + (f" b={block_size}" if block_size else "")
            + f" ({load}), so nothing is measured; "
            "allowed: more requests"
        )
    row: dict[str, Any] = {"dataset": dataset, "policy": policy, "block_size": block_size}
    row.update({k: float(res[k]) for k in ("token_states", "reserved", "internal", "external", "other")})
    row["mean_batched_requests"] = float(res["mean_batched_requests"])
    row.update(paper.paper_values(dataset, policy, block_size))
    row.update(
        load=load,
        queue_blocked_fraction=float(res["queue_blocked_fraction"]),
        preemptions=int(res["preemptions"]),
        completed_requests=int(res["completed_requests"]),
        iterations=int(res["iterations"]),
        simulated_seconds=float(res["simulated_seconds"]),
    )
    return row


def dataset_requests(cfg: StudyConfig, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The request lengths of one dataset, the same for every policy (seeded by config seed and name)."""
    salt = sorted(DATASETS).index(dataset)
    rng = np.random.default_rng([cfg.seed, salt])
    return dataset_lengths(dataset, cfg.datasets[dataset]["num_requests"], rng, int(cfg.setup["max_seq_len"]))


def run_study(cfg: StudyConfig, progress: Any = None, timing_run: Path | None = None) -> dict[str, Any]:
    """Every planned point; `progress(description)` is called before each (for a progress bar).
    timing_run: a run directory whose GPU decode rows time the iterations (fragmentation_timing);
    without one, or when it has none, the roofline of the setup, and the JSON says which and why."""
    from attnbench.memory import iteration_time as ft

    reason = ft.no_measured_timing(timing_run)
    timing = None
    if reason is None and timing_run is not None:  # no reason implies a run directory
        timing = ft.measured_iteration(timing_run, cfg.setup)
    iteration_time = timing.source if timing is not None else {
        "kind": "roofline", "reason": reason, "hbm_gbps": cfg.setup["hbm_gbps"],
        "peak_tflops": cfg.setup["peak_tflops"]}
    lengths = {ds: dataset_requests(cfg, ds) for ds in cfg.datasets}
    by_load: dict[str, list[dict[str, Any]]] = {load: [] for load in cfg.loads}
    points = plan(cfg)
    for (load, *_), row in zip(points, _run_points(cfg, points, lengths, timing, progress), strict=True):
        by_load[load].append(row)
    serving = cfg.serving_setup()
    setup = {
        "model": cfg.setup["model"],
        "gpu": cfg.setup["gpu"],
        "kv_capacity_tokens": serving.kv_capacity_tokens,
        "bytes_per_token": serving.bytes_per_token,
        **{k: cfg.setup[k] for k in SETUP_NUMBERS},
        "loads": list(cfg.loads),
        "paged_block_size": cfg.paged_block_size,
        "block_sizes": list(cfg.block_sizes),
        "warmup_fraction": cfg.warmup_fraction,
        "seed": cfg.seed,
        "iteration_time": iteration_time,
        "datasets": {
            ds: {
                **spec,
                "sampled_mean_input": float(lengths[ds][0].mean()),
                "sampled_mean_output": float(lengths[ds][1].mean()),
                "published_mean_input": paper.FIGURE11_MEANS[ds][0],
                "published_mean_output": paper.FIGURE11_MEANS[ds][1],
                "model_mean_input": expected_means(ds)[0],
                "model_mean_output": expected_means(ds)[1],
                "sigma_input_assumed": DATASETS[ds].sigma_input,
                "sigma_output_assumed": DATASETS[ds].sigma_output,
            }
            for ds, spec in cfg.datasets.items()
        },
    }
    primary = cfg.loads[0]
    window = None
    if cfg.window is not None:
        from attnbench.memory.window import study_section

        window = study_section(lengths, cfg.paged_block_size, cfg.window, serving.kv_capacity_tokens,
                               serving.bytes_per_token)
    return {
        "config_name": cfg.name,
        "config_path": cfg.path,
        "setup": setup,
        "rows": by_load[primary],
        "rows_by_load": {load: rows for load, rows in by_load.items() if load != primary},
        "paper": {
            "citation": paper.CITATION,
            "figure2": paper.FIGURE2,
            "figure2_dataset": paper.FIGURE2_DATASET,
            "figure13": paper.FIGURE13,
            "figure13_rates": paper.FIGURE13_RATES,
            "table1_13b": paper.TABLE1_13B,
            "figure18b": paper.FIGURE18B_TEXT,
        },
        "notes": study_notes(cfg, by_load, iteration_time),
        "window": window,
    }


# Below this many points the workers' start (a fresh interpreter each, ~1 s) costs more than the
# points: the demo's 12 take 0.6 s in one process, the paper setup's 48 take 27 s (2 CPU cores).
PARALLEL_MIN_POINTS = 24


def _run_points(cfg: StudyConfig, points: list[tuple[str, str, str, int | None]],
                lengths: dict[str, tuple[np.ndarray, np.ndarray]], timing: Any,
                progress: Any) -> list[dict[str, Any]]:
    """Every point's row, in plan order. The points are independent simulations (each seeded by the
    config), so on a machine with cores to spare they run in worker processes and the rows are the
    same as one process's."""
    def label(p: tuple[str, str, str, int | None]) -> str:
        return f"{p[0]} {p[1]} {p[2]}" + (f" b={p[3]}" if p[3] else "")

    workers = min(len(points), os.cpu_count() or 1)
    if workers < 2 or len(points) < PARALLEL_MIN_POINTS:
        rows = []
        for p in points:
            if progress is not None:
                progress(label(p))
            rows.append(run_point(cfg, *p, lengths[p[1]], timing=timing))
        return rows
    # spawn, not fork: the sweep's process may hold threads (telemetry, the console) whose locks a
    # forked child would inherit held
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_point, cfg, *p, lengths[p[1]], None, timing) for p in points]
        rows = []
        for p, fut in zip(points, futures, strict=True):
            rows.append(fut.result())  # a point's ConfigError is raised here, as in one process
            if progress is not None:
                progress(label(p))
        return rows


def study_notes(cfg: StudyConfig, by_load: dict[str, list[dict[str, Any]]],
                iteration_time: dict[str, Any] | None = None) -> list[str]:
    from attnbench.memory.iteration_time import describe

    iteration_time = iteration_time or {"kind": "roofline", "reason": "no run directory given",
                                        "hbm_gbps": cfg.setup["hbm_gbps"],
                                        "peak_tflops": cfg.setup["peak_tflops"]}
    notes = [
        "Fractions are of the whole KV capacity, time-averaged over the measured window (after the warm-up "
        "admissions, until the last request is admitted); token_states + reserved + internal + external + "
        "other = 1, free memory included: as 'external' when the next waiting request is refused although "
        "enough memory is free in total, else as 'other'. Buddy rounding of a contiguous reservation counts "
        "as external (the paper's Orca (Oracle) has no internal-fragmentation bar).",
        "The paper prints 'external fragmentation & others' as one bar: compare it with external + other.",
        "Figure 2's caption names the §6.2 experiment but not the trace; its Orca (Max) numbers fit only "
        "ShareGPT, so the paper's Figure 2 values are attached to the ShareGPT rows.",
        "Length spreads are assumptions (the paper publishes means and histograms): log-normal, sigma "
        f"input/output sharegpt {DATASETS['sharegpt'].sigma_input}/{DATASETS['sharegpt'].sigma_output}, "
        f"alpaca {DATASETS['alpaca'].sigma_input}/{DATASETS['alpaca'].sigma_output}; means are exact.",
        "Paged preemption is vLLM's recompute policy (latest arrival first); there is no free-block "
        "watermark and no cap on batched requests or tokens, which vLLM's scheduler has.",
    ]
    notes.append(describe(iteration_time))
    if "paper-rate" in by_load:
        server = ("a server timed from this run's kernels on " + str(iteration_time.get("gpu"))
                  if iteration_time.get("kind") == "measured" else "a roofline-speed server")
        notes.append(
            f"paper-rate rows: Poisson arrivals at the paper's Fig. 13 rates on {server}, with the paper's "
            f"KV capacity. A server faster than the paper's ({cfg.setup['gpu']}) is less loaded at the same "
            "rate: its batches are smaller and policies with room to spare show free memory as 'other'."
        )
        notes.append(implied_iteration_note(cfg))
    return notes


def implied_iteration_note(cfg: StudyConfig) -> str:
    """What the paper's Fig. 13 batches imply about its server's speed, by Little's law: running
    requests = arrival rate x time running, time running = output tokens x iteration time, so the
    iteration time = batch / (rate x mean output tokens)."""
    parts = []
    for ds, spec in cfg.datasets.items():
        batch = paper.FIGURE13.get(ds, {}).get("paged")
        if batch:
            ms = batch / (spec["request_rate"] * paper.FIGURE11_MEANS[ds][1]) * 1e3
            parts.append(f"{ds} {ms:.0f} ms ({batch} requests at {spec['request_rate']:g} req/s, "
                         f"{paper.FIGURE11_MEANS[ds][1]} output tokens)")
    return ("The paper's paged batches at its rates imply, by Little's law (iteration time = batch / (rate x "
            "mean output tokens)), an iteration time of about " + "; ".join(parts) + " on its server; a "
            "server with shorter iterations batches proportionally fewer requests at the same rate.")


def write_json(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fragmentation.json"
    path.write_text(json.dumps(result, indent=2))
    return path
