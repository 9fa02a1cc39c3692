"""A small autotuner shared by the Triton kernels: time a handful of launch configs once per shape
class and remember the fastest, by the device's own time (kernels/triton/device_timer.py says why
not triton's do_bench).

Why not `triton.autotune`: the flash kernel builds TMA descriptors whose block shape depends on the
config, the launch grid depends on the config, and a config that does not fit the chip (shared
memory, registers) must be skipped rather than abort the sweep. Doing it here keeps all three in one
place and gives the backend the chosen config to record. On a CPU (interpreter) nothing is timed:
the first config that fits the shape is used.

Stable picks: candidates are listed in order of preference, and the earliest one within TIE_MARGIN
of the fastest wins, so two tiles that differ by less than the timing noise do not swap between
processes (a swap moved a causal prefill point by 13% between two sweeps on one H100). Picks are
also remembered on disk per GPU, Triton version and kernel source (TUNING_CACHE_ENV names the file,
"off" disables it), so later runs on the same machine launch the same tiles without retuning.

`Tuner.origin` says which source answered each key: timed here, the machine's memo, or the first
fit on a CPU; the backends record it as the row's `tuned_by`, so a row says whether its tile was
chosen in that run. The memo is keyed by the kernel modules' bytes, not the tuner's or the
compile check's (kernel_sources_digest): editing those does not make every machine retune.

Compiling, not timing, is what tuning costs: each candidate is a separate kernel build of 1-3 s
and timing it takes milliseconds. Given a `warm` callable (a candidate's compile without a launch),
the tuner builds every candidate at once through Triton's asynchronous compile mode on a thread
pool (the compiler's passes and ptxas release the GIL), then times them one by one as before. On an
H200 with 16 CPUs, four shape classes tuned in 8.6 s instead of 21.6 s, with the same picks
(scripts/gpu_tune_time_probe.py, fresh processes and compile caches; kernels/notes/triton.md).
PARALLEL_COMPILE_ENV=0 builds them in turn.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .device_timer import held_device_ms

TIE_MARGIN = 0.03  # a candidate within 3% of the fastest median counts as a tie
TUNING_CACHE_ENV = "ATTNBENCH_TRITON_TUNING_CACHE"
PARALLEL_COMPILE_ENV = "ATTNBENCH_TRITON_PARALLEL_COMPILE"
# Files that do not change what a launch config does on the GPU: the tuner itself, the ahead-of-time
# compile check, the timer. Everything else (the kernels, their candidates and plans) keys the picks.
_NOT_KERNEL_SOURCES = frozenset({"tuning.py", "aot.py", "device_timer.py"})


def kernel_sources_digest(folder: Path = Path(__file__).parent) -> str:
    """sha256 (16 hex digits) of the kernel modules' bytes, in name order."""
    files = [p for p in sorted(folder.glob("*.py")) if p.name not in _NOT_KERNEL_SOURCES]
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


_SOURCES_DIGEST = kernel_sources_digest()


@dataclass(frozen=True)
class LaunchConfig:
    """Compile-time tile sizes (constexpr kwargs) plus the two launch options Triton takes."""

    meta: tuple[tuple[str, int], ...]
    num_warps: int = 4
    num_stages: int = 2

    @staticmethod
    def of(num_warps: int = 4, num_stages: int = 2, **meta: int) -> LaunchConfig:
        return LaunchConfig(tuple(sorted(meta.items())), num_warps, num_stages)

    @property
    def kwargs(self) -> dict[str, int]:
        return dict(self.meta)

    def __getitem__(self, name: str) -> int:
        return self.kwargs[name]

    def describe(self) -> str:
        tiles = " ".join(f"{k.lower()}{v}" for k, v in self.meta)
        return f"{tiles} w{self.num_warps} s{self.num_stages}"


