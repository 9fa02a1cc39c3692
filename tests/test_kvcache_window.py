"""A windowed KV cache frees the blocks that fall out of the window; the memory study's window variant."""

from __future__ import annotations

import pytest

from attnbench.fragmentation_window import replay, window_study
from attnbench.kvcache import DROPPED_BLOCK, KVCacheManager


def test_free_out_of_window_releases_only_dead_blocks():
    mgr = KVCacheManager(10, 4, enable_prefix_caching=False)
    mgr.add_request("a", num_tokens=20)  # blocks 0..4 hold tokens 0..19
    table = mgr.block_table("a")
    # the latest query (position 19) sees keys >= 13: blocks 0, 1, 2 (tokens 0..11) are dead
    freed = mgr.free_out_of_window("a", 6)
    assert freed == table[:3] and mgr.num_free_blocks == 10 - 2
    assert mgr.block_table("a") == [DROPPED_BLOCK] * 3 + table[3:]
    assert mgr.free_out_of_window("a", 6) == []  # nothing new fell out
    mgr.append_tokens("a", 1)  # 21 tokens: keys >= 14 still start in block 3
    assert mgr.free_out_of_window("a", 6) == []
    mgr.append_tokens("a", 3)  # 24 tokens: keys >= 17 start in block 4; block 3 is dead
    assert mgr.free_out_of_window("a", 6) == [table[3]]
    mgr.append_tokens("a", 1)  # a new block at the boundary: tokens 24.. need logical block 6
    assert len(mgr.block_table("a")) == 7
    mgr.check_invariants()
    mgr.free("a")
    assert mgr.num_free_blocks == 10
    mgr.check_invariants()
    with pytest.raises(ValueError):
        mgr.free_out_of_window("x", -1)


def test_window_study_by_hand():
    # full: ceil(150/16) + ceil(90/16) = 10 + 6 blocks at the end
    full = replay([100, 40], [50, 50], 16, None)
    assert full["peak_blocks"] == 16
    # windowed (32): a request holds keys n-33 .. n-1, at most 3 blocks of 16
    study = window_study([100, 40], [50, 50], 16, 32)
    assert study["full"]["peak_blocks"] == 16
    assert study["windowed"]["peak_blocks"] <= 6
    assert study["peak_saved"] >= 1 - 6 / 16
    assert study["requests_per_pool"]["windowed"] >= 2 * 16 / 6 - 1e-9


def test_window_larger_than_every_context_frees_nothing():
    full = replay([30, 10], [5, 5], 16, None)
    assert replay([30, 10], [5, 5], 16, 1000)["peak_blocks"] == full["peak_blocks"]
