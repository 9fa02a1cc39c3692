"""A sweep config's `layout_pairs:` key: the paired block-order measurement after the points.

    layout_pairs:
      pairs: 200        # ABBA pairs per round (shuffled and contiguous timed alternately)
      rounds: 6         # fresh allocations of both cases' inputs, the pairs pooled over them
      max_time_s: 10    # per (case pair, backend), all rounds together
      alpha: 0.05       # family-wise: Bonferroni over the (case pair, backend) records

`layout_pairs: {}` (or `true`) takes every default. Why paired: the sweep times a shuffled and a
contiguous point at different moments on separately allocated pools, and on a CPU the drift between
points and the placement of a pool (up to 18% between allocations) decide their ratio more than the
block order does; timed alternately, both sides see the same moment (attnbench.runner.layout_pairs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from attnbench.config.checks import Checker


@dataclass(frozen=True)
class LayoutPairs:
    # 200 pairs a round: 100 AB/BA quads, whose median log ratio a round contributes.
    pairs: int = 200
    # Six rounds: placement moves a CPU pool's ratio by 1-3% between allocations; the rounds' spread
    # bounds that (a round-level interval needs at least two, and widens sharply below five).
    rounds: int = 6
    max_time_s: float = 10.0
    alpha: float = 0.05

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# key -> (kind, minimum, what is allowed), the one table the loader and the JSON schema read
KEYS: dict[str, tuple[str, float, str]] = {
    "pairs": ("int", 2, "an integer >= 2 (ABBA pairs per round)"),
    "rounds": ("int", 1, "an integer >= 1 (fresh allocations of both cases' inputs)"),
    "max_time_s": ("number", 0, "a finite number of seconds > 0 (per case pair and backend)"),
    "alpha": ("number", 0, "a number in (0, 1) (family-wise error rate of the intervals)"),
}


def parse_layout_pairs(ctx: Checker, raw: Any) -> LayoutPairs | None:
    """The key's value as LayoutPairs (None when absent or false); ConfigError naming what is wrong."""
    if raw is None or raw is False:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        ctx.fail("layout_pairs", raw, f"a mapping with keys {', '.join(KEYS)} (or {{}} for the defaults)")
    ctx.no_unknown(raw, set(KEYS), "layout_pairs.")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        kind, minimum, allowed = KEYS[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "int":
            good = number and isinstance(value, int) and value >= minimum
        else:
            good = number and math.isfinite(value) and value > minimum and (key != "alpha" or value < 1)
        if not good:
            ctx.fail(f"layout_pairs.{key}", value, allowed)
        values[key] = value
    return LayoutPairs(**values)


def schema() -> dict[str, Any]:
    """The key's JSON schema (attnbench.config.schema)."""
    defaults = LayoutPairs()
    props: dict[str, Any] = {}
    for key, (kind, minimum, allowed) in KEYS.items():
        if kind == "int":
            props[key] = {"type": "integer", "minimum": int(minimum)}
        else:
            props[key] = {"type": "number", "exclusiveMinimum": minimum}
            if key == "alpha":
                props[key]["exclusiveMaximum"] = 1
        props[key].update(default=getattr(defaults, key), description=allowed)
    mapping = {"type": "object", "additionalProperties": False, "properties": props}
    return {"description": "after the points: each paged backend's shuffled and contiguous cases timed "
            "alternately (ABBA) over fresh allocations, into layout_pairs.json; the claims check's "
            "block-table indirection claim then reads it",
            "oneOf": [mapping, {"type": "boolean"}]}
