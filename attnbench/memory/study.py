"""The KV-cache memory study: allocation policies served over the vLLM paper's setup, against its figures.

Pieces: length_dists (request lengths), fragmentation_alloc (Orca policies on a buddy allocator),
fragmentation_sim (the serving loop and the memory categories), kvcache (the paged manager the paged
policy runs on), fragmentation_paper (published numbers), fragmentation_render (Markdown, figures),
fragmentation_gpu (the same churn on PyTorch's caching allocator, on a GPU).
This module reads and checks the config, runs every (load, dataset, policy, block size) point and
assembles fragmentation.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from attnbench.memory import paper
from attnbench.memory.contiguous import CONTIGUOUS_POLICIES, POLICIES
from attnbench.memory.length_dists import DATASETS, dataset_lengths, expected_means
from attnbench.memory.serving_sim import ServingSetup, simulate

LOADS = ("saturated", "paper-rate")
SETUP_NUMBERS = (
    "num_layers",
    "hidden_size",
    "dtype_bytes",
    "kv_memory_gib",
    "max_seq_len",
    "weights_gb",
    "hbm_gbps",
    "peak_tflops",
)
TOP_KEYS = (
    "name",
    "setup",
    "loads",
    "datasets",
    "policies",
    "paged_block_size",
    "block_sizes",
    "warmup_fraction",
    "seed",
    "window",
)


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the file, the key and what is allowed."""


@dataclass(frozen=True)
class StudyConfig:
    name: str
    path: str
    setup: dict[str, Any]
    loads: tuple[str, ...]
    datasets: dict[str, dict[str, float]]
    policies: tuple[str, ...]
    paged_block_size: int
    block_sizes: tuple[int, ...]
    warmup_fraction: float
    seed: int
    window: int | None = None  # sliding window in tokens: the windowed-cache variant; None = full only

    def serving_setup(self) -> ServingSetup:
        s = self.setup
        bpt = 2 * s["num_layers"] * s["hidden_size"] * s["dtype_bytes"]  # K and V, every layer
        return ServingSetup(
            kv_capacity_tokens=int(s["kv_memory_gib"] * 2**30) // bpt,
            bytes_per_token=bpt,
            max_seq_len=int(s["max_seq_len"]),
            weight_bytes=s["weights_gb"] * 1e9,
            hbm_bytes_per_s=s["hbm_gbps"] * 1e9,
            flops_per_s=s["peak_tflops"] * 1e12,
            flops_per_prompt_token=2 * s["weights_gb"] * 1e9 / s["dtype_bytes"],  # 2 FLOPs per parameter
        )


def _fail(path: str, key: str, problem: str, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}; allowed: {allowed}")


def load_config(path: str | Path) -> StudyConfig:
    p = str(path)
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _fail(p, "(top level)", "not a mapping", "a mapping with keys " + ", ".join(TOP_KEYS))
    for key in raw:
        if key not in TOP_KEYS:
            raise _fail(p, str(key), "unknown key", ", ".join(TOP_KEYS))
    setup = dict(raw.get("setup") or {})
    for key in SETUP_NUMBERS:
        val = setup.get(key)
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val <= 0:
            raise _fail(p, f"setup.{key}", f"{val!r} is not a positive number", "a positive number")
    setup.setdefault("model", "OPT-13B")
    setup.setdefault("gpu", "A100-40GB")
    loads = raw.get("loads", ["saturated"])
    if not isinstance(loads, list) or not loads or any(x not in LOADS for x in loads):
        raise _fail(p, "loads", f"{loads!r}", "a non-empty list of " + ", ".join(LOADS))
    datasets = raw.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        raise _fail(p, "datasets", f"{datasets!r}", "a mapping of " + ", ".join(DATASETS) + " to settings")
    for name, spec in datasets.items():
        if name not in DATASETS:
            raise _fail(p, f"datasets.{name}", "unknown dataset", ", ".join(DATASETS))
        spec = spec or {}
        n = spec.get("num_requests")
        if isinstance(n, bool) or not isinstance(n, int) or n < 20:
            raise _fail(p, f"datasets.{name}.num_requests", f"{n!r}", "an integer >= 20")
        rate = spec.get("request_rate")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise _fail(p, f"datasets.{name}.request_rate", f"{rate!r}", "a positive number (req/s)")
        datasets[name] = {"num_requests": n, "request_rate": float(rate)}
    policies = raw.get("policies", list(POLICIES))
    if not isinstance(policies, list) or not policies or any(x not in POLICIES for x in policies):
        raise _fail(p, "policies", f"{policies!r}", "a non-empty list of " + ", ".join(POLICIES))
    bs = raw.get("paged_block_size", paper.FIGURE2_BLOCK_SIZE)
    if isinstance(bs, bool) or not isinstance(bs, int) or not 1 <= bs <= 1024:
        raise _fail(p, "paged_block_size", f"{bs!r}", "an integer from 1 to 1024")
    sizes = raw.get("block_sizes", [])
    if not isinstance(sizes, list) or any(
        isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 1024 for x in sizes
    ):
        raise _fail(p, "block_sizes", f"{sizes!r}", "a list of integers from 1 to 1024")
    warm = raw.get("warmup_fraction", 0.1)
    if isinstance(warm, bool) or not isinstance(warm, (int, float)) or not 0 <= warm < 0.9:
        raise _fail(p, "warmup_fraction", f"{warm!r}", "a number in [0, 0.9)")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _fail(p, "seed", f"{seed!r}", "an integer")
    window = raw.get("window")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise _fail(p, "window", f"{window!r}", "an integer >= 1 (sliding window in tokens) or none")
    return StudyConfig(
        name=str(raw.get("name") or Path(path).stem),
        path=p,
        setup=setup,
        loads=tuple(loads),
        datasets=datasets,
        policies=tuple(policies),
        paged_block_size=bs,
        block_sizes=tuple(sorted(set(sizes))),
        warmup_fraction=float(warm),
        seed=seed,
        window=window,
    )


def plan(cfg: StudyConfig) -> list[tuple[str, str, str, int | None]]:
    """(load, dataset, policy, block size) points; paged runs at paged_block_size and every block size."""
    points = []
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
    row = {"dataset": dataset, "policy": policy, "block_size": block_size}
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
    timing = ft.measured_iteration(timing_run, cfg.setup) if reason is None else None
    iteration_time = timing.source if timing is not None else {
        "kind": "roofline", "reason": reason, "hbm_gbps": cfg.setup["hbm_gbps"],
        "peak_tflops": cfg.setup["peak_tflops"]}
    lengths = {ds: dataset_requests(cfg, ds) for ds in cfg.datasets}
    by_load: dict[str, list[dict[str, Any]]] = {load: [] for load in cfg.loads}
    for load, ds, pol, bs in plan(cfg):
        if progress is not None:
            progress(f"{load} {ds} {pol}" + (f" b={bs}" if bs else ""))
        by_load[load].append(run_point(cfg, load, ds, pol, bs, lengths[ds], timing=timing))
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


def default_out_dir() -> Path:
    return Path("results") / f"fragmentation-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def write_json(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fragmentation.json"
    path.write_text(json.dumps(result, indent=2))
    return path