@dataclass
class Tuner:
    """Per-key memo of the fastest config; `timings` keeps what was measured (ms, median)."""

    name: str
    best: dict[Hashable, LaunchConfig] = field(default_factory=dict)
    timings: dict[Hashable, list[tuple[str, float]]] = field(default_factory=dict)
    # which source answered each key: "timed" (candidates timed here), "memo" (this machine's file)
    # or "first fit" (no GPU: nothing is timed)
    origin: dict[Hashable, str] = field(default_factory=dict)
    last_origin: str = ""  # origin of the key the latest pick() answered (the runners read it after)

    def pick(
        self,
        key: Hashable,
        candidates: Sequence[LaunchConfig],
        launch: Callable[[LaunchConfig], Any],
        on_gpu: bool,
        warm: Callable[[LaunchConfig], Any] | None = None,
    ) -> LaunchConfig:
        """Return the cached best config for key, timing every candidate the first time on a GPU.

        warm(cfg): compile cfg's kernels without launching them (Triton's `warmup`); when given, every
        candidate is built in parallel before the timing (precompile)."""
        self.last_origin = ""
        if key in self.best:
            self.last_origin = self.origin.get(key, "")
            return self.best[key]
        if not candidates:
            raise ValueError(f"{self.name}: no launch config fits key {key}")
        if not on_gpu:
            self.best[key], self.origin[key] = candidates[0], "first fit"
            self.last_origin = "first fit"
            return candidates[0]
        cached = _disk_lookup(self.name, key, candidates)
        if cached is not None:
            self.best[key], self.origin[key] = cached, "memo"
            self.last_origin = "memo"
            return cached
        if warm is not None:
            precompile(candidates, warm)
        results: list[tuple[str, float]] = []
        timed: list[tuple[LaunchConfig, float]] = []
        errors: list[str] = []
        for cfg in candidates:
            try:
                launch(cfg)  # compile + first run; raises OutOfResources when the tile does not fit
                ms = held_device_ms(lambda cfg=cfg: launch(cfg))
            except Exception as exc:  # a config that cannot run on this chip is skipped, not fatal
                errors.append(f"{cfg.describe()}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            results.append((cfg.describe(), float(ms)))
            timed.append((cfg, float(ms)))
        if not timed:
            raise RuntimeError(f"{self.name}: every launch config failed for {key}: " + "; ".join(errors))
        best_cfg = stable_choice(timed)
        self.best[key], self.origin[key] = best_cfg, "timed"
        self.last_origin = "timed"
        self.timings[key] = results
        _disk_store(self.name, key, best_cfg)
        return best_cfg



def precompile(candidates: Sequence[LaunchConfig], warm: Callable[[LaunchConfig], Any]) -> int:
    """Build every candidate's kernels concurrently; returns the number of build threads (0: none ran).

    Errors are left for the timing loop: a candidate that failed to build here is built again there,
    in turn, and skipped with its error as before."""
    if os.environ.get(PARALLEL_COMPILE_ENV, "1") == "0" or len(candidates) < 2:
        return 0
    try:
        from triton.runtime._async_compile import AsyncCompileMode  # private; Triton 3.6 has it
    except ImportError:
        return 0
    workers = min(len(candidates), os.cpu_count() or 1)
    if workers < 2:
        return 0
    # AsyncCompileMode's exit waits for (and installs) every build before the pool shuts down.
    with ThreadPoolExecutor(workers) as pool, AsyncCompileMode(pool, ignore_errors=True):
        for cfg in candidates:
            try:
                warm(cfg)
            except Exception:  # noqa: BLE001 - the timing loop reports it
                continue
    return workers


def stable_choice(timed: Sequence[tuple[LaunchConfig, float]], margin: float = TIE_MARGIN) -> LaunchConfig:
    """The earliest candidate (in preference order) whose median is within `margin` of the fastest."""
    fastest = min(ms for _, ms in timed)
    return next(cfg for cfg, ms in timed if ms <= fastest * (1 + margin))


# ---- the on-disk memo ---------------------------------------------------------------------------


def _cache_path() -> Path | None:
    value = os.environ.get(TUNING_CACHE_ENV, "")
    if value.lower() == "off":
        return None
    if value:
        return Path(value)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnbench" / "triton-tuning.json"


def _disk_key(name: str, key: Hashable) -> str:
    import torch
    import triton

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return json.dumps([gpu, triton.__version__, _SOURCES_DIGEST, name, repr(key)])


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _disk_lookup(name: str, key: Hashable, candidates: Sequence[LaunchConfig]) -> LaunchConfig | None:
    """The pick stored under key in this machine's memo, if it is still one of the candidates."""
    path = _cache_path()
    if path is None:
        return None
    entry = _read_cache(path).get(_disk_key(name, key))
    if entry is None:
        return None
    want = LaunchConfig(tuple((k, int(v)) for k, v in entry["meta"]), entry["num_warps"], entry["num_stages"])
    return want if want in candidates else None


def _disk_store(name: str, key: Hashable, cfg: LaunchConfig) -> None:
    path = _cache_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        memo = _read_cache(path)
        memo[_disk_key(name, key)] = {"meta": list(cfg.meta), "num_warps": cfg.num_warps,
                                      "num_stages": cfg.num_stages}
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(memo, indent=1))
        os.replace(tmp, path)  # atomic: concurrent workers never read a torn file
    except OSError:
        pass  # a read-only home only costs a retune next time


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def length_bucket(n: int) -> int:
    """Bucket a max sequence length for tuning keys: powers of two, floored at 64."""
    return max(64, next_pow2(n))
