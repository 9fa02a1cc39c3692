"""A tiny Triton kernel that folds two tiles of given scores through online_softmax.online_softmax_update
(tests/test_triton_kernels.py). Import it only once TRITON_INTERPRET=1 is set and the kernels package is
loaded (its @triton.jit decides at import time)."""

from __future__ import annotations

import triton
import triton.language as tl
from attnbench_kernels.triton.online_softmax import online_softmax_update


@triton.jit
def two_tiles_kernel(S, V, Out, L, M, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """S (2, BLOCK_M, BLOCK_N): log2-unit scores; V (2, BLOCK_N, BLOCK_D); out: acc, l and m after both."""
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    dims = tl.arange(0, BLOCK_D)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for tile in tl.static_range(2):
        s = tl.load(S + tile * BLOCK_M * BLOCK_N + rows[:, None] * BLOCK_N + cols[None, :])
        v = tl.load(V + tile * BLOCK_N * BLOCK_D + cols[:, None] * BLOCK_D + dims[None, :])
        acc, l_i, m_i = online_softmax_update(acc, l_i, m_i, s, 1.0, v)
    tl.store(Out + rows[:, None] * BLOCK_D + dims[None, :], acc)
    tl.store(L + rows, l_i)
    tl.store(M + rows, m_i)
