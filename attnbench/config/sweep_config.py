"""Sweep configs: YAML (safe-loaded) into frozen dataclasses, validated before anything runs.

Every error is a ConfigError whose message names the file, the key, the bad value and what is
allowed; the CLI prints it on one line and exits 2 (attnbench.config.checks).

    name: h100                      # required
    description: ...
    device: auto                    # auto | cpu | cuda
    seed: 0
    backends: [sdpa-flash, ...]     # default: every registered backend
    timing: {warmup_ms: 25, min_samples: 10, ...}   # see TimingPolicy
    workloads:
      - name: prefill-fixed
        phase: prefill              # prefill | decode | mixed
        batch: [1, 4]
        lengths: ["fixed:1024", "sharegpt"]   # see attnbench.workloads
        q_heads: [32]
        kv_heads: [8, 32]
        head_dim: [128]
        dtype: [bf16]
        causal: [true]
        block_size: [16]            # paged backends only (one case per block size)
        block_order: [shuffled]     # paged backends only: order of a sequence's blocks in the pool
                                    # (shuffled | contiguous); `kv_layout` is its deprecated old name
        chunk: [128]                # mixed only: new query tokens per sequence
        prefix_len: [0]             # leading tokens of every context that all sequences share
        window: [none, 4096]        # sliding-window left context in tokens (none = full attention)
        softcap: [none, 50.0]       # logit soft-cap (none = off)
        alibi: [false]              # ALiBi biases with the usual per-head slopes
        kv_dtype: [auto, fp8_e4m3]  # KV-cache storage: auto (= dtype) or fp8 e4m3 with float32 scales
        kv_scale: [per-tensor]      # fp8 only: a scale per tensor or per KV head (per-head)
        backends: [...]             # optional: only these backends for this workload
    exclude:                        # points to leave out; keys match row columns, *_gt / *_lt compare
      - {backend: naive, max_kv_gt: 8192}
    fragmentation: fragmentation-demo.yaml   # a KV-cache study run into the run directory
    layout_pairs: {pairs: 200, rounds: 6}    # paired shuffled/contiguous timing after the points
                                             # (attnbench.config.layout_pairs)

Here: the config as a whole (its top-level keys, `timing:` and TimingPolicy). A workload's axes and
their checks: attnbench.config.workload; its expansion into cases and the `exclude:` rules:
attnbench.config.expand (both re-exported here, where callers have always found them).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from attnbench.config.checks import Checker, ConfigError
from attnbench.config.expand import excluded, expand_workload, validate_exclusions, workload_size
from attnbench.config.layout_pairs import LayoutPairs, parse_layout_pairs
from attnbench.config.workload import WORKLOAD_ALIASES, Workload, parse_workload

__all__ = [
    "DEVICES", "TIMING_METHODS", "WORKLOAD_ALIASES", "ConfigError", "SweepConfig", "TimingPolicy", "Workload",
    "excluded", "expand_workload", "load_config", "parse_config", "validate_exclusions", "validate_timing",
    "workload_size",
]

DEVICES = ("auto", "cpu", "cuda")

TELEMETRY_THREADS = ("always", "compute-bound", "never")
TIMING_METHODS = ("events", "cupti")


@dataclass(frozen=True)
class TimingPolicy:
    """How each point is timed (see attnbench.measure)."""

    warmup_ms: float = 25.0  # run the callable at least this long before sampling
    min_warmup_calls: int = 2
    min_samples: int = 10
    max_samples: int = 500
    # Keep sampling at least this long (NVBench's --min-time): a short point's median then rests on
    # hundreds of samples rather than the first ten that happened to meet the CI target.
    min_time_s: float = 0.1
    target_rel_ci: float = 0.01  # stop when the 95% CI of the median is within +-1% of it
    max_time_s: float = 2.0  # per point, sampling stops here whatever the CI
    l2_flush: bool = True  # cold L2 before each sample (write a buffer >= 2x the L2)
    cuda_graph: bool = False  # time CUDA-graph replays (for launch-bound shapes)
    # Hold the stream with a spin kernel until a sample's launches are queued, so a sample is the
    # device's time for the work and none of the host's (attnbench.stream_hold).
    hold: bool = True
    method: str = "events"  # events: CUDA events around held samples | cupti: the kernels' own durations
    # Compute-bound points: back-to-back calls until the SM clock settles, then a fixed sample count
    # (attnbench.thermal), so where an adaptive stop cuts cannot move the median.
    thermal: bool = True
    thermal_max_s: float = 3.0
    thermal_samples: int = 50
    # GPU samples rotate over this many copies of a point's inputs (each prepared by the backend)
    # when they total at most input_copies_max_mb: a launch-bound kernel's time depends on where its
    # inputs lie (an H200: 1.5-7% between allocations of decode B16 context 512), and one process has
    # one placement, so without rotation the spread between processes' medians is that placement's.
    input_copies: int = 6
    input_copies_max_mb: float = 384.0
    # A short point (running median below short_point_ms after min_samples) is sampled without a pause
    # for at least short_min_time_s of wall time: on an H200 a decode B16 context-512 kernel (~20 us)
    # drifts by 0.6-2.6% within one process over a second (scripts/gpu_spread_probe.py), so a median
    # of the first 0.1 s is that moment's, and five processes' medians spread 2-5%; over a second of
    # samples across the input copies the probe's spread fell to 0.8-2.0%. The cost: ~1 s per such
    # point. Its caps rise to 1.5 x short_min_time_s and short_max_samples; rows keep at most
    # KEPT_SAMPLES of its samples (attnbench.measure), all of them count in the statistics.
    short_point_ms: float = 0.05
    short_min_time_s: float = 1.0
    short_max_samples: int = 50000
    point_timeout_s: float = 180.0  # a point running longer is killed and recorded failed
    # NVML is read every telemetry_period_s on a thread while a point is timed (clocks, power,
    # temperature, throttle reasons into the row); 0 turns it off. telemetry_thread: which points
    # poll on a thread while timed (always | compute-bound | never); the others are read once
    # before and once after their samples.
    telemetry_period_s: float = 0.01
    telemetry_thread: str = "always"

    @classmethod
    def for_device(cls, device: str) -> TimingPolicy:
        if device == "cpu":
            return cls(
                warmup_ms=5.0,
                min_warmup_calls=1,
                min_samples=3,
                max_samples=20,
                target_rel_ci=0.05,
                max_time_s=1.0,
                min_time_s=0.0,
                l2_flush=False,
            )
        return cls()


@dataclass(frozen=True)
class SweepConfig:
    name: str
    workloads: tuple[Workload, ...]
    description: str = ""
    device: str = "auto"
    seed: int = 0
    backends: tuple[str, ...] = ()
    timing: dict[str, Any] = field(default_factory=dict)
    exclude: tuple[dict[str, Any], ...] = ()
    fragmentation: str | None = None  # a KV-cache study config run into the run directory (fragmentation_run)
    layout_pairs: LayoutPairs | None = None  # the paired block-order measurement after the points
    source: str = "<config>"
    text: str = ""

    @property
    def hash(self) -> str:
        """Hash of the config text: runs of the same config compare (the gate checks it)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def timing_policy(self, device: str) -> TimingPolicy:
        base = TimingPolicy.for_device(device)
        values = {f.name: getattr(base, f.name) for f in fields(TimingPolicy)}
        values.update(self.timing)
        return TimingPolicy(**values)


