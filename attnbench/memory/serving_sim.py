"""The serving simulation behind the memory study: iteration-level batching over a fixed KV capacity.

One iteration (Orca-style iteration-level scheduling, as in the vLLM paper's §6):
1. every running request gains one token (its KV grows by one slot); under paged allocation a
   request that crosses a block boundary takes a block, and when none is free the most recently
   arrived running request is preempted (its blocks freed; it is re-queued at the front and later
   recomputed with its generated tokens as part of its prompt, as vLLM does);
2. waiting requests are admitted first-come-first-served while memory allows (a contiguous policy
   reserves its whole chunk on the buddy allocator; paged takes the blocks of its prompt + 1 token);
   the first one that does not fit stops admission (no overtaking);
3. memory is measured (below); 4. requests that produced their last output token leave and free.
A request with input I and output O holds I + j token slots after its j-th iteration, j = 1..O.

Memory categories, in slots, each iteration (fractions of the KV capacity, time-averaged):
- token_states: slots holding the KV of tokens processed so far;
- reserved: allocated slots the request will fill later (up to its final length I + O);
- internal: allocated slots it will never fill (contiguous: its reservation beyond I + O; paged: the
  last block beyond I + O);
- external: memory lost to the allocator's shape: buddy rounding of each reservation up to a power of
  two, the paged pool's remainder smaller than a block, and all free memory at moments when the next
  waiting request is refused although enough memory is free in total (no contiguous chunk fits);
- other: the remaining free memory (idle, or too little in total for the next request).
The five sum to 1. The paper reports external fragmentation and "others" as one bar.

Time: arrivals are a Poisson process (`request_rate` per second), or all requests are waiting from
the start (`saturated`: the memory-bound regime). Iterations last a roofline time (weights and the
running requests' KV read once from HBM, plus the prompt FLOPs of admitted requests), or, given a
`timing` model (iteration_time.MeasuredIteration), its time from measured attention kernels and
modelled linear layers.

The loop below is the same for every policy; what a policy does with memory in each phase is its
strategy's (allocation.py: PagedBlocks, ContiguousReservation).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.memory.allocation import Allocation, Request, allocation_for


@dataclass(frozen=True)
class ServingSetup:
    kv_capacity_tokens: int  # slots of KV memory
    bytes_per_token: int  # K + V of one token over all layers
    max_seq_len: int
    weight_bytes: float  # read once per iteration
    hbm_bytes_per_s: float
    flops_per_s: float
    flops_per_prompt_token: float  # 2 FLOPs per parameter

    def iteration_seconds(self, context_tokens: int, prompt_tokens: int) -> float:
        """Roofline time of one iteration (s): bytes over HBM bandwidth + prompt FLOPs over peak FLOP/s."""
        read = self.weight_bytes + context_tokens * self.bytes_per_token
        return read / self.hbm_bytes_per_s + prompt_tokens * self.flops_per_prompt_token / self.flops_per_s


CATEGORIES = ("token_states", "reserved", "internal", "external", "other")


class Serving:
    """The requests' side of the simulation: the queue, the running batch and their token sums."""

    def __init__(self, allocation: Allocation, waiting: list[Request],
                 trace: list[tuple[str, int, int]] | None) -> None:
        self.allocation = allocation
        self.waiting = waiting  # a stack: the head of the queue is waiting[-1]
        self.running: dict[int, Request] = {}
        self.done_at: dict[int, list[tuple[int, int]]] = defaultdict(list)  # iteration -> (rid, epoch)
        self.sum_inp_a = 0  # sum over running of (inp - admitted + 1): tokens = sum_inp_a + n_running * t
        self.sum_final = 0  # sum over running of I + O
        self.admitted_count = self.preemptions = self.completed = 0
        self.trace = trace

    def tokens(self, t: int) -> int:
        """Slots holding the KV of the running requests' tokens processed so far at iteration t."""
        return self.sum_inp_a + len(self.running) * t

    def release(self, r: Request) -> None:
        del self.running[r.rid]
        self.sum_inp_a -= r.inp - r.admitted + 1
        self.sum_final -= r.final
        self.allocation.release(r)
        if self.trace is not None:
            self.trace.append(("free", r.rid, self.allocation.held_slots(r)))

    def preempt_latest(self, t: int) -> Request:
        """Free the most recently arrived running request and re-queue it at the front (recomputed later
        with the tokens it generated as part of its prompt, as vLLM does)."""
        victim = self.running[max(self.running)]  # ids follow arrival order: the latest arrival
        gen = t - victim.admitted  # output tokens it produced before this iteration
        self.release(victim)
        victim.inp, victim.out = victim.inp + gen, victim.out - gen
        victim.epoch += 1
        self.waiting.append(victim)
        self.preemptions += 1
        return victim

    def admit(self, t: int, now: float) -> tuple[int, Request | None]:
        """Admit arrived requests first come first served while memory allows; the first that does not
        fit stops admission (no overtaking). Returns (prompt tokens admitted, the refused request)."""
        prompt_tokens = 0
        while self.waiting and self.waiting[-1].arrival <= now:
            r = self.waiting[-1]
            if not self.allocation.reserve(r):
                return prompt_tokens, r
            self.waiting.pop()
            if self.trace is not None:
                self.trace.append(("alloc", r.rid, self.allocation.held_slots(r)))
            r.admitted = t
            self.running[r.rid] = r
            self.sum_inp_a += r.inp - t + 1
            self.sum_final += r.final
            prompt_tokens += r.inp
            self.admitted_count += 1
            self.done_at[t + r.out - 1].append((r.rid, r.epoch))
            self.allocation.admitted(r)
        return prompt_tokens, None

    def complete(self, t: int) -> None:
        """Requests that produced their last output token at iteration t leave and free their memory."""
        for rid, epoch in self.done_at.pop(t, ()):
            r = self.running.get(rid)
            if r is not None and r.epoch == epoch:
                self.release(r)
                self.completed += 1


