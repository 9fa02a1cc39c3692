"""The serving simulation's allocation policies, one strategy each: paged blocks, contiguous reservations.

The simulation (serving_sim.py) runs the same four phases per iteration for every policy and asks its
strategy for the memory side of each:
1. grow(t, serving): memory for the token each running request adds this iteration (paged: a block
   when a request crosses a block boundary, preempting the latest arrival when none is free;
   contiguous: nothing, its reservation covers the request's final length from admission);
2. reserve(r) / admitted(r): memory for a waiting request's admission (False: it does not fit now);
3. breakdown(...): where the KV capacity is this iteration (reserved, internal, external, free slots);
4. release(r): a request that completed or was preempted gives its memory back.
held_slots(r) is what the request holds on the allocator, for the replayable trace.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from attnbench.kvcache import KVCacheManager, NoFreeBlocks
from attnbench.memory.contiguous import CONTIGUOUS_POLICIES, BuddyAllocator, requested_slots

if TYPE_CHECKING:
    from attnbench.memory.serving_sim import Serving


@dataclass
class Request:
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


class PagedBlocks:
    """vLLM's policy: fixed-size blocks taken as a request's tokens need them."""

    paged = True

    def __init__(self, capacity: int, block_size: int) -> None:
        self.block_size = block_size
        self.mgr = KVCacheManager(capacity // block_size, block_size, enable_prefix_caching=False)
        self.remainder = capacity - (capacity // block_size) * block_size  # slots no block can use
        self.internal = 0  # over running requests: slots of their last block beyond I + O
        self.grow_at: dict[int, list[tuple[int, int]]] = defaultdict(list)  # iteration -> (rid, epoch)

    def _internal(self, r: Request) -> int:
        return max(0, r.blocks * self.block_size - r.final)

    def _schedule_growth(self, r: Request) -> None:
        # tokens(t) = inp + t - admitted + 1 exceeds blocks * block_size first at this iteration
        when = r.admitted + r.blocks * self.block_size - r.inp
        if when <= r.admitted + r.out - 1:
            self.grow_at[when].append((r.rid, r.epoch))

    def grow(self, t: int, serving: Serving) -> None:
        for rid, epoch in self.grow_at.pop(t, ()):
            r = serving.running.get(rid)
            if r is None or r.epoch != epoch:
                continue
            while True:
                try:
                    self.mgr.append_tokens(rid, r.inp + t - r.admitted + 1 - self.mgr.num_tokens(rid))
                    break
                except NoFreeBlocks:
                    if serving.preempt_latest(t) is r:
                        break
            if rid in serving.running:
                self.internal -= self._internal(r)
                r.blocks = len(self.mgr.requests[rid].blocks)
                self.internal += self._internal(r)
                self._schedule_growth(r)

    def reserve(self, r: Request) -> bool:
        try:
            self.mgr.add_request(r.rid, num_tokens=r.inp + 1)  # its prompt and the token it adds now
        except NoFreeBlocks:
            return False
        r.blocks = len(self.mgr.requests[r.rid].blocks)
        return True

    def admitted(self, r: Request) -> None:
        self.internal += self._internal(r)
        self._schedule_growth(r)

    def release(self, r: Request) -> None:
        self.internal -= self._internal(r)
        self.mgr.free(r.rid)

    def held_slots(self, r: Request) -> int:
        return r.blocks * self.block_size

    def breakdown(self, tokens: int, final_slots: int, blocked: Request | None) -> tuple[int, int, int, int]:
        """(reserved, internal, external, free) slots; final_slots and blocked do not matter here."""
        allocated = (self.mgr.num_blocks - self.mgr.num_free_blocks) * self.block_size
        return (allocated - tokens - self.internal, self.internal, self.remainder,
                self.mgr.num_free_blocks * self.block_size)


class ContiguousReservation:
    """Orca as the paper models it: each request reserves one chunk up front on a buddy allocator."""

    paged = False

    def __init__(self, policy: str, capacity: int, max_seq_len: int) -> None:
        self.policy = policy
        self.capacity = capacity
        self.max_seq_len = max_seq_len
        self.buddy = BuddyAllocator(capacity)
        self.requested = 0  # over running requests: slots reserved
        self.chunks = 0  # over running requests: slots the buddy allocator handed out

    def _requested(self, r: Request) -> int:
        return requested_slots(self.policy, r.inp, r.out, self.max_seq_len)

    def grow(self, t: int, serving: Serving) -> None:
        """Nothing to take: the reservation covers the request's final length."""

    def reserve(self, r: Request) -> bool:
        r.requested = self._requested(r)
        addr = self.buddy.alloc(r.requested)
        if addr is None:
            return False
        r.addr, r.chunk = addr, self.buddy.chunk_size(r.requested)
        self.requested += r.requested
        self.chunks += r.chunk
        return True

    def admitted(self, r: Request) -> None:
        pass

    def release(self, r: Request) -> None:
        self.requested -= r.requested
        self.chunks -= r.chunk
        self.buddy.free(r.addr)

    def held_slots(self, r: Request) -> int:
        return r.requested

    def breakdown(self, tokens: int, final_slots: int, blocked: Request | None) -> tuple[int, int, int, int]:
        """(reserved, internal, external, free) slots; final_slots: sum of I + O over running requests.

        When the next waiting request is refused although a chunk of its size is free in total, all
        free memory counts as external fragmentation (no contiguous chunk fits).
        """
        reserved, internal = final_slots - tokens, self.requested - final_slots
        external, free = self.chunks - self.requested, self.capacity - self.chunks
        if blocked is not None and self.buddy.free_slots >= self.buddy.chunk_size(self._requested(blocked)):
            external, free = external + free, 0
        return reserved, internal, external, free


Allocation = PagedBlocks | ContiguousReservation


def allocation_for(policy: str, capacity: int, max_seq_len: int, block_size: int | None) -> Allocation:
    """The strategy of one policy (paged needs a block size)."""
    if policy == "paged":
        if not block_size:
            raise ValueError("paged allocation needs a block size")
        return PagedBlocks(capacity, block_size)
    if policy not in CONTIGUOUS_POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {(*CONTIGUOUS_POLICIES, 'paged')}")
    return ContiguousReservation(policy, capacity, max_seq_len)
