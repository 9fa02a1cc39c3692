"""flex-paged: FlexAttention reading K/V straight from the paged block pool.

The pool (num_blocks, block_size, Hkv, D) is viewed, without a copy, as one KV "sequence" of
num_blocks * block_size tokens shared by the whole batch (K/V batch 1, broadcast over the query
batch). Each sequence's block table becomes the block mask: FlexAttention's KV block size is the
page size, and the kv_indices of a sequence's query tile are its physical page ids, so the kernel
visits exactly that sequence's pages in logical order. Pages wholly visible to every query row of a
tile go in the "full" lists (no mask evaluated); the others (a partly filled last page, the causal
diagonal of a chunk) carry a mask_mod that maps a physical slot back to its logical position
through a (batch, num_blocks) physical -> logical page table.

Queries: (batch, Hq, max_q, D), shorter sequences padded (padded rows repeat the last real row's
mask and are dropped). Below 128 query rows (decode: 1) FlexAttention runs its split-KV decoding
kernel. That kernel sizes its KV splits by the whole KV length (here the pool) as soon as full
lists exist, which would leave all but one split idle, so there every page goes in the masked lists;
its query tile, next_pow2(rows x GQA group), must divide the mask's query block (q_block_size).
The kernel is compiled once per shape in prepare (compile_s in the row).
Patterns: a window makes every listed page a masked one and starts each tile's list at the page of
its first row's window start, so pages left of the window are never visited; the mask_mod adds the
window, a score_mod the soft-cap and ALiBi (flex.pattern_score_mod). Each distinct pattern is a new
compiled kernel (the window is a constant of the traced mask_mod).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from attnbench.backends._padded import pad_packed, unpad
from attnbench.backends.base import Prepared, Unsupported, register
from attnbench.backends.flex import FlexBase, compiled_flex, pattern_score_mod, q_block_size, unique_graphs
from attnbench.case import Case
from attnbench.inputs import Inputs

Q_BLOCK = 128  # FlexAttention's default query tile of the block mask
MIN_PAGE = 16  # a KV tile must fit in one page, and Triton's tl.dot needs >= 16 keys
MAX_TABLE_BYTES = 1 << 30  # the block-mask tables (four of them, int32) must stay below this


@dataclass
class PagedBlocks:
    """A block mask over the pool, in FlexAttention's (batch, heads=1, q_tiles, width) layout."""

    kv_num_blocks: torch.Tensor  # (B, 1, R) int32: masked pages per query tile
    kv_indices: torch.Tensor  # (B, 1, R, W) int32: their physical page ids, first kv_num_blocks valid
    full_kv_num_blocks: torch.Tensor  # (B, 1, R) int32: pages every row of the tile sees entirely
    full_kv_indices: torch.Tensor  # (B, 1, R, W) int32
    phys_to_logical: torch.Tensor  # (B, num_pages) int32: logical page of a physical page, -1 if not owned


