"""A JSON Schema (draft 2020-12) of sweep configs, built from the code that validates them.

`attnbench config schema` prints it; configs/schema.json is the committed copy that editors (YAML
language servers) read, and a test keeps the two equal. The schema describes the keys, types,
allowed values and minimums that attnbench.config.sweep_config checks; the loader stays the authority on the
rules a schema cannot say (kv_heads dividing q_heads, min_samples <= max_samples, length-mix
parameters).
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from attnbench.case import DTYPES, KV_DTYPES, KV_LAYOUTS, KV_SCALES, PHASES
from attnbench.config import layout_pairs
from attnbench.config.sweep_config import (
    DEVICES,
    TELEMETRY_THREADS,
    TIMING_METHODS,
    WORKLOAD_ALIASES,
    TimingPolicy,
    Workload,
)
from attnbench.workloads import DISTS

# Per workload key: (item schema, minimum or None, required, description). Axis keys take one value
# or a list of values (one case per value).
_WORKLOAD_AXES: dict[str, tuple[dict[str, Any], int | None, bool, str]] = {
    "batch": ({"type": "integer"}, 1, False, "sequences per batch (default 1)"),
    "q_heads": ({"type": "integer"}, 1, True, "query heads"),
    "kv_heads": ({"type": "integer"}, 1, True, "KV heads (GQA/MQA: a divisor of q_heads)"),
    "head_dim": ({"type": "integer"}, 1, True, "head dimension"),
    "dtype": ({"enum": list(DTYPES)}, None, False, "element type (default bf16)"),
    "causal": ({"type": "boolean"}, None, False, "causal mask (decode is never causal; default true)"),
    "block_size": ({"type": "integer"}, 1, False, "KV-cache block size, paged backends only"),
    "block_order": ({"enum": list(KV_LAYOUTS)}, None, False,
                    "order of a sequence's blocks in the paged pool (default shuffled)"),
    "chunk": ({"type": "integer"}, 1, False, "mixed only: new query tokens per sequence (default 128)"),
    "prefix_len": ({"type": "integer"}, 0, False, "leading context tokens all sequences share"),
    "alibi": ({"type": "boolean"}, None, False, "ALiBi biases with the geometric per-head slopes"),
    "kv_dtype": ({"enum": list(KV_DTYPES)}, None, False,
                 "KV-cache storage: auto (= dtype, the default) or fp8_e4m3 with float32 scales"),
    "kv_scale": ({"enum": list(KV_SCALES)}, None, False,
                 "fp8 KV only: one scale per tensor (default) or per KV head"),
}
# Pattern axes whose values may be "none" (off): (item schema, description).
_OPTIONAL_AXES: dict[str, tuple[dict[str, Any], str]] = {
    "window": ({"type": "integer", "minimum": 0},
               "sliding-window left context in tokens; null or 'none' = full attention"),
    "softcap": ({"type": "number", "exclusiveMinimum": 0},
                "logit soft-cap c: scores become c * tanh(s / c); null or 'none' = off"),
}


def _optional_axis(item: dict[str, Any], description: str) -> dict[str, Any]:
    one = {"oneOf": [item, {"enum": ["none", None]}]}
    return {"description": description, "oneOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def _axis(item: dict[str, Any], minimum: int | None, description: str) -> dict[str, Any]:
    one = dict(item, **({"minimum": minimum} if minimum is not None else {}))
    return {"description": description, "oneOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def _strings(description: str) -> dict[str, Any]:
    return {"description": description,
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def _length_mix() -> dict[str, Any]:
    one = {"oneOf": [
        {"type": "string", "pattern": "^(" + "|".join(DISTS) + ")(:.*)?$",
         "description": "e.g. fixed:1024, uniform:64-2048, sharegpt"},
        {"type": "object", "required": ["dist"], "properties": {"dist": {"enum": list(DISTS)}},
         "description": "e.g. {dist: lognormal, mean: 1024, sigma: 0.8, max: 8192}"},
    ]}
    return {"description": "sequence-length mix(es), see attnbench.workloads",
            "oneOf": [one, {"type": "array", "items": one, "minItems": 1}]}


def _timing() -> dict[str, Any]:
    defaults = TimingPolicy()
    props: dict[str, Any] = {}
    for f in fields(TimingPolicy):
        if f.type == "str":
            allowed = TELEMETRY_THREADS if f.name == "telemetry_thread" else TIMING_METHODS
            props[f.name] = {"enum": list(allowed)}
        elif f.type == "bool":
            props[f.name] = {"type": "boolean"}
        elif f.type == "int":
            props[f.name] = {"type": "integer", "minimum": 1}
        elif f.name == "telemetry_period_s":
            props[f.name] = {"type": "number", "minimum": 0}
        else:
            props[f.name] = {"type": "number", "exclusiveMinimum": 0}
        props[f.name]["default"] = getattr(defaults, f.name)
    return {"type": "object", "additionalProperties": False, "properties": props,
            "description": "how each point is timed (attnbench.config.sweep_config.TimingPolicy); "
                           "GPU defaults shown"}


def _workload() -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": {"type": "string", "minLength": 1, "description": "unique within the config"},
        "phase": {"enum": list(PHASES)},
        "lengths": _length_mix(),
        "backends": _strings("only these backends for this workload"),
        "tags": _strings("labels the report's workload classes read"),
    }
    for key, (item, minimum, _required, description) in _WORKLOAD_AXES.items():
        props[key] = _axis(item, minimum, description)
    for key, (item, description) in _OPTIONAL_AXES.items():
        props[key] = _optional_axis(item, description)
    for old, new in WORKLOAD_ALIASES.items():
        props[old] = {**props[new], "deprecated": True, "description": f"deprecated name of {new}"}
    required = ["phase", "lengths"] + [k for k, (_, _, req, _) in _WORKLOAD_AXES.items() if req]
    return {"type": "object", "additionalProperties": False, "required": required, "properties": props}


def workload_keys() -> set[str]:
    """The keys a workload takes according to the dataclass (the schema must list exactly these)."""
    return {f.name for f in fields(Workload)} | set(WORKLOAD_ALIASES)


def schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "attnbench sweep config",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "workloads"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "device": {"enum": list(DEVICES)},
            "seed": {"type": "integer", "minimum": 0},
            "backends": _strings("backends to run (default: every registered backend)"),
            "timing": _timing(),
            "workloads": {"type": "array", "minItems": 1, "items": _workload()},
            "exclude": {"type": "array", "description": "points to leave out; keys match row columns, "
                        "*_gt / *_lt compare", "items": {"type": "object", "minProperties": 1}},
            "fragmentation": {"type": "string", "minLength": 1, "description": "a KV-cache study config "
                              "(attnbench fragmentation), run into the run directory after the points"},
            "layout_pairs": layout_pairs.schema(),
        },
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"
