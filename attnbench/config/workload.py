"""A sweep config's workload: the axes whose product gives its cases, and their validation.

One mapping of a config's `workloads:` list (see attnbench.config.sweep_config for the YAML) becomes a frozen
Workload whose every axis is a tuple of checked values; attnbench.config.expand turns it into cases.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import Any

from attnbench.case import DTYPES, KV_DTYPES, KV_LAYOUTS, KV_SCALES, PHASES
from attnbench.config.checks import Checker, ConfigError
from attnbench.workloads import LengthMix, MixError, parse_mix


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
    # The KV cache's storage: auto (= dtype) and/or fp8_e4m3, whose scale granularities kv_scale lists
    # (it applies only to the quantised kv_dtype values; auto makes one case whatever kv_scale says).
    kv_dtype: tuple[str, ...] = ("auto",)
    kv_scale: tuple[str, ...] = ("per-tensor",)
    backends: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


# Old key names still read, so committed configs (and the case ids of baselines) stay as they were.
# `kv_layout` meant block order here, while FlashInfer and others use it for the NHD/HND memory layout.
WORKLOAD_ALIASES = {"kv_layout": "block_order"}
_WORKLOAD_KEYS = {f.name for f in fields(Workload)} | {"lengths"} | set(WORKLOAD_ALIASES)


def parse_workload(ctx: Checker, raw: Any, index: int, known_backends: list[str] | None) -> Workload:
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
        kv_dtype=ctx.axis(raw, "kv_dtype", p, str, ["auto"], allowed=KV_DTYPES),
        kv_scale=ctx.axis(raw, "kv_scale", p, str, ["per-tensor"], allowed=KV_SCALES),
        backends=backends,
        tags=tuple(ctx.str_list(raw, "tags", p, default=[])),
    )
    if "kv_scale" in raw and all(k == "auto" for k in wl.kv_dtype):
        ctx.fail(p + "kv_scale", raw["kv_scale"], "no kv_scale without a quantised kv_dtype "
                 f"(add kv_dtype: [{', '.join(KV_DTYPES[1:])}], or leave kv_scale out)")
    for hq, hkv in itertools.product(wl.q_heads, wl.kv_heads):
        if hkv > hq:
            continue  # combinations with more KV heads than query heads are dropped in expansion
        if hq % hkv:
            ctx.fail(p + "kv_heads", hkv, f"a divisor of every q_heads value (q_heads {hq})")
    if not any(hkv <= hq for hq, hkv in itertools.product(wl.q_heads, wl.kv_heads)):
        ctx.fail(p + "kv_heads", list(wl.kv_heads), "at least one value <= a q_heads value")
    return wl


def kv_points(wl: Workload) -> list[tuple[str, str | None]]:
    """The workload's (kv_dtype, kv_scale) pairs: auto once with no scale, each quantised type per scale."""
    return [(kv, None) if kv == "auto" else (kv, sc)
            for kv in wl.kv_dtype for sc in (wl.kv_scale if kv != "auto" else (None,))]