def page_table_to_blocks(
    q_lens: tuple[int, ...],
    kv_lens: tuple[int, ...],
    block_tables: torch.Tensor,
    num_pages: int,
    page_size: int,
    causal: bool,
    q_rows: int,
    q_block: int = Q_BLOCK,
    full_blocks: bool = True,
    window: int | None = None,
) -> PagedBlocks:
    """Turn block tables into FlexAttention block lists (pure; runs on the tables' device).

    Query tile r of sequence b holds rows r*q_block .. (r+1)*q_block - 1 (rows past q_len act as row
    q_len - 1). Its first row sees lo keys and its last row hi keys (bottom-right causal:
    kv_len - q_len + row + 1; all kv_len without causal). Logical page j is full when
    (j + 1) * page_size <= lo, touched when j * page_size < hi; touched but not full is partial.
    full_blocks=False lists every touched page as partial (mask_mod everywhere, no full lists).
    window: the tile's list starts at the page of its first row's window start (position - window);
    all its pages are partial (the mask_mod applies the window to each row).
    """
    dev = block_tables.device
    batch, width_tab = block_tables.shape
    tiles = math.ceil(q_rows / q_block)
    width = max(num_pages, width_tab)  # the q-side transpose densifies indices up to their max value
    ql = torch.tensor(q_lens, device=dev)[:, None]
    kl = torch.tensor(kv_lens, device=dev)[:, None]
    r = torch.arange(tiles, device=dev)[None, :]
    if causal:
        first = torch.minimum(r * q_block, ql - 1)
        last = torch.minimum((r + 1) * q_block - 1, ql - 1)
        lo, hi = kl - ql + first + 1, kl - ql + last + 1
    else:
        lo = hi = kl.expand(batch, tiles)
    if window is not None:
        full_blocks = False
    n_full = lo // page_size if full_blocks else torch.zeros_like(lo)  # (B, R)
    n_touched = (hi + page_size - 1) // page_size
    skip = torch.zeros_like(lo)  # pages left of every row's window: never listed
    if window is not None:
        first_row = torch.minimum(r * q_block, ql - 1)
        skip = (kl - ql + first_row - window).clamp_min(0) // page_size
    n_partial = n_touched - n_full - skip

    table = torch.zeros((batch, width), dtype=torch.int64, device=dev)
    table[:, :width_tab] = block_tables.long()
    j = torch.arange(width, device=dev)[None, None, :]  # (1, 1, W)
    rows = table[:, None, :].expand(batch, tiles, width)
    full_idx = torch.where(j < n_full[..., None], rows, 0)
    src = (n_full[..., None] + skip[..., None] + j).clamp(max=width - 1)
    part_idx = torch.where(j < n_partial[..., None], torch.gather(rows, 2, src), 0)

    n_pages = (kl[:, 0] + page_size - 1) // page_size  # (B,)
    cols = torch.arange(width_tab, device=dev)[None, :]
    owned = cols < n_pages[:, None]
    p2l = torch.full((batch, num_pages + 1), -1, dtype=torch.int32, device=dev)  # last column: sink
    target = torch.where(owned, block_tables.long(), num_pages)
    p2l.scatter_(1, target, torch.where(owned, cols, -1).to(torch.int32).expand(batch, -1).contiguous())

    def i32(t: torch.Tensor) -> torch.Tensor:
        return t.to(torch.int32).unsqueeze(1).contiguous()

    p2l = p2l[:, :num_pages].contiguous()
    return PagedBlocks(i32(n_partial), i32(part_idx), i32(n_full), i32(full_idx), p2l)


