"""Contiguous allocation as the vLLM paper models Orca: per-request reservations on a buddy allocator.

Kwon et al. (SOSP'23, §6.1) implement three Orca variants and "assume Orca uses the buddy allocation
algorithm to determine the memory address to store KV cache":
- orca-max: reserve the model's maximum sequence length (2048 tokens) for every request;
- orca-pow2: reserve the prompt plus the output length rounded up to a power of two ("if the true
  output length is 25, it reserves 32 positions for outputs");
- orca-oracle: reserve exactly prompt + output (the output length is known in advance).
The buddy allocator then rounds each reservation up to a power of two slots. Units here are token
slots (one slot = one token's K and V in every layer).
"""

from __future__ import annotations

import bisect
from collections import defaultdict

CONTIGUOUS_POLICIES = ("orca-max", "orca-pow2", "orca-oracle")
POLICIES = (*CONTIGUOUS_POLICIES, "paged")


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def requested_slots(policy: str, input_len: int, output_len: int, max_seq_len: int) -> int:
    """Slots a contiguous policy asks the allocator for when it admits a request."""
    if policy == "orca-max":
        return max_seq_len
    if policy == "orca-pow2":
        return min(max_seq_len, input_len + next_pow2(output_len))
    if policy == "orca-oracle":
        return input_len + output_len
    raise ValueError(f"policy {policy!r} is not one of {CONTIGUOUS_POLICIES}")


class BuddyAllocator:
    """Binary buddy allocator over `capacity` slots.

    A capacity that is not a power of two is split into power-of-two regions (its binary digits,
    largest first); buddies merge only inside their region. Allocation takes the lowest-addressed
    block of the smallest order that fits (deterministic), splitting it down to the request's order.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.free_lists: dict[int, set[int]] = defaultdict(set)
        self.region_bases: list[int] = []
        self.region_orders: list[int] = []
        base = 0
        for order in reversed(range(capacity.bit_length())):
            if capacity >> order & 1:
                self.free_lists[order].add(base)
                self.region_bases.append(base)
                self.region_orders.append(order)
                base += 1 << order
        self.max_order = capacity.bit_length() - 1
        self.allocated: dict[int, int] = {}  # address -> order
        self.free_slots = capacity

    @staticmethod
    def order_for(size: int) -> int:
        return max(0, (size - 1).bit_length())

    def chunk_size(self, size: int) -> int:
        """Slots the allocator hands out for a request of `size` slots (next power of two)."""
        return 1 << self.order_for(size)

    def largest_free(self) -> int:
        for order in range(self.max_order, -1, -1):
            if self.free_lists[order]:
                return 1 << order
        return 0

    def alloc(self, size: int) -> int | None:
        """Address of a block of chunk_size(size) slots, or None when no free block is large enough."""
        order = self.order_for(size)
        found = next((o for o in range(order, self.max_order + 1) if self.free_lists[o]), None)
        if found is None:
            return None
        addr = min(self.free_lists[found])
        self.free_lists[found].remove(addr)
        while found > order:  # split, keeping the lower half
            found -= 1
            self.free_lists[found].add(addr + (1 << found))
        self.allocated[addr] = order
        self.free_slots -= 1 << order
        return addr

    def free(self, addr: int) -> None:
        order = self.allocated.pop(addr)
        self.free_slots += 1 << order
        r = bisect.bisect_right(self.region_bases, addr) - 1
        base, region_order = self.region_bases[r], self.region_orders[r]
        while order < region_order:
            buddy = base + ((addr - base) ^ (1 << order))
            if buddy not in self.free_lists[order]:
                break
            self.free_lists[order].remove(buddy)
            addr = min(addr, buddy)
            order += 1
        self.free_lists[order].add(addr)
