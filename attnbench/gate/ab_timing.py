"""The A/B mode's timing: A and B called alternately on the same inputs, pair by pair in ABBA order.

Pair i is A then B for even i, B then A for odd i, so a linear drift within two pairs cancels. Each
sample is the harness's (L2 flushed by a write then a read outside the window, the stream held
until the sample is queued: attnbench.stream_hold), between CUDA events; on a CPU the host perf counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from attnbench.gate.versions import Version

ROUND = 10  # pairs between synchronisations


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
    a: Version,
    b: Version,
    device: Any,
    pairs: int,
    max_time_s: float,
    warmup_calls: int = 3,
    flush_l2: bool = True,
) -> tuple[list[float], list[float]]:
    """n pairs of (A, B) times in ms, ABBA order, until `pairs` or `max_time_s` (at least one round)."""
    import torch

    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup_calls):
        for version, fn in ((a, run_a), (b, run_b)):
            with version.active():
                fn()
    sync()
    host_ms = 0.0
    if cuda:
        from attnbench.measure import host_call_ms, quantile

        for version, fn in ((a, run_a), (b, run_b)):
            with version.active():
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
                with version.active():
                    got[name] = timer(fn)
            pending.append(got)
        sync()
        for got in pending:
            if cuda and (got["a"][2] or got["b"][2]):
                continue  # a sample whose hold ran out may hold host time: the pair is dropped
            for name, sink in (("a", a_ms), ("b", b_ms)):
                value = got[name]
                sink.append(value[0].elapsed_time(value[1]) if cuda else value)
        if rounds > 10 * max(1, pairs // ROUND) and not a_ms:
            raise RuntimeError("every A/B sample was exposed: a call waits for the device inside it")
    return a_ms, b_ms