def paged_mask_mod(
    phys_to_logical: torch.Tensor,
    q_lens: torch.Tensor,
    kv_lens: torch.Tensor,
    page_size: int,
    causal: bool,
    window: int | None = None,
) -> Callable:
    """mask_mod over physical pool positions: keep a slot of one of b's pages, inside kv_len, and
    (causal) at or before the query row's position kv_len - q_len + row, (window) at or after that
    position - window."""

    def mask_mod(b, h, q_idx, kv_idx):
        logical_page = phys_to_logical[b, kv_idx // page_size]
        pos = logical_page * page_size + kv_idx % page_size
        keep = (logical_page >= 0) & (pos < kv_lens[b])
        row = torch.minimum(q_idx, q_lens[b] - 1)
        if causal:
            keep = keep & (pos <= kv_lens[b] - q_lens[b] + row)
        if window is not None:
            keep = keep & (pos >= kv_lens[b] - q_lens[b] + row - window)
        return keep

    return mask_mod


def kv_tile(page_size: int) -> int | None:
    """BLOCK_N to ask for: pages below 128 tokens need a KV tile that divides the page."""
    if page_size % 128 == 0:
        return None  # the default tiles (64 / 128 keys) divide the page
    return min(64, page_size & -page_size)  # largest power of two dividing the page, at most 64


@register
class FlexPaged(FlexBase):
    name = "flex-paged"
    family = "paged"
    purpose = "FlexAttention over the paged KV pool: block tables turned into a block mask"
    memory_model = "Paged blocks read in place through the block mask's page indices; tiles on chip"
    kv_inputs = ("paged",)

    def supports(self, case: Case) -> tuple[bool, str]:
        if not case.paged:
            return False, "needs a paged KV cache (a block size)"
        ok, why = super().supports(case)
        if not ok:
            return ok, why
        bs = case.block_size
        assert bs is not None  # case.paged: the case has a block size
        if bs < MIN_PAGE or bs % MIN_PAGE:
            return False, (f"block_size {bs}: a FlexAttention KV tile must fit in one page and hold at least "
                           f"{MIN_PAGE} keys (Triton dot); allowed: multiples of {MIN_PAGE}")
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        from torch.nn.attention.flex_attention import BlockMask, flex_attention

        ok, why = self.supports(case)
        if not ok:
            raise Unsupported(why)
        paged = inputs.paged
        assert paged is not None
        dev, bs = inputs.device, case.block_size
        assert bs is not None  # supports() took a paged case only
        num_pages = paged.k_cache.shape[0]
        hkv, d = case.num_kv_heads, case.head_dim
        # The pool as one shared KV row: (1, Hkv, num_pages * bs, D), a strided view (no copy).
        k = paged.k_cache.view(num_pages * bs, hkv, d).permute(1, 0, 2).unsqueeze(0)
        v = paged.v_cache.view(num_pages * bs, hkv, d).permute(1, 0, 2).unsqueeze(0)
        q_lens_t = torch.tensor(case.q_lens, dtype=torch.int32, device=dev)
        kv_lens_t = paged.kv_lens.to(device=dev, dtype=torch.int32)
        fn = compiled_flex() if self.compile else flex_attention
        gqa = case.gqa_ratio > 1
        tile = kv_tile(bs)
        options = {"BLOCK_N": tile} if tile and self.compile else None
        t0 = time.perf_counter()
        errors = []
        # Decode first tries one query row per sequence; if that shape fails to compile, 16 rows.
        for q_rows in dict.fromkeys((case.max_q, max(case.max_q, 16))):
            q_block = q_block_size(q_rows, case.gqa_ratio)
            tiles = math.ceil(q_rows / q_block)
            if 4 * 4 * case.batch * tiles * max(num_pages, paged.block_tables.shape[1]) > MAX_TABLE_BYTES:
                raise Unsupported(f"block-mask tables for {num_pages} pages x {case.batch} sequences exceed "
                                  f"{MAX_TABLE_BYTES >> 20} MiB")
            full = q_rows >= Q_BLOCK  # the decoding kernel (fewer rows) gets masked lists only
            blocks = page_table_to_blocks(case.q_lens, case.kv_lens, paged.block_tables, num_pages, bs,
                                          case.causal, q_rows, q_block, full_blocks=full, window=case.window)
            full = full and case.window is None  # a window lists masked pages only
            p2l = blocks.phys_to_logical
            mask_mod = paged_mask_mod(p2l, q_lens_t, kv_lens_t, bs, case.causal, case.window)
            score_mod = pattern_score_mod(
                case,
                lambda b, i: kv_lens_t[b] - q_lens_t[b] + torch.minimum(i, q_lens_t[b] - 1),
                lambda b, j, p2l=p2l: p2l[b, j // bs] * bs + j % bs,
                dev,
            )
            block_mask = BlockMask.from_kv_blocks(
                blocks.kv_num_blocks, blocks.kv_indices,
                blocks.full_kv_num_blocks if full else None, blocks.full_kv_indices if full else None,
                BLOCK_SIZE=(q_block, bs), mask_mod=mask_mod, seq_lengths=(q_rows, num_pages * bs),
            )
            q = pad_packed(inputs.q, case.q_lens, q_rows)  # (B, Hq, q_rows, D)

            def run(q=q, block_mask=block_mask, score_mod=score_mod) -> torch.Tensor:
                return fn(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=case.softmax_scale,
                          enable_gqa=gqa, kernel_options=options)

            graphs = unique_graphs()
            try:
                run()
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
            except Exception as err:  # noqa: BLE001 - inductor errors come in many types
                errors.append(f"q_rows {q_rows}: {' '.join(str(err).split())[:240]}")
                continue
            info = {
                "compile_s": round(time.perf_counter() - t0, 3),
                "input_mode": f"padded-q{q_rows}-paged-blockmask",
                "kv_layout_used": "NHD pool viewed as (1, Hkv, num_blocks*block_size, D), read in place",
                "flex_block_n": tile,
                "flex_q_block": q_block,
                "flex_full_blocks": full,
            }
            after = unique_graphs()
            if self.compile and graphs is not None and after is not None:
                info["new_kernel"] = after > graphs
            return Prepared(run=run, to_packed=lambda out: unpad(out, case.q_lens), info=info)
        raise Unsupported("FlexAttention failed to compile: " + " | ".join(errors))
