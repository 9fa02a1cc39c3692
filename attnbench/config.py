"""Sweep configs: YAML (safe-loaded) into frozen dataclasses, validated before anything runs.

Every error is a ConfigError whose message names the file, the key, the bad value and what is
allowed; the CLI prints it on one line and exits 2.

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
        backends: [...]             # optional: only these backends for this workload
    exclude:                        # points to leave out; keys match row columns, *_gt / *_lt compare
      - {backend: naive, max_kv_gt: 8192}
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from attnbench.case import DTYPES, KV_LAYOUTS, PHASES, Case
from attnbench.workloads import LengthMix, MixError, draw_lengths, parse_mix

DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A config that cannot be used; str() is the one-line message for the user."""


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
    input_copies: int = 4
    input_copies_max_mb: float = 256.0
    point_timeout_s: float = 180.0  # a point running longer is killed and recorded failed

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
class Workload:
    name: str
    phase: str
    batch: tuple[int, ...]
    lengths: tuple[LengthMix, ...]
    q_heads: tuple[int, ...]
    kv_heads: tuple[int, ...]
    head_dim: tuple[int, ...]
    dtype: tuple[str, ...]
    causal: tuple[bool, ...] = (True,)
    block_size: tuple[int, ...] = ()
    block_order: tuple[str, ...] = ("shuffled",)
    chunk: tuple[int, ...] = (128,)
    prefix_len: tuple[int, ...] = (0,)
    window: tuple[int | None, ...] = (None,)
    softcap: tuple[float | None, ...] = (None,)
    alibi: tuple[bool, ...] = (False,)
    backends: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


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
    "name", "description", "device", "seed", "backends", "timing", "workloads", "exclude", "fragmentation"
}
# Old key names still read, so committed configs (and the case ids of baselines) stay as they were.
# `kv_layout` meant block order here, while FlashInfer and others use it for the NHD/HND memory layout.
WORKLOAD_ALIASES = {"kv_layout": "block_order"}
_WORKLOAD_KEYS = {f.name for f in fields(Workload)} | {"lengths"} | set(WORKLOAD_ALIASES)
_TIMING_KEYS = {f.name: f.type for f in fields(TimingPolicy)}


def load_config(path: str | Path, known_backends: list[str] | None = None) -> SweepConfig:
    from attnbench.runio import read_text

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = read_text(path, "config file")  # a directory, unreadable, not UTF-8: one line
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return parse_config(text, str(path), known_backends)


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
    ctx = _Ctx(source)
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
    workloads = tuple(_parse_workload(ctx, w, i, known_backends) for i, w in enumerate(wl_raw))
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
        source=source,
        text=text,
    )


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, value: Any, allowed: str) -> None:
        raise ConfigError(f"{self.source}: {key}: bad value {value!r}; expected {allowed}")

    def no_unknown(self, d: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in d:
            if key not in allowed:
                self.fail(
                    f"{prefix}{key}",
                    d[key],
                    f"no key {key!r} here; allowed keys: {', '.join(sorted(allowed))}",
                )

    def string(self, d: dict[str, Any], key: str, prefix: str) -> str:
        value = d.get(key)
        if not isinstance(value, str) or not value.strip():
            self.fail(prefix + key, value, "a non-empty string")
        return value

    def integer(self, d: dict[str, Any], key: str, prefix: str, default: int, minimum: int) -> int:
        value = d.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            self.fail(prefix + key, value, f"an integer >= {minimum}")
        return value

    def str_list(self, d: dict[str, Any], key: str, prefix: str, default: list[str]) -> list[str]:
        value = d.get(key, default)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(prefix + key, value, "a list of strings")
        return value

    def axis(
        self,
        d: dict[str, Any],
        key: str,
        prefix: str,
        kind: type,
        default: Any,
        allowed: tuple[Any, ...] | None = None,
        minimum: int | None = None,
    ) -> tuple[Any, ...]:
        value = d.get(key, default)
        if value is None:
            self.fail(prefix + key, value, "a value or a list of values")
        values = value if isinstance(value, list) else [value]
        if not values and default != []:  # only axes whose default is empty may be empty
            self.fail(prefix + key, value, "a non-empty list")
        for v in values:
            ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
            if not ok:
                self.fail(prefix + key, v, f"{kind.__name__} values")
            if allowed is not None and v not in allowed:
                self.fail(prefix + key, v, f"one of {', '.join(map(str, allowed))}")
            if minimum is not None and v < minimum:
                self.fail(prefix + key, v, f"values >= {minimum}")
        return tuple(values)

    def optional_axis(self, d: dict[str, Any], key: str, prefix: str, kind: type) -> tuple[Any, ...]:
        """A pattern axis: values of `kind` (int >= 0 for window, float > 0 for softcap) or
        None / "none" for off; default [none]."""
        value = d.get(key, [None])
        values = value if isinstance(value, list) else [value]
        if not values:
            self.fail(prefix + key, value, "a non-empty list")
        out: list[Any] = []
        want = "a token count >= 0" if kind is int else "a number > 0"
        for v in values:
            if v is None or (isinstance(v, str) and v.strip().lower() == "none"):
                out.append(None)
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float) if kind is float else int):
                self.fail(prefix + key, v, f"{want} or none")
            if (kind is int and v < 0) or (kind is float and not (math.isfinite(v) and v > 0)):
                self.fail(prefix + key, v, f"{want} or none")
            out.append(float(v) if kind is float else v)
        return tuple(out)


