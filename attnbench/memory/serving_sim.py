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
`timing` model (fragmentation_timing.MeasuredIteration), its time from measured attention kernels and
modelled linear layers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from attnbench.kvcache import KVCacheManager, NoFreeBlocks
from attnbench.memory.contiguous import CONTIGUOUS_POLICIES, BuddyAllocator, requested_slots


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


@dataclass
class _Req:
    rid: int
    inp: int  # prompt tokens at (re)admission (grows by the generated tokens when recomputed)
    out: int  # output tokens still to generate
    final: int  # I + O of the original request
    arrival: float
    admitted: int = -1  # iteration of admission
    epoch: int = 0  # bumps on preemption; stale events are skipped
    requested: int = 0  # contiguous: slots reserved
    chunk: int = 0  # contiguous: slots handed out by the buddy allocator
    addr: int = -1
    blocks: int = 0  # paged: blocks held


CATEGORIES = ("token_states", "reserved", "internal", "external", "other")


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
    paged = policy == "paged"
    if not paged and policy not in CONTIGUOUS_POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {(*CONTIGUOUS_POLICIES, 'paged')}")
    if paged and not block_size:
        raise ValueError("paged allocation needs a block size")
    n = len(inputs)
    cap = setup.kv_capacity_tokens
    if request_rate:
        gaps = np.random.default_rng(seed + 101).exponential(1.0 / request_rate, n)
        arrivals = np.cumsum(gaps) - gaps[0]
    else:
        arrivals = np.zeros(n)
    waiting = [
        _Req(i, int(inputs[i]), int(outputs[i]), int(inputs[i] + outputs[i]), float(arrivals[i]))
        for i in range(n)
    ]
    waiting.reverse()  # a stack: the head of the queue is waiting[-1]

    bs = block_size or 1
    mgr = KVCacheManager(cap // bs, bs, enable_prefix_caching=False) if paged else None
    buddy = None if paged else BuddyAllocator(cap)
    remainder = cap - (cap // bs) * bs if paged else 0

    running: dict[int, _Req] = {}
    grow_at: dict[int, list[tuple[int, int]]] = defaultdict(list)  # iteration -> (rid, epoch)
    done_at: dict[int, list[tuple[int, int]]] = defaultdict(list)
    sum_inp_a = 0  # sum over running of (inp - admitted + 1): tokens = sum_inp_a + n_running * t
    sum_final = sum_req = sum_chunk = sum_internal_paged = 0
    admitted_count = preemptions = completed = 0
    warm_admissions = int(warmup_fraction * n)

    acc = dict.fromkeys(CATEGORIES, 0.0)
    acc_batch = acc_time = busy_time = 0.0
    now = 0.0
    t = 0

    def paged_internal(r: _Req) -> int:
        return max(0, r.blocks * bs - r.final)

    def schedule_growth(r: _Req) -> None:
        # tokens(t) = inp + t - admitted + 1 exceeds blocks * bs first at this iteration
        when = r.admitted + r.blocks * bs - r.inp
        if when <= r.admitted + r.out - 1:
            grow_at[when].append((r.rid, r.epoch))

    def release(r: _Req) -> None:
        nonlocal sum_inp_a, sum_final, sum_req, sum_chunk, sum_internal_paged
        del running[r.rid]
        sum_inp_a -= r.inp - r.admitted + 1
        sum_final -= r.final
        if paged:
            sum_internal_paged -= paged_internal(r)
            mgr.free(r.rid)
        else:
            sum_req -= r.requested
            sum_chunk -= r.chunk
            buddy.free(r.addr)
        if trace is not None:
            trace.append(("free", r.rid, r.requested if not paged else r.blocks * bs))

    while waiting or running:
        if not running and waiting[-1].arrival > now:
            idle = waiting[-1].arrival - now  # nothing to run: all memory free until the next arrival
            if admitted_count >= warm_admissions:
                acc["other"] += idle
                acc_time += idle
            now = waiting[-1].arrival
        # 1. growth (paged): blocks for the token each running request adds this iteration
        for rid, epoch in grow_at.pop(t, ()):
            r = running.get(rid)
            if r is None or r.epoch != epoch:
                continue
            while True:
                try:
                    mgr.append_tokens(rid, r.inp + t - r.admitted + 1 - mgr.num_tokens(rid))
                    break
                except NoFreeBlocks:
                    victim = running[max(running)]  # ids follow arrival order: the latest arrival
                    gen = t - victim.admitted  # output tokens it produced before this iteration
                    release(victim)
                    victim.inp, victim.out = victim.inp + gen, victim.out - gen
                    victim.epoch += 1
                    waiting.append(victim)
                    preemptions += 1
                    if victim is r:
                        break
            if rid in running:
                sum_internal_paged -= paged_internal(r)
                r.blocks = len(mgr.requests[rid].blocks)
                sum_internal_paged += paged_internal(r)
                schedule_growth(r)
        # 2. admission, first come first served
        prompt_tokens = 0
        blocked: _Req | None = None
        while waiting and waiting[-1].arrival <= now:
            r = waiting[-1]
            if paged:
                try:
                    mgr.add_request(r.rid, num_tokens=r.inp + 1)
                except NoFreeBlocks:
                    blocked = r
                    break
                r.blocks = len(mgr.requests[r.rid].blocks)
            else:
                r.requested = requested_slots(policy, r.inp, r.out, setup.max_seq_len)
                addr = buddy.alloc(r.requested)
                if addr is None:
                    blocked = r
                    break
                r.addr, r.chunk = addr, buddy.chunk_size(r.requested)
                sum_req += r.requested
                sum_chunk += r.chunk
            waiting.pop()
            if trace is not None:
                trace.append(("alloc", r.rid, r.requested if not paged else r.blocks * bs))
            r.admitted = t
            running[r.rid] = r
            sum_inp_a += r.inp - t + 1
            sum_final += r.final
            prompt_tokens += r.inp
            admitted_count += 1
            done_at[t + r.out - 1].append((r.rid, r.epoch))
            if paged:
                sum_internal_paged += paged_internal(r)
                schedule_growth(r)
        # 3. measure
        nrun = len(running)
        tokens = sum_inp_a + nrun * t
        if timing is None:
            dt = setup.iteration_seconds(tokens, prompt_tokens)
        else:
            dt = timing.seconds(tokens, prompt_tokens, nrun, paged)
        if admitted_count >= warm_admissions and waiting:
            if paged:
                alloc = (mgr.num_blocks - mgr.num_free_blocks) * bs
                internal = sum_internal_paged
                reserved = alloc - tokens - internal
                external, free = remainder, mgr.num_free_blocks * bs
            else:
                reserved, internal = sum_final - tokens, sum_req - sum_final
                external, free = sum_chunk - sum_req, cap - sum_chunk
                if blocked is not None and buddy.free_slots >= buddy.chunk_size(
                    requested_slots(policy, blocked.inp, blocked.out, setup.max_seq_len)
                ):
                    external, free = external + free, 0
            for key, val in zip(CATEGORIES, (tokens, reserved, internal, external, free), strict=True):
                acc[key] += dt * val / cap
            acc_batch += dt * nrun
            acc_time += dt
            busy_time += dt if (blocked is not None) else 0.0
        # 4. completions
        for rid, epoch in done_at.pop(t, ()):
            r = running.get(rid)
            if r is not None and r.epoch == epoch:
                release(r)
                completed += 1
        now += dt
        t += 1

    total = max(acc_time, 1e-12)
    result = {key: acc[key] / total for key in CATEGORIES}
    result.update(
        mean_batched_requests=acc_batch / total,
        queue_blocked_fraction=busy_time / total,
        preemptions=preemptions,
        completed_requests=completed,
        iterations=t,
        simulated_seconds=now,
        measured_seconds=acc_time,
    )
    return result
