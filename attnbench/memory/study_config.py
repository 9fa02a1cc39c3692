"""The memory study's config (configs/fragmentation.yaml): read, checked and frozen as a StudyConfig.

Every problem is a ConfigError of one line naming the file, the key and what is allowed; the command
prints it and exits 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import yaml

from attnbench.memory import paper
from attnbench.memory.contiguous import POLICIES
from attnbench.memory.length_dists import DATASETS
from attnbench.memory.serving_sim import ServingSetup

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


class DatasetSpec(TypedDict):
    """One dataset of the study, as checked: how many requests to sample and the paper-rate load."""

    num_requests: int  # requests drawn from the dataset's length model
    request_rate: float  # req/s: the Poisson arrival rate of the paper-rate load


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the file, the key and what is allowed."""


@dataclass(frozen=True)
class StudyConfig:
    name: str
    path: str
    setup: dict[str, Any]
    loads: tuple[str, ...]
    datasets: dict[str, DatasetSpec]
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
