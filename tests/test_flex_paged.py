"""flex-paged on a CPU: the page-table -> block-mask conversion, its mask_mod, and the limits.

Eager FlexAttention evaluates mask_mod over the whole pool but ignores the block lists, so the lists
are checked separately: a small simulator computes attention the way the compiled kernel walks a
block mask (full pages unmasked, partial pages through mask_mod, nothing else), and its output must
match the reference. The plain flex backend's decode layout is checked eagerly too.
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from attnbench.backends import get_backend
from attnbench.backends._padded import pad_packed, unpad
from attnbench.backends.flex import q_block_size, sequence_kv_blocks
from attnbench.backends.flex_paged import kv_tile, page_table_to_blocks, paged_mask_mod
from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.inputs import build_inputs
from attnbench.point import run_point
from attnbench.reference import check_output

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")


def paged(phase, q_lens, kv_lens, block_size, causal=True, hq=4, hkv=2, d=32, prefix=0, layout="shuffled"):
    return Case("t", phase, q_lens, kv_lens, hq, hkv, d, "fp16", causal, "list", block_size, layout,
                seed=5, prefix_len=prefix)


CASES = [
    paged("decode", (1, 1, 1), (37, 64, 5), 16, causal=False),
    paged("decode", (1, 1, 1, 1), (40, 40, 40, 40), 16, prefix=32),  # shared prefix pages
    paged("mixed", (5, 16, 3), (40, 48, 19), 16),
    paged("mixed", (40, 23), (90, 23), 32),  # a whole sequence as its own chunk
    paged("prefill", (30, 17), (30, 17), 16, causal=False, layout="contiguous"),
]


def simulate(case, inputs, blocks, q_rows, q_block):
    """Attention computed from the block lists alone, as FlexAttention's kernel reads them."""
    pool = inputs.paged
    bs, hq, d = case.block_size, case.num_q_heads, case.head_dim
    k = pool.k_cache.reshape(-1, case.num_kv_heads, d).double().repeat_interleave(case.gqa_ratio, dim=1)
    v = pool.v_cache.reshape(-1, case.num_kv_heads, d).double().repeat_interleave(case.gqa_ratio, dim=1)
    q = pad_packed(inputs.q, case.q_lens, q_rows).double()  # (B, Hq, rows, D)
    q_lens = torch.tensor(case.q_lens)
    mask_mod = paged_mask_mod(blocks.phys_to_logical, q_lens, pool.kv_lens, bs, case.causal)
    out = torch.zeros(case.batch, hq, q_rows, d, dtype=torch.float64)
    for b in range(case.batch):
        for r in range(math.ceil(q_rows / q_block)):
            n_full, n_part = int(blocks.full_kv_num_blocks[b, 0, r]), int(blocks.kv_num_blocks[b, 0, r])
            full = blocks.full_kv_indices[b, 0, r, :n_full].long()
            part = blocks.kv_indices[b, 0, r, :n_part].long()
            assert not set(full.tolist()) & set(part.tolist()), "a page is both full and partial"
            slots = torch.cat([(p * bs + torch.arange(bs)) for p in torch.cat([full, part]).tolist()] or
                              [torch.zeros(0, dtype=torch.long)])
            rows = torch.arange(r * q_block, min((r + 1) * q_block, q_rows))
            keep = torch.ones(len(rows), len(slots), dtype=torch.bool)
            masked = slice(n_full * bs, None)  # only partial pages go through mask_mod
            keep[:, masked] = mask_mod(torch.tensor(b), torch.tensor(0), rows[:, None], slots[None, masked])
            scores = torch.einsum("hqd,khd->hqk", q[b][:, rows], k[slots]) * case.softmax_scale
            probs = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1)
            out[b][:, rows] = torch.einsum("hqk,khd->hqd", probs, v[slots])
    return unpad(out, case.q_lens)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.phase}-bs{c.block_size}-p{c.prefix_len}")
@pytest.mark.parametrize("q_block,full", [(16, True), (128, True), (128, False)])
def test_block_lists_alone_give_the_reference(case, q_block, full):
    inputs = build_inputs(case, "cpu")
    pool = inputs.paged
    q_rows = case.max_q
    blocks = page_table_to_blocks(case.q_lens, case.kv_lens, pool.block_tables, pool.k_cache.shape[0],
                                  case.block_size, case.causal, q_rows, q_block, full_blocks=full)
    if not full:
        assert int(blocks.full_kv_num_blocks.sum()) == 0
    out = simulate(case, inputs, blocks, q_rows, q_block)
    # float64 from the same rounded inputs as the reference: equal up to summation order, per element.
    torch.testing.assert_close(out.float(), inputs.reference, rtol=1e-6, atol=1e-6)


def test_full_pages_need_no_mask_and_tiles_stop_at_their_last_row():
    # One sequence, kv 40, chunk 24 (rows see 17..40 keys), page 8, query tiles of 16 rows.
    table = torch.tensor([[4, 0, 3, 1, 2]], dtype=torch.int32)
    blocks = page_table_to_blocks((24,), (40,), table, 6, 8, True, 24, q_block=16)
    # tile 0: rows 0..15 see 17..32 keys -> pages 0,1 full (16 keys), pages 2,3 partial.
    # tile 1: rows 16..23 see 33..40 keys -> pages 0..3 full, page 4 partial.
    assert blocks.full_kv_num_blocks[0, 0].tolist() == [2, 4]
    assert blocks.kv_num_blocks[0, 0].tolist() == [2, 1]
    assert blocks.full_kv_indices[0, 0, 0, :2].tolist() == [4, 0]
    assert blocks.kv_indices[0, 0, 0, :2].tolist() == [3, 1]
    assert blocks.full_kv_indices[0, 0, 1, :4].tolist() == [4, 0, 3, 1]
    assert blocks.kv_indices[0, 0, 1, :1].tolist() == [2]
    assert blocks.kv_indices.shape == (1, 1, 2, 6)  # width covers every physical page id
    assert blocks.phys_to_logical.tolist() == [[1, 3, 4, 2, 0, -1]]


