"""Peak memory of one call on a CPU, from the allocation events of PyTorch's profiler.

PyTorch's CPU allocator keeps no peak statistics (torch.cuda.max_memory_allocated has no CPU twin),
but while the profiler records memory every allocation and free of a tensor's storage is an event
with its size. Summing the signed sizes in time order gives the bytes allocated above the level
before the call; the largest prefix sum is the call's peak, the same quantity the CUDA branch of
measure.measure_memory reads from the caching allocator. Memory a kernel takes with its own malloc
(outside torch's allocator) is invisible here, which is why attnbench's C++ kernels take their
scratch as tensors.

The profiler is driven through the calls torch.autograd.profiler.profile makes itself (prepare,
enable, disable), not torch.profiler.profile: that wrapper's first use imports torch._dynamo (about
4 s) to record nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch


class CpuMemoryUnavailable(RuntimeError):
    """This torch build's profiler cannot record CPU allocations."""


def _profiler_api() -> tuple[Any, Any, Any, Any]:
    try:
        from torch._C._profiler import _ExperimentalConfig
        from torch.autograd import (
            ProfilerActivity,
            ProfilerConfig,
            ProfilerState,
            _disable_profiler,
            _enable_profiler,
            _prepare_profiler,
        )
    except ImportError as err:
        raise CpuMemoryUnavailable(f"torch {torch.__version__}: profiler API missing ({err})") from None
    # state, record_shapes, profile_memory, with_stack, with_flops, with_modules, experimental config
    config = ProfilerConfig(ProfilerState.KINETO, False, True, False, False, False, _ExperimentalConfig())
    return config, {ProfilerActivity.CPU}, (_prepare_profiler, _enable_profiler), _disable_profiler


def _allocations(nodes: Iterable[Any]) -> list[tuple[int, int, int]]:
    """(start ns, signed bytes, address) of every CPU allocation event in the profiler's event tree."""
    found: list[tuple[int, int, int]] = []
    stack = list(nodes)
    while stack:
        node = stack.pop()
        extra = node.extra_fields
        if type(extra).__name__ == "_ExtraFields_Allocation" and extra.device.type == "cpu":
            found.append((node.start_time_ns, int(extra.alloc_size), int(extra.ptr)))
        stack.extend(node.children)
    return sorted(found)


def peak_above_start(sizes: Iterable[int]) -> int:
    """The largest running total of signed allocation sizes (bytes), never below 0 (the start level)."""
    total = peak = 0
    for size in sizes:
        total += size
        peak = max(peak, total)
    return peak


def _storages(out: Any) -> set[int]:
    """Addresses of the storages of the tensors in a call's output."""
    if isinstance(out, torch.Tensor):
        return {out.untyped_storage().data_ptr()}
    if isinstance(out, (list, tuple)):
        return set().union(*(_storages(o) for o in out)) if out else set()
    return set()


def measure(fn: Callable[[], Any]) -> tuple[Any, int | None, int | None]:
    """Run fn once; its output, its peak bytes above the level before it, and its working bytes.

    Working memory is the same running total without the output tensors allocated by the call
    (scratch only); an output buffer allocated before the call (in prepare) counts in neither.
    Both are None when the profiler cannot record here (an older torch, or a profiler already on).
    """
    # kineto prints a "profiler_start/stop" line on stderr at every enable unless its log level is
    # raised; a user's own setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    try:
        config, activities, (prepare, enable), disable = _profiler_api()
        prepare(config, activities)
        enable(config, activities)
    except (CpuMemoryUnavailable, RuntimeError):
        return fn(), None, None
    try:
        out = fn()
    finally:
        result = disable()
    events = _allocations(result.experimental_event_tree())
    outputs = _storages(out)
    peak = peak_above_start(size for _, size, _ in events)
    kept = _output_allocations(events, outputs)
    working = peak_above_start(size for i, (_, size, _) in enumerate(events) if i not in kept)
    return out, peak, working


def _output_allocations(events: list[tuple[int, int, int]], outputs: set[int]) -> set[int]:
    """Indices of the allocation events that made the output's storages: at each output address, the
    allocation still live at the end. Matching on the address alone is not enough: the allocator may
    hand a scratch buffer freed during the call and the output the same address (glibc maps both)."""
    live: dict[int, int] = {}
    for i, (_, size, ptr) in enumerate(events):
        if size > 0:
            live[ptr] = i
        else:
            live.pop(ptr, None)
    return {i for ptr, i in live.items() if ptr in outputs}
