"""The memory study's sliding-window variant: KV blocks a windowed cache holds vs a full one.

A model with a sliding window of w tokens never reads a key more than w positions behind the newest
query, so a paged cache can return the blocks that fall out of the window while a request decodes
(KVCacheManager.free_out_of_window). This replays a batch of requests decoding in lock-step through
the real KV-cache manager twice, once keeping every block and once freeing out-of-window blocks after
each step, and reports the blocks held (peak and time-averaged) and how many such requests a pool of
a given size serves at once. Units: blocks, tokens, requests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from attnbench.kvcache import KVCacheManager


def replay(
    prompts: Sequence[int], outputs: Sequence[int], block_size: int, window: int | None
) -> dict[str, Any]:
    """Decode every request to its end in lock-step; blocks held per step, full (window None) or windowed."""
    need = sum(-(-(p + o) // block_size) for p, o in zip(prompts, outputs, strict=True))
    mgr = KVCacheManager(need + 1, block_size, enable_prefix_caching=False)
    for rid, p in enumerate(prompts):
        mgr.add_request(rid, num_tokens=p)
        if window is not None:
            mgr.free_out_of_window(rid, window)
    held: list[int] = []
    own_peak = [0] * len(prompts)  # the most blocks each request holds at once, after a decode step
    live = set(range(len(prompts)))
    step = 0
    while live:
        for rid in sorted(live):
            mgr.append_tokens(rid, 1)
            if window is not None:
                mgr.free_out_of_window(rid, window)
            own_peak[rid] = max(own_peak[rid], len(mgr.requests[rid].blocks))  # live blocks, not dropped
        held.append(mgr.num_blocks - mgr.num_free_blocks)
        step += 1
        for rid in [r for r in live if step >= outputs[r]]:
            mgr.free(rid)
            live.discard(rid)
    return {"window": window, "peak_blocks": max(held), "mean_blocks": sum(held) / len(held), "steps": step,
            "own_peak_blocks_mean": sum(own_peak) / len(own_peak)}


def window_study(prompts: Sequence[int], outputs: Sequence[int], block_size: int, window: int,
                 pool_blocks: int | None = None) -> dict[str, Any]:
    """Full vs windowed cache on the same requests: blocks held and requests a pool serves at once.

    requests_per_pool: pool_blocks / (peak blocks per request), for each variant; pool_blocks defaults
    to what the full cache needs at its peak (so the full cache serves the batch exactly once).
    """
    full = replay(prompts, outputs, block_size, None)
    windowed = replay(prompts, outputs, block_size, window)
    pool = pool_blocks or full["peak_blocks"]
    n = len(prompts)
    return {
        "block_size": block_size, "window": window, "requests": n,
        "full": full, "windowed": windowed,
        "peak_saved": 1.0 - windowed["peak_blocks"] / full["peak_blocks"],
        "mean_saved": 1.0 - windowed["mean_blocks"] / full["mean_blocks"],
        "requests_per_pool": {"full": pool * n / full["peak_blocks"],
                              "windowed": pool * n / windowed["peak_blocks"]},
    }


def study_section(lengths: Mapping[str, tuple[Iterable[int], Iterable[int]]], block_size: int, window: int,
                  kv_capacity_tokens: int, bytes_per_token: int) -> dict[str, Any]:
    """The study JSON's `window` section: full vs windowed per dataset, on the study's sampled requests.

    Every dataset's requests decode as one lock-step batch (window_study); per request means the
    batch's peak blocks / its requests (finished requests hold none, so it is below a lone request's
    final ceil(tokens / block_size) and counts the window's saving at the batch's peak). The pool is
    the setup's KV capacity in blocks (kv_capacity_tokens // block_size), so requests_per_pool is how
    many requests of that batch's mix fit the paper's KV memory at the batch's peak. Units: blocks
    per request, requests, bytes (blocks x block_size tokens x bytes_per_token).
    """
    pool = kv_capacity_tokens // block_size
    per_dataset: dict[str, dict[str, Any]] = {}
    for ds, (prompts, outputs) in lengths.items():
        prompts_i, outputs_i = [int(x) for x in prompts], [int(x) for x in outputs]
        res = window_study(prompts_i, outputs_i, block_size, window, pool_blocks=pool)
        n = res["requests"]
        saved_blocks = res["full"]["peak_blocks"] - res["windowed"]["peak_blocks"]
        per_dataset[ds] = {
            **res,
            "longest_request_tokens": max(p + o for p, o in zip(prompts_i, outputs_i, strict=True)),
            "peak_blocks_per_request": {"full": res["full"]["peak_blocks"] / n,
                                        "windowed": res["windowed"]["peak_blocks"] / n},
            # each request's own most blocks held, averaged over requests: the pool a request needs
            "own_peak_blocks_per_request": {"full": res["full"]["own_peak_blocks_mean"],
                                            "windowed": res["windowed"]["own_peak_blocks_mean"]},
            "peak_bytes_saved_per_request": saved_blocks / n * block_size * bytes_per_token,
        }
    return {"window": window, "block_size": block_size, "pool_blocks": pool, "datasets": per_dataset}
