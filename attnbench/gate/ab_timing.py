"""The A/B mode's timing: A and B called alternately on the same inputs, pair by pair in ABBA order.

Pair i is A then B for even i, B then A for odd i, so a linear drift within two pairs cancels. Each
sample is the harness's (L2 flushed by a write then a read outside the window, the stream held
until the sample is queued: attnbench.stream_hold), between CUDA events; on a CPU the host perf counter.

The sides are plain callables; the gate passes its two Versions so that each call runs with its
version's modules active, other callers (the sweep's paired layout measurement,
attnbench.runner.layout_pairs) pass None.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

ROUND = 10  # pairs between synchronisations


class Activatable(Protocol):
    """What alternate needs of a side's owner: a context in which its code runs (a gate Version)."""

    def active(self) -> AbstractContextManager[Any]: ...


def _active(owner: Activatable | None) -> AbstractContextManager[Any]:
    return contextlib.nullcontext() if owner is None else owner.active()


def _timer(device: Any, flush_l2: bool, host_ms: float) -> Callable[[Callable[[], Any]], Any]:
    """A function timing one call: on a GPU the sample the harness takes (L2 flushed by a write then
    a read outside the window, the stream held until the events and launches are queued:
    attnbench.stream_hold), returned as a pending (start, end, exposed) triple; on a CPU a float
    (ms)."""
    if device.type != "cuda":

        def host(fn: Callable[[], Any]) -> float:
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) * 1e3

        return host
    import torch

    from attnbench.stream_hold import L2Flusher, StreamHold

    flush = L2Flusher(device) if flush_l2 else None
    hold = StreamHold(device, host_ms)

    def cuda(fn: Callable[[], Any]) -> Any:
        if flush is not None:
            flush()
        hold.hold()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        return start, end, hold.was_exposed()

    return cuda


def alternate(
    run_a: Callable[[], Any],
    run_b: Callable[[], Any],
    a: Activatable | None,
    b: Activatable | None,
    device: Any,
    pairs: int,
    max_time_s: float,
    warmup_calls: int = 3,
    flush_l2: bool = True,
    orders: list[str] | None = None,
) -> tuple[list[float], list[float]]:
    """n pairs of (A, B) times in ms, ABBA order, until `pairs` or `max_time_s` (at least one round).

    a / b: the owners whose active() wraps each call of run_a / run_b (None: the call as it is).
    orders: when given, gets "ab" or "ba" per kept pair (which side ran first), so a caller can
    combine an AB pair with a BA pair and cancel an order effect (a cache the first call warms)."""
    import torch

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup_calls):
        for version, fn in ((a, run_a), (b, run_b)):
            with _active(version):
                fn()
    sync()
    host_ms = 0.0
    if cuda:
        from attnbench.measure import host_call_ms, quantile

        for version, fn in ((a, run_a), (b, run_b)):
            with _active(version):
                host_ms = max(host_ms, quantile(sorted(host_call_ms(fn, sync)), 0.9))
    timer = _timer(device, flush_l2, host_ms)
    a_ms: list[float] = []
    b_ms: list[float] = []
    started = time.perf_counter()
    rounds = 0
    while len(a_ms) < pairs and (not a_ms or time.perf_counter() - started < max_time_s):
        rounds += 1
        pending = []
        for i in range(len(a_ms), min(pairs, len(a_ms) + ROUND)):
            order = ((a, run_a, "a"), (b, run_b, "b")) if i % 2 == 0 else ((b, run_b, "b"), (a, run_a, "a"))
            got = {}
            for version, fn, name in order:
                with _active(version):
                    got[name] = timer(fn)
            pending.append((got, "ab" if i % 2 == 0 else "ba"))
        sync()
        for got, first in pending:
            if cuda and (got["a"][2] or got["b"][2]):
                continue  # a sample whose hold ran out may hold host time: the pair is dropped
            for name, sink in (("a", a_ms), ("b", b_ms)):
                value = got[name]
                sink.append(value[0].elapsed_time(value[1]) if cuda else value)
            if orders is not None:
                orders.append(first)
        if rounds > 10 * max(1, pairs // ROUND) and not a_ms:
            raise RuntimeError("every A/B sample was exposed: a call waits for the device inside it")
    return a_ms, b_ms