def test_padding_columns_of_the_table_own_no_page():
    # Sequence 1 needs one page; its table row is padded with 0, which is sequence 0's page.
    table = torch.tensor([[0, 2], [1, 0]], dtype=torch.int32)
    blocks = page_table_to_blocks((1, 1), (20, 5), table, 3, 16, False, 1)
    assert blocks.phys_to_logical.tolist() == [[0, -1, 1], [-1, 0, -1]]
    assert blocks.full_kv_num_blocks[:, 0, 0].tolist() == [1, 0]  # 20 keys: page 0 full, page 1 not
    assert blocks.kv_num_blocks[:, 0, 0].tolist() == [1, 1]
    assert blocks.kv_indices[:, 0, 0, 0].tolist() == [2, 1]


@pytest.mark.parametrize("case", CASES[:3], ids=lambda c: f"{c.phase}-p{c.prefix_len}")
def test_backend_end_to_end_with_eager_flex(case, monkeypatch):
    backend = get_backend("flex-paged")
    monkeypatch.setattr(backend, "compile", False)
    inputs = build_inputs(case, "cpu")
    row = run_point(case, backend, inputs, TimingPolicy.for_device("cpu"), {})
    assert row["status"] == "ok", row["reason"]
    assert row["input_mode"] == f"padded-q{case.max_q}-paged-blockmask" and "compile_s" in row
    assert row["rel_err_ratio"] <= 1.0 and row["rel_err_seq"] is not None


def test_supports_names_each_limit():
    backend = get_backend("flex-paged")
    assert (backend.family, backend.kv_inputs, backend.devices) == ("paged", ("paged",), ("cuda",))
    assert backend.supports(paged("decode", (1,), (64,), 16)) == (True, "")
    assert backend.supports(paged("decode", (1,), (64,), 256)) == (True, "")
    cases = {
        "needs a paged KV cache": paged("decode", (1,), (64,), None),
        "allowed: multiples of 16": paged("decode", (1,), (64,), 8),
        "head_dim 72": paged("decode", (1,), (64,), 16, d=72),
    }
    for expected, case in cases.items():
        ok, why = backend.supports(case)
        assert not ok and expected in why
    fp32 = Case("t", "decode", (1,), (64,), 4, 2, 32, "fp32", False, "list", 16)
    assert "fp32" in backend.supports(fp32)[1]
    ok, why = backend.available("cpu")
    assert not ok and "cuda" in why


def test_query_block_fits_the_decoding_kernel_tile():
    # decode kernel tile = max(16, next_pow2(rows * group)); it must divide the mask's query block.
    sizes = [q_block_size(rows, 4) for rows in (1, 64, 100, 128, 4096)]
    assert sizes == [128, 256, 512, 128, 128]
    for rows, group in ((1, 1), (16, 8), (33, 3), (127, 8)):
        tile = max(16, 1 << (rows * group - 1).bit_length())
        assert q_block_size(rows, group) % tile == 0


def test_sequence_kv_blocks_cover_each_sequence():
    cu = torch.tensor([0, 100, 356, 357], dtype=torch.int32)
    count, idx = sequence_kv_blocks(cu, 357, 128)
    assert count.tolist() == [1, 3, 1] and idx.shape == (3, 3)
    assert idx.tolist() == [[0, 0, 0], [0, 1, 2], [2, 0, 0]]


def test_kv_tile_divides_the_page():
    assert [kv_tile(n) for n in (16, 32, 48, 64, 96, 128, 192, 256)] == [16, 32, 16, 64, 32, None, 64, None]


def test_plain_flex_decode_uses_batched_queries(monkeypatch):
    backend = get_backend("flex")
    monkeypatch.setattr(backend, "compile", False)
    case = Case("t", "decode", (1, 1, 1), (37, 64, 5), 8, 2, 64, "bf16", False, "list", seed=1)
    inputs = build_inputs(case, "cpu")
    row = run_point(case, backend, inputs, TimingPolicy.for_device("cpu"), {})
    assert row["status"] == "ok", row["reason"]
    assert row["input_mode"] == "batched-q1-document-mask"
    mixed = Case("t", "mixed", (5, 16), (40, 48), 8, 2, 64, "bf16", True, "list", seed=2)
    row = run_point(mixed, backend, build_inputs(mixed, "cpu"), TimingPolicy.for_device("cpu"), {})
    assert row["status"] == "ok" and row["input_mode"] == "packed-document-mask"


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="inductor's CPU FlexAttention needs a C++ compiler")
def test_compiled_on_cpu_follows_the_block_lists():
    """torch.compile'd FlexAttention on a CPU (inductor's C++ template) walks the block lists as the
    GPU kernel does, unlike eager mode: the masks must be right for the compiled path too."""
    kv = (300, 77, 160, 300)
    cases = [("flex-paged", paged("decode", (1,) * 4, kv, 16, causal=False, hq=8, d=64)),
             ("flex-paged", paged("mixed", (160, 130), (400, 130), 32, hq=8, d=64)),
             ("flex", Case("t", "decode", (1,) * 4, kv, 8, 2, 64, "bf16", False, "list", seed=1))]
    for name, case in cases:
        inputs = build_inputs(case, "cpu")
        prepared = get_backend(name).prepare(case, inputs)
        out = prepared.to_packed(prepared.run())
        check = check_output(out, inputs)
        assert check.ok, (name, case.phase, check.reason)