# ---- loading ------------------------------------------------------------------------------

_TOP_KEYS = {
    "name", "description", "device", "seed", "backends", "timing", "workloads", "exclude", "fragmentation",
    "layout_pairs",
}
_TIMING_KEYS = {f.name: f.type for f in fields(TimingPolicy)}


def read_config_text(path: Path) -> str:
    """A config file's text, or ConfigError in one line (missing, a directory, unreadable, not UTF-8)."""
    from attnbench.runio import read_text

    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        return read_text(path, "config file")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def load_config(path: str | Path, known_backends: list[str] | None = None) -> SweepConfig:
    path = Path(path)
    return parse_config(read_config_text(path), str(path), known_backends)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a mapping that repeats a key (plain YAML keeps the last one
    silently: a second `batch:` would replace the first without a word)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:  # an unhashable key: the safe constructor reports it
            continue
        if first != key_node.start_mark.line:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {first + 1})", key_node.start_mark
            )
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_config(text: str, source: str = "<config>", known_backends: list[str] | None = None) -> SweepConfig:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}:{where}: malformed YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: top level must be a mapping with keys {', '.join(sorted(_TOP_KEYS))}")
    ctx = Checker(source)
    ctx.no_unknown(raw, _TOP_KEYS, "")
    name = ctx.string(raw, "name", "")
    device = raw.get("device", "auto")
    if device not in DEVICES:
        ctx.fail("device", device, f"one of {', '.join(DEVICES)}")
    seed = ctx.integer(raw, "seed", "", default=0, minimum=0)
    backends = tuple(ctx.str_list(raw, "backends", "", default=[]))
    if known_backends is not None:
        for b in backends:
            if b not in known_backends:
                ctx.fail("backends", b, f"a known backend: {', '.join(known_backends)}")
    timing = _parse_timing(ctx, raw.get("timing", {}) or {})
    wl_raw = raw.get("workloads")
    if not isinstance(wl_raw, list) or not wl_raw:
        ctx.fail("workloads", wl_raw, "a non-empty list of workload mappings")
    workloads = tuple(parse_workload(ctx, w, i, known_backends) for i, w in enumerate(wl_raw))
    names = [w.name for w in workloads]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        ctx.fail("workloads[].name", sorted(dup)[0], "unique workload names")
    exclude = raw.get("exclude", []) or []
    if not isinstance(exclude, list) or not all(isinstance(e, dict) and e for e in exclude):
        ctx.fail("exclude", exclude, "a list of non-empty mappings of row column -> value")
    fragmentation = raw.get("fragmentation")
    if fragmentation is not None and (not isinstance(fragmentation, str) or not fragmentation.strip()):
        ctx.fail("fragmentation", fragmentation, "the path of a fragmentation study config")
    layout_pairs = parse_layout_pairs(ctx, raw.get("layout_pairs"))
    return SweepConfig(
        name=name,
        workloads=workloads,
        description=str(raw.get("description", "")),
        device=device,
        seed=seed,
        backends=backends,
        timing=timing,
        exclude=tuple(exclude),
        fragmentation=fragmentation,
        layout_pairs=layout_pairs,
        source=source,
        text=text,
    )