class _TimeAverages:
    """The memory categories (fractions of the capacity), the batch and the blocked time, time-weighted."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.acc = dict.fromkeys(CATEGORIES, 0.0)  # seconds x fraction of the capacity
        self.batch = self.time = self.blocked_time = 0.0

    def idle(self, seconds: float) -> None:
        """Nothing running: all memory is free ("other") until the next arrival."""
        self.acc["other"] += seconds
        self.time += seconds

    def iteration(self, dt: float, slots: tuple[int, ...], running: int, blocked: bool) -> None:
        for key, val in zip(CATEGORIES, slots, strict=True):
            self.acc[key] += dt * val / self.capacity
        self.batch += dt * running
        self.time += dt
        self.blocked_time += dt if blocked else 0.0

    def result(self) -> dict[str, float]:
        total = max(self.time, 1e-12)
        result = {key: self.acc[key] / total for key in CATEGORIES}
        result.update(mean_batched_requests=self.batch / total,
                      queue_blocked_fraction=self.blocked_time / total)
        return result


def _queue(inputs: np.ndarray, outputs: np.ndarray, request_rate: float | None, seed: int) -> list[Request]:
    """The requests in arrival order, as a stack (head last): Poisson arrivals, or all waiting at 0."""
    n = len(inputs)
    if request_rate:
        gaps = np.random.default_rng(seed + 101).exponential(1.0 / request_rate, n)
        arrivals = np.cumsum(gaps) - gaps[0]
    else:
        arrivals = np.zeros(n)
    waiting = [
        Request(i, int(inputs[i]), int(outputs[i]), int(inputs[i] + outputs[i]), float(arrivals[i]))
        for i in range(n)
    ]
    waiting.reverse()
    return waiting


def simulate(
    policy: str,
    inputs: np.ndarray,
    outputs: np.ndarray,
    setup: ServingSetup,
    block_size: int | None = None,
    request_rate: float | None = None,
    seed: int = 0,
    warmup_fraction: float = 0.1,
    trace: list[tuple[str, int, int]] | None = None,
    timing: Any = None,
) -> dict[str, Any]:
    """Serve the requests (arrival order = array order) and return the time-averaged breakdown.

    trace, when given, receives the allocator calls in order: ("alloc", request id, slots asked for)
    and ("free", request id, slots), for replaying the same churn on a real allocator.
    """
    cap = setup.kv_capacity_tokens
    allocation = allocation_for(policy, cap, setup.max_seq_len, block_size)
    serving = Serving(allocation, _queue(inputs, outputs, request_rate, seed), trace)
    warm_admissions = int(warmup_fraction * len(inputs))
    averages = _TimeAverages(cap)
    now = 0.0
    t = 0
    while serving.waiting or serving.running:
        if not serving.running and serving.waiting[-1].arrival > now:
            if serving.admitted_count >= warm_admissions:
                averages.idle(serving.waiting[-1].arrival - now)
            now = serving.waiting[-1].arrival
        allocation.grow(t, serving)  # 1. growth
        prompt_tokens, blocked = serving.admit(t, now)  # 2. admission
        # 3. measure
        nrun = len(serving.running)
        tokens = serving.tokens(t)
        if timing is None:
            dt = setup.iteration_seconds(tokens, prompt_tokens)
        else:
            dt = timing.seconds(tokens, prompt_tokens, nrun, allocation.paged)
        if serving.admitted_count >= warm_admissions and serving.waiting:
            slots = (tokens, *allocation.breakdown(tokens, serving.sum_final, blocked))
            averages.iteration(dt, slots, nrun, blocked is not None)
        serving.complete(t)  # 4. completions
        now += dt
        t += 1

    result: dict[str, Any] = averages.result()
    result.update(
        preemptions=serving.preemptions,
        completed_requests=serving.completed,
        iterations=t,
        simulated_seconds=now,
        measured_seconds=averages.time,
    )
    return result
