"""From a config to its points: each workload's cases (the product of its axes) and the `exclude:` rules."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from attnbench.case import Case
from attnbench.config.checks import ConfigError
from attnbench.config.workload import Workload, kv_points
from attnbench.workloads import draw_lengths

if TYPE_CHECKING:
    from attnbench.config.sweep_config import SweepConfig


def expand_workload(wl: Workload, seed: int) -> list[Case]:
    """The cartesian product of a workload's axes, as cases.

    Each combination gives one contiguous-KV case and, when block sizes are listed, one paged case
    per (block size, kv layout) sharing its lengths (and so its inputs and reference).
    """
    cases: list[Case] = []
    seen: set[Case] = set()  # membership in O(1): a list scan made planning quadratic
    chunks = wl.chunk if wl.phase == "mixed" else (0,)
    # Two products of six axes each, not one of twelve: typeshed types itertools.product per position
    # only up to ten iterables. The product of the two products runs through the same points in the same
    # order as the flat product would.
    shapes = itertools.product(wl.batch, wl.lengths, wl.q_heads, wl.kv_heads, wl.head_dim, wl.dtype)
    variants = itertools.product(wl.causal, chunks, wl.prefix_len, wl.window, wl.softcap, wl.alibi)
    # The KV storage points innermost: a workload without kv_dtype has the one point (auto, None), so its
    # cases come in the order they always did.
    points = itertools.product(shapes, variants, kv_points(wl))
    for (batch, mix, hq, hkv, d, dtype), (causal, chunk, prefix, window, softcap, alibi), kv in points:
        kv_dtype, kv_scale = kv
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
            kv_dtype=kv_dtype,
            kv_scale=kv_scale,
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
              * len(wl.alibi) * len(kv_points(wl)))
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