def _parse_timing(ctx: Checker, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        ctx.fail("timing", raw, "a mapping of timing settings")
    ctx.no_unknown(raw, set(_TIMING_KEYS), "timing.")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _TIMING_KEYS[key]
        if kind == "str":
            allowed = TELEMETRY_THREADS if key == "telemetry_thread" else TIMING_METHODS
            if value not in allowed:
                ctx.fail(f"timing.{key}", value, " or ".join(allowed))
        elif kind == "bool":
            if not isinstance(value, bool):
                ctx.fail(f"timing.{key}", value, "true or false")
        elif kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                ctx.fail(f"timing.{key}", value, "an integer >= 1")
        elif key == "telemetry_period_s" and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                              or not math.isfinite(value) or value < 0):
            ctx.fail(f"timing.{key}", value, "a finite number >= 0 (0: no NVML telemetry)")
        elif key != "telemetry_period_s" and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                              or not math.isfinite(value) or value <= 0):
            ctx.fail(f"timing.{key}", value, "a finite number > 0")
        out[key] = value
    if out.get("min_samples", 1) > out.get("max_samples", 10**9):
        ctx.fail("timing.min_samples", out["min_samples"], "at most timing.max_samples")
    return out


def validate_timing(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Timing settings checked as a config's `timing:` mapping is (ConfigError naming the key)."""
    return _parse_timing(Checker(source), values)


