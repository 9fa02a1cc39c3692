"""Paged KV-cache manager: a pool of fixed-size blocks, an LRU free queue, block tables, prefix caching.

The model (the one vLLM's paper describes, rebuilt here to measure it):
- The pool holds `num_blocks` blocks of `block_size` token slots. A request's KV is a list of blocks
  (its block table), filled left to right; a new block is taken only when the last one is full, so a
  request wastes at most block_size - 1 slots.
- Free blocks wait in a doubly linked queue. Allocation takes from the head, freeing appends at the
  tail, so the head is the least recently freed block: a block that still holds a cached prefix is
  evicted in LRU order, and only when no never-cached block is ahead of it.
- Prefix caching: a full block is named by a key made of its parent block's key and its token ids,
  so equal prefixes give equal keys. A new request walks its full prompt blocks through the cache
  and shares every hit (reference count + 1, taken off the free queue if it sat there).
- Sharing is copy-on-write: fork() shares every block of a sequence, including a partial last block;
  the first append to a shared partial block moves the writer to a fresh copy (the copy is recorded
  in `pending_copies` for whoever owns the tensors).

attnbench.paged_pool builds a benchmark case's paged inputs through this manager.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

BlockKey = tuple[int, tuple[int, ...]]  # (hash of the parent block's key, this block's token ids)


# What a block table holds for a logical block released by a sliding window: a valid block id, so a
# table read stays in bounds, whose contents belong to someone else (a kernel that honours the window
# never reads it; one that does not reads wrong keys, and the correctness check sees it).
DROPPED_BLOCK = 0


class NoFreeBlocks(RuntimeError):
    """The pool has no free block left for an allocation (the caller preempts or waits)."""


@dataclass(eq=False)
class Block:
    block_id: int
    ref_cnt: int = 0
    key: BlockKey | None = None  # set once the block is full and cached
    prev: Block | None = field(default=None, repr=False)
    next: Block | None = field(default=None, repr=False)


class FreeBlockQueue:
    """Doubly linked queue of free blocks: O(1) pop at the head, append at the tail, remove anywhere."""

    def __init__(self, blocks: Sequence[Block]) -> None:
        self._head = Block(-1)
        self._tail = Block(-2)
        self._head.next, self._tail.prev = self._tail, self._head
        self._len = 0
        for b in blocks:
            self.append(b)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Block]:
        node = self._head.next
        while node is not self._tail:
            assert node is not None
            yield node
            node = node.next

    def append(self, block: Block) -> None:
        last = self._tail.prev
        assert last is not None
        last.next, block.prev, block.next, self._tail.prev = block, last, self._tail, block
        self._len += 1

    def remove(self, block: Block) -> None:
        assert block.prev is not None and block.next is not None, "block is not in the free queue"
        block.prev.next, block.next.prev = block.next, block.prev
        block.prev = block.next = None
        self._len -= 1

    def popleft(self) -> Block:
        if not self._len:
            raise NoFreeBlocks("no free KV-cache block")
        block = self._head.next
        assert block is not None
        self.remove(block)
        return block

    # The batch forms below do what n popleft / append calls do, in one loop without a call per
    # block: a shuffled pool's churn moves millions of blocks through the queue.
    def popleft_n(self, n: int) -> list[Block]:
        """The n blocks at the head, in queue order (NoFreeBlocks, queue unchanged, if fewer)."""
        if n > self._len:
            raise NoFreeBlocks(f"{n} KV-cache blocks wanted, {self._len} free")
        taken: list[Block] = []
        node = self._head.next
        for _ in range(n):
            assert node is not None  # n <= len: n blocks follow the head before the tail
            taken.append(node)
            nxt = node.next
            node.prev = node.next = None
            node = nxt
        assert node is not None
        self._head.next, node.prev = node, self._head
        self._len -= n
        return taken

    def extend(self, blocks: Sequence[Block]) -> None:
        """Append blocks at the tail, in order."""
        last = self._tail.prev
        assert last is not None
        for block in blocks:
            last.next, block.prev = block, last
            last = block
        last.next, self._tail.prev = self._tail, last
        self._len += len(blocks)


@dataclass
class _Request:
    blocks: list[Block]
    num_tokens: int
    token_ids: list[int] | None  # kept only when prefix caching names this request's blocks
    last_key: BlockKey | None = None  # key of the last cached full block (the next block's parent)
    dropped: int = 0  # leading logical blocks released because they fell out of a sliding window


class KVCacheManager:
    """Block pool + LRU free queue + per-request block tables + prefix cache with copy-on-write."""

    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("num_blocks and block_size must be positive")
        self.block_size = block_size
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_queue = FreeBlockQueue(self.blocks)
        self.enable_prefix_caching = enable_prefix_caching
        self.cached: dict[BlockKey, Block] = {}
        self.requests: dict[Any, _Request] = {}
        self.pending_copies: list[tuple[int, int]] = []  # (src block, dst block) owed by copy-on-write
        self.prefix_queries = 0  # full prompt blocks looked up in the cache
        self.prefix_hits = 0  # of those, found and shared
        self.evictions = 0  # cached blocks whose content was dropped to serve an allocation

    # ---- pool ---------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation may take now (free, whether or not they still hold a cached prefix)."""
        return len(self.free_queue)

    def reorder_free_queue(self, order: Sequence[int]) -> None:
        """Put the free queue in this block-id order (head first). Only for a pool whose blocks are
        all free and unnamed, the state a churn of anonymous requests leaves (paged_pool.churn):
        then the order is all the churn changed."""
        if self.requests or self.cached or self.num_free_blocks != self.num_blocks:
            raise ValueError("reorder_free_queue: every block must be free and uncached")
        if sorted(order) != list(range(self.num_blocks)):
            raise ValueError("reorder_free_queue: order must be a permutation of the block ids")
        self.free_queue = FreeBlockQueue([self.blocks[i] for i in order])

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _take(self) -> Block:
        return self._claim(self.free_queue.popleft())

    def _take_n(self, n: int) -> list[Block]:
        """n blocks, as n _take calls would give them."""
        return [self._claim(block) for block in self.free_queue.popleft_n(n)]

    def _claim(self, block: Block) -> Block:
        """A block just taken from the free queue, now held once."""
        if block.key is not None:  # evict: the least recently freed cached block goes first
            if self.cached.get(block.key) is block:
                del self.cached[block.key]
            block.key = None
            self.evictions += 1
        block.ref_cnt = 1
        return block

    def _share(self, block: Block) -> None:
        if block.ref_cnt == 0:
            self.free_queue.remove(block)
        block.ref_cnt += 1

    def _release(self, block: Block) -> None:
        if self._unref(block):
            self.free_queue.append(block)

    @staticmethod
    def _unref(block: Block) -> bool:
        """Drop one reference; whether the block is now free (it goes back to the queue)."""
        block.ref_cnt -= 1
        assert block.ref_cnt >= 0, f"block {block.block_id} freed more often than taken"
        return block.ref_cnt == 0

    # ---- prefix cache -------------------------------------------------------------------
    @staticmethod
    def _key(parent: BlockKey | None, tokens: Sequence[int]) -> BlockKey:
        return (hash(parent), tuple(tokens))

    def _cache_full_blocks(self, req: _Request, start_block: int) -> None:
        """Name every full block from start_block on, so later requests with the same prefix share it."""
        if not self.enable_prefix_caching or req.token_ids is None:
            return
        bs = self.block_size
        for i in range(start_block, req.num_tokens // bs):
            block = req.blocks[i]
            key = self._key(req.last_key, req.token_ids[i * bs : (i + 1) * bs])
            req.last_key = key
            if block.key is None and key not in self.cached:
                block.key = key
                self.cached[key] = block

    # ---- requests -----------------------------------------------------------------------
    def add_request(
        self, request_id: Any, token_ids: Sequence[int] | None = None, num_tokens: int | None = None
    ) -> list[int]:
        """Place a request's prompt: reuse cached full blocks of its prefix, allocate the rest.

        Give token_ids (prefix caching applies) or just num_tokens (anonymous tokens, no caching).
        Raises NoFreeBlocks (and leaves the pool unchanged) when the rest does not fit.
        """
        if request_id in self.requests:
            raise ValueError(f"request {request_id!r} already holds blocks")
        n = len(token_ids) if token_ids is not None else int(num_tokens or 0)
        bs = self.block_size
        hits: list[Block] = []
        last_key: BlockKey | None = None
        if token_ids is not None and self.enable_prefix_caching:
            for i in range(n // bs):
                key = self._key(last_key, token_ids[i * bs : (i + 1) * bs])
                self.prefix_queries += 1
                block = self.cached.get(key)
                if block is None:
                    break
                hits.append(block)
                last_key = key
        # Cached blocks sitting in the free queue are counted as free; sharing them uses them up.
        free_hits = sum(1 for b in hits if b.ref_cnt == 0)
        fresh = self.blocks_needed(n) - len(hits)
        if fresh > self.num_free_blocks - free_hits:
            raise NoFreeBlocks(
                f"request {request_id!r} needs {fresh} new blocks, {self.num_free_blocks} free"
            )
        self.prefix_hits += len(hits)
        for b in hits:
            self._share(b)
        blocks = hits + self._take_n(fresh)
        ids = list(token_ids) if token_ids is not None and self.enable_prefix_caching else None
        req = _Request(blocks=blocks, num_tokens=n, token_ids=ids, last_key=last_key)
        self.requests[request_id] = req
        self._cache_full_blocks(req, len(hits))
        return [b.block_id for b in blocks]

    def append_tokens(
        self, request_id: Any, count: int = 1, token_ids: Sequence[int] | None = None
    ) -> list[int]:
        """Grow a request by `count` tokens (or by token_ids); returns the ids of newly taken blocks.

        A new block is taken only at a block boundary. Writing into a shared partial last block first
        moves this request to a private copy (copy-on-write, recorded in pending_copies).
        Raises NoFreeBlocks, leaving the request unchanged, when the pool cannot serve it.
        """
        req = self.requests[request_id]
        if token_ids is not None:
            count = len(token_ids)
        if count <= 0:
            return []
        bs = self.block_size
        partial = req.num_tokens % bs != 0
        cow = partial and req.blocks[-1].ref_cnt > 1
        new = self.blocks_needed(req.num_tokens + count) - len(req.blocks) - req.dropped
        if new + int(cow) > self.num_free_blocks:
            raise NoFreeBlocks(
                f"request {request_id!r} needs {new + int(cow)} blocks, {self.num_free_blocks} free"
            )
        taken: list[int] = []
        if cow:
            old = req.blocks[-1]
            copy = self._take()
            self.pending_copies.append((old.block_id, copy.block_id))
            self._release(old)
            req.blocks[-1] = copy
            taken.append(copy.block_id)
        for _ in range(new):
            block = self._take()
            req.blocks.append(block)
            taken.append(block.block_id)
        first_unnamed = req.num_tokens // bs
        req.num_tokens += count
        if req.token_ids is not None:
            if token_ids is None:  # anonymous growth: the request can no longer name its blocks
                req.token_ids = None
            else:
                req.token_ids.extend(token_ids)
                self._cache_full_blocks(req, first_unnamed)
        return taken

    def fork(self, parent_id: Any, child_id: Any) -> list[int]:
        """A child sequence sharing every block of its parent (parallel sampling, beam search)."""
        parent = self.requests[parent_id]
        if child_id in self.requests:
            raise ValueError(f"request {child_id!r} already holds blocks")
        for b in parent.blocks:
            b.ref_cnt += 1  # shared blocks are held, so none of them sits in the free queue
        ids = list(parent.token_ids) if parent.token_ids is not None else None
        self.requests[child_id] = _Request(list(parent.blocks), parent.num_tokens, ids, parent.last_key,
                                           parent.dropped)
        return [b.block_id for b in parent.blocks]

    def free(self, request_id: Any) -> None:
        """Return a request's blocks; cached ones stay findable until evicted.

        Blocks go back tail-first, so a sequence's last blocks are evicted before its prefix blocks,
        which are the ones other requests are likely to share.
        """
        req = self.requests.pop(request_id)
        # in one batch, the order _release one block at a time would give
        self.free_queue.extend([b for b in reversed(req.blocks) if self._unref(b)])

    def block_table(self, request_id: Any) -> list[int]:
        """Physical block per logical block; blocks released by a window read as DROPPED_BLOCK (a kernel
        honouring the window never reads them)."""
        req = self.requests[request_id]
        return [DROPPED_BLOCK] * req.dropped + [b.block_id for b in req.blocks]

    def free_out_of_window(self, request_id: Any, window: int) -> list[int]:
        """Release the leading blocks no query of a sliding-window model can see again.

        The latest token's query (position num_tokens - 1) attends keys >= num_tokens - 1 - window, and
        later queries only move right, so every block wholly before that key is dead: it goes back to the
        pool (its logical slot in the block table stays, as DROPPED_BLOCK). Returns the freed ids.
        A request whose blocks are named for prefix caching stops naming them (a dropped block can
        no longer be shared as a prefix).
        """
        if window < 0:
            raise ValueError(f"window {window} must be >= 0")
        req = self.requests[request_id]
        first_live = max(0, req.num_tokens - 1 - window) // self.block_size  # first block still reachable
        count = first_live - req.dropped
        if count <= 0:
            return []
        dead, req.blocks = req.blocks[:count], req.blocks[count:]
        req.dropped += count
        req.token_ids = None
        self.free_queue.extend([b for b in dead if self._unref(b)])
        return [b.block_id for b in dead]

    def num_tokens(self, request_id: Any) -> int:
        return self.requests[request_id].num_tokens

    def pop_copies(self) -> list[tuple[int, int]]:
        copies, self.pending_copies = self.pending_copies, []
        return copies

    # ---- accounting ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        used = self.num_blocks - self.num_free_blocks
        cached_free = sum(1 for b in self.free_queue if b.key is not None)
        return {
            "blocks_total": self.num_blocks,
            "blocks_used": used,
            "blocks_free": self.num_free_blocks,
            "blocks_cached": len(self.cached),
            "blocks_cached_free": cached_free,
            "prefix_queries": self.prefix_queries,
            "prefix_hits": self.prefix_hits,
            "prefix_hit_rate": self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0,
            "evictions": self.evictions,
        }

    def check_invariants(self) -> None:
        """Raise AssertionError when the books disagree (used by the property tests)."""
        refs = [0] * self.num_blocks
        for req in self.requests.values():
            assert len(req.blocks) + req.dropped == self.blocks_needed(req.num_tokens), (
                "block table length != tokens"
            )
            for b in req.blocks:
                refs[b.block_id] += 1
        in_queue = [False] * self.num_blocks
        for b in self.free_queue:
            assert not in_queue[b.block_id], f"block {b.block_id} twice in the free queue"
            in_queue[b.block_id] = True
        for b in self.blocks:
            assert b.ref_cnt == refs[b.block_id], (
                f"block {b.block_id}: ref_cnt {b.ref_cnt} != {refs[b.block_id]}"
            )
            assert in_queue[b.block_id] == (b.ref_cnt == 0), f"block {b.block_id}: free-queue membership"
        for key, b in self.cached.items():
            assert b.key == key, f"cached block {b.block_id} has another key"
