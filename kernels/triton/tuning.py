"""A small autotuner shared by the Triton kernels: time a handful of launch configs once per shape
class and remember the fastest.

Why not `triton.autotune`: the flash kernel builds TMA descriptors whose block shape depends on the
config, the launch grid depends on the config, and a config that does not fit the chip (shared
memory, registers) must be skipped rather than abort the sweep. Doing it here keeps all three in one
place and gives the backend the chosen config to record. On a CPU (interpreter) nothing is timed:
the first config that fits the shape is used.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any


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

    def pick(
        self,
        key: Hashable,
        candidates: Sequence[LaunchConfig],
        launch: Callable[[LaunchConfig], Any],
        on_gpu: bool,
    ) -> LaunchConfig:
        """Return the cached best config for key, timing every candidate the first time on a GPU."""
        if key in self.best:
            return self.best[key]
        if not candidates:
            raise ValueError(f"{self.name}: no launch config fits key {key}")
        if not on_gpu:
            self.best[key] = candidates[0]
            return candidates[0]
        import triton.testing

        results: list[tuple[str, float]] = []
        best_cfg, best_ms = None, float("inf")
        errors: list[str] = []
        for cfg in candidates:
            try:
                launch(cfg)  # compile + first run; raises OutOfResources when the tile does not fit
                ms = triton.testing.do_bench(lambda cfg=cfg: launch(cfg), warmup=5, rep=25,
                                             return_mode="median")
            except Exception as exc:  # a config that cannot run on this chip is skipped, not fatal
                errors.append(f"{cfg.describe()}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            results.append((cfg.describe(), float(ms)))
            if ms < best_ms:
                best_cfg, best_ms = cfg, ms
        if best_cfg is None:
            raise RuntimeError(f"{self.name}: every launch config failed for {key}: " + "; ".join(errors))
        self.best[key] = best_cfg
        self.timings[key] = results
        return best_cfg


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def length_bucket(n: int) -> int:
    """Bucket a max sequence length for tuning keys: powers of two, floored at 64."""
    return max(64, next_pow2(n))