def _parse_timing(ctx: _Ctx, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        ctx.fail("timing", raw, "a mapping of timing settings")
    ctx.no_unknown(raw, set(_TIMING_KEYS), "timing.")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _TIMING_KEYS[key]
        if kind == "str":
            if value not in TIMING_METHODS:
                ctx.fail(f"timing.{key}", value, " or ".join(TIMING_METHODS))
        elif kind == "bool":
            if not isinstance(value, bool):
                ctx.fail(f"timing.{key}", value, "true or false")
        elif kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                ctx.fail(f"timing.{key}", value, "an integer >= 1")
        elif (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
              or value <= 0):
            ctx.fail(f"timing.{key}", value, "a finite number > 0")
        out[key] = value
    if out.get("min_samples", 1) > out.get("max_samples", 10**9):
        ctx.fail("timing.min_samples", out["min_samples"], "at most timing.max_samples")
    return out


def validate_timing(values: dict[str, Any], source: str) -> dict[str, Any]:
    """Timing settings checked as a config's `timing:` mapping is (ConfigError naming the key)."""
    return _parse_timing(_Ctx(source), values)


def _parse_workload(ctx: _Ctx, raw: Any, index: int, known_backends: list[str] | None) -> Workload:
    if not isinstance(raw, dict):
        ctx.fail(f"workloads[{index}]", raw, "a mapping")
    name = raw.get("name", f"w{index}")
    p = f"workloads[{name}]."
    ctx.no_unknown(raw, _WORKLOAD_KEYS, p)
    for old, new in WORKLOAD_ALIASES.items():
        if old in raw:
            if new in raw:
                ctx.fail(p + old, raw[old], f"only one of {new} and its deprecated alias {old}")
            raw = {**raw, new: raw[old]}
    phase = raw.get("phase")
    if phase not in PHASES:
        ctx.fail(p + "phase", phase, f"one of {', '.join(PHASES)}")
    lengths_raw = raw.get("lengths")
    if lengths_raw is None:
        ctx.fail(p + "lengths", None, "a length mix or a list of them (e.g. 'fixed:1024', 'sharegpt')")
    if lengths_raw == []:
        ctx.fail(p + "lengths", lengths_raw, "at least one length mix (e.g. 'fixed:1024', 'sharegpt')")
    mixes = []
    for spec in lengths_raw if isinstance(lengths_raw, list) else [lengths_raw]:
        try:
            mixes.append(parse_mix(spec))
        except MixError as err:
            raise ConfigError(f"{ctx.source}: {p}lengths: {err}") from None
    backends = tuple(ctx.str_list(raw, "backends", p, default=[]))
    if known_backends is not None:
        for b in backends:
            if b not in known_backends:
                ctx.fail(p + "backends", b, f"a known backend: {', '.join(known_backends)}")
    wl = Workload(
        name=str(name),
        phase=phase,
        batch=ctx.axis(raw, "batch", p, int, [1], minimum=1),
        lengths=tuple(mixes),
        q_heads=ctx.axis(raw, "q_heads", p, int, None, minimum=1),
        kv_heads=ctx.axis(raw, "kv_heads", p, int, None, minimum=1),
        head_dim=ctx.axis(raw, "head_dim", p, int, None, minimum=1),
        dtype=ctx.axis(raw, "dtype", p, str, ["bf16"], allowed=DTYPES),
        causal=ctx.axis(raw, "causal", p, bool, [True]),
        block_size=ctx.axis(raw, "block_size", p, int, [], minimum=1),
        block_order=ctx.axis(raw, "block_order", p, str, ["shuffled"], allowed=KV_LAYOUTS),
        chunk=ctx.axis(raw, "chunk", p, int, [128], minimum=1),
        prefix_len=ctx.axis(raw, "prefix_len", p, int, [0], minimum=0),
        window=ctx.optional_axis(raw, "window", p, int),
        softcap=ctx.optional_axis(raw, "softcap", p, float),
        alibi=ctx.axis(raw, "alibi", p, bool, [False]),
        backends=backends,
        tags=tuple(ctx.str_list(raw, "tags", p, default=[])),
    )
    for hq, hkv in itertools.product(wl.q_heads, wl.kv_heads):
        if hkv > hq:
            continue  # combinations with more KV heads than query heads are dropped in expansion
        if hq % hkv:
            ctx.fail(p + "kv_heads", hkv, f"a divisor of every q_heads value (q_heads {hq})")
    if not any(hkv <= hq for hq, hkv in itertools.product(wl.q_heads, wl.kv_heads)):
        ctx.fail(p + "kv_heads", list(wl.kv_heads), "at least one value <= a q_heads value")
    return wl


# ---- expansion ----------------------------------------------------------------------------


def expand_workload(wl: Workload, seed: int) -> list[Case]:
    """The cartesian product of a workload's axes, as cases.

    Each combination gives one contiguous-KV case and, when block sizes are listed, one paged case
    per (block size, kv layout) sharing its lengths (and so its inputs and reference).
    """
    cases: list[Case] = []
    seen: set[Case] = set()  # membership in O(1): a list scan made planning quadratic
    chunks = wl.chunk if wl.phase == "mixed" else (0,)
    for batch, mix, hq, hkv, d, dtype, causal, chunk, prefix, window, softcap, alibi in itertools.product(
        wl.batch, wl.lengths, wl.q_heads, wl.kv_heads, wl.head_dim, wl.dtype, wl.causal, chunks,
        wl.prefix_len, wl.window, wl.softcap, wl.alibi,
    ):
        if hkv > hq:
            continue
        # The shared prefix is part of each context (a sequence shorter than it is lengthened to it),
        # so prefix_len 0 and N give the same shapes and differ only in what the pool shares.
        kv_lens = tuple(max(n, prefix) for n in draw_lengths(mix, batch, seed, wl.phase))
        if wl.phase == "prefill":
            q_lens = kv_lens
        elif wl.phase == "decode":
            q_lens = tuple(1 for _ in kv_lens)
        else:
            q_lens = tuple(min(chunk, n) for n in kv_lens)
        is_causal = causal if wl.phase != "decode" else False  # one query at the end sees everything
        label = mix.label + (f"-chunk{chunk}" if wl.phase == "mixed" else "")
        base = Case(
            workload=wl.name,
            phase=wl.phase,
            q_lens=q_lens,
            kv_lens=kv_lens,
            num_q_heads=hq,
            num_kv_heads=hkv,
            head_dim=d,
            dtype=dtype,
            causal=is_causal,
            seqlen_mix=label,
            seed=seed,
            prefix_len=prefix,
            window=window,
            softcap=softcap,
            alibi=alibi,
            tags=wl.tags,
        )
        if base not in seen:
            seen.add(base)
            cases.append(base)
        for bs, layout in itertools.product(wl.block_size, wl.block_order):
            paged = Case(
                **{
                    **base.to_json(),
                    "q_lens": q_lens,
                    "kv_lens": kv_lens,
                    "tags": wl.tags,
                    "block_size": bs,
                    "kv_layout": layout,
                }
            )
            if paged not in seen:
                seen.add(paged)
                cases.append(paged)
    return cases


def workload_size(wl: Workload) -> int:
    """An upper bound of the cases expand_workload gives, without expanding (duplicates and
    combinations with more KV than query heads counted): to refuse an absurd config at once."""
    heads = sum(1 for hq in wl.q_heads for hkv in wl.kv_heads if hkv <= hq)
    chunks = len(wl.chunk) if wl.phase == "mixed" else 1
    combos = (len(wl.batch) * len(wl.lengths) * heads * len(wl.head_dim) * len(wl.dtype)
              * len(wl.causal) * chunks * len(wl.prefix_len) * len(wl.window) * len(wl.softcap)
              * len(wl.alibi))
    return combos * (1 + len(wl.block_size) * len(wl.block_order))


def excluded(rules: tuple[dict[str, Any], ...], columns: dict[str, Any]) -> bool:
    """Whether a point (its case columns plus backend) matches any exclusion rule."""
    return any(all(_matches(columns, key, want) for key, want in rule.items()) for rule in rules)


def _matches(columns: dict[str, Any], key: str, want: Any) -> bool:
    for suffix, test in (("_gt", lambda a, b: a > b), ("_lt", lambda a, b: a < b)):
        if key.endswith(suffix) and key[: -len(suffix)] in columns:
            value = columns[key[: -len(suffix)]]
            return value is not None and test(value, want)
    if key not in columns:
        return False
    options = want if isinstance(want, list) else [want]
    return columns[key] in options


def validate_exclusions(cfg: SweepConfig, columns: set[str]) -> None:
    for rule in cfg.exclude:
        for key in rule:
            base = key[:-3] if key.endswith(("_gt", "_lt")) else key
            if base not in columns:
                raise ConfigError(
                    f"{cfg.source}: exclude: unknown column {key!r}; allowed: {', '.join(sorted(columns))} "
                    "(numeric ones with _gt/_lt)"
                )
