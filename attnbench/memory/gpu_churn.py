"""The study's churn on a real GPU: per-request contiguous KV tensors through PyTorch's caching allocator.

For each contiguous policy the simulation (saturated load) records its allocator calls in order; here
each admitted request becomes one torch.empty of its reserved bytes and each completion deletes it,
under a memory cap equal to the KV capacity plus a little headroom (the A100-40GB setup's 12 GiB).
After every call torch.cuda.memory_stats() is read: reserved (segments held from CUDA) vs allocated
(bytes in live tensors) and inactive split bytes (free pieces of split segments, the caching
allocator's own fragmentation). The paged policy needs one tensor for the whole pool, allocated once:
reserved equals allocated for its whole life. Means are over allocator calls, not time.
A request the allocator cannot serve under the cap is counted as an OOM and dropped.
"""

from __future__ import annotations

import os
from typing import Any

from attnbench.memory.contiguous import CONTIGUOUS_POLICIES
from attnbench.memory.serving_sim import simulate
from attnbench.memory.study import dataset_requests

GIB = 2**30
HEADROOM_BYTES = 256 * 2**20  # for the allocator's 2 MiB rounding of each request


def no_gpu_reason() -> str | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False); run it on a GPU machine"
    return None


def _stats(torch) -> tuple[int, int, int]:
    st = torch.cuda.memory_stats()
    return (
        st.get("reserved_bytes.all.current", 0),
        st.get("allocated_bytes.all.current", 0),
        st.get("inactive_split_bytes.all.current", 0),
    )


def replay(
    trace: list[tuple[str, int, int]], bytes_per_token: int, cap_bytes: int, policy: str
) -> dict[str, Any]:
    import torch

    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    total = torch.cuda.get_device_properties(0).total_memory
    base_reserved = torch.cuda.memory_reserved()
    torch.cuda.set_per_process_memory_fraction(min(1.0, (cap_bytes + HEADROOM_BYTES + base_reserved) / total))
    live: dict[int, Any] = {}
    sums = [0, 0, 0]
    peaks = [0, 0, 0]
    ooms = calls = 0
    start = torch.cuda.memory_stats()
    try:
        for kind, rid, slots in trace:
            if kind == "alloc":
                try:
                    live[rid] = torch.empty(slots * bytes_per_token, dtype=torch.uint8, device="cuda")
                except torch.OutOfMemoryError:
                    ooms += 1
                    continue
            elif rid in live:
                del live[rid]
            else:
                continue
            calls += 1
            for i, v in enumerate(_stats(torch)):
                sums[i] += v
                peaks[i] = max(peaks[i], v)
        end = torch.cuda.memory_stats()
    finally:
        live.clear()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0)
    n = max(calls, 1)
    return {
        "policy": policy,
        "allocator_calls": calls,
        "mean_reserved_gib": sums[0] / n / GIB,
        "mean_allocated_gib": sums[1] / n / GIB,
        "mean_inactive_split_gib": sums[2] / n / GIB,
        "peak_reserved_gib": peaks[0] / GIB,
        "peak_allocated_gib": peaks[1] / GIB,
        "peak_inactive_split_gib": peaks[2] / GIB,
        "num_alloc_retries": end.get("num_alloc_retries", 0) - start.get("num_alloc_retries", 0),
        "num_ooms": ooms,
    }


def paged_pool(cap_bytes: int) -> dict[str, Any]:
    import torch

    torch.cuda.empty_cache()
    pool = torch.empty(cap_bytes, dtype=torch.uint8, device="cuda")
    reserved, allocated, inactive = _stats(torch)
    del pool
    torch.cuda.empty_cache()
    return {
        "policy": "paged (one pool)",
        "allocator_calls": 1,
        "mean_reserved_gib": reserved / GIB,
        "mean_allocated_gib": allocated / GIB,
        "mean_inactive_split_gib": inactive / GIB,
        "peak_reserved_gib": reserved / GIB,
        "peak_allocated_gib": allocated / GIB,
        "peak_inactive_split_gib": inactive / GIB,
        "num_alloc_retries": 0,
        "num_ooms": 0,
    }


def allocator_churn(cfg, dataset: str = "sharegpt", progress: Any = None) -> dict[str, Any]:
    """Replay each contiguous policy's allocation trace on the GPU, plus the paged pool; skip without CUDA."""
    reason = no_gpu_reason()
    if reason:
        return {"skipped": reason}
    import torch  # deferred: the simulated study (no --gpu) never pays for torch

    if dataset not in cfg.datasets:
        dataset = next(iter(cfg.datasets))
    setup = cfg.serving_setup()
    cap_bytes = setup.kv_capacity_tokens * setup.bytes_per_token
    inputs, outputs = dataset_requests(cfg, dataset)
    rows, events = [], 0
    for policy in CONTIGUOUS_POLICIES:
        if progress is not None:
            progress(f"gpu churn {dataset} {policy}")
        trace: list[tuple[str, int, int]] = []
        simulate(policy, inputs, outputs, setup, None, seed=cfg.seed, warmup_fraction=0.0, trace=trace)
        events = max(events, len(trace))
        rows.append(replay(trace, setup.bytes_per_token, cap_bytes, policy))
    rows.append(paged_pool(cap_bytes))
    return {
        "device": torch.cuda.get_device_name(0),
        "dataset": dataset,
        "events": events,
        "cap_bytes": cap_bytes,
        "headroom_bytes": HEADROOM_BYTES,
        "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF", ""),
        "torch": torch.__version__,
        "rows": rows,
    }
