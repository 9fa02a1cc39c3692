"""What cuda-flash and cuda-paged claim for the score patterns, and how the window steers cuda-paged's
v1/v2 choice (no GPU or nvcc needed; the kernels themselves: scripts/gpu_cuda_patterns_check.py)."""

from __future__ import annotations

import pytest

from attnbench.backends.cuda_flash import CudaFlash
from attnbench.backends.cuda_paged import CudaPaged, attended_context, choose_variant, partition_tokens
from attnbench.case import Case


def decode(**kw) -> Case:
    return Case("t", "decode", (1, 1), (8192, 32768), 32, 8, 128, "bf16", True, block_size=16, **kw)


def prefill(**kw) -> Case:
    return Case("t", "prefill", (300, 2048), (300, 2048), 32, 8, 128, "bf16", True, **kw)


@pytest.mark.parametrize("pattern", [dict(window=4096), dict(softcap=50.0), dict(window=0, softcap=30.0)])
def test_cuda_backends_run_window_and_softcap(pattern):
    assert {"window", "softcap"} <= CudaPaged.patterns and {"window", "softcap"} <= CudaFlash.patterns
    assert CudaPaged().supports(decode(**pattern)) == (True, "")
    assert CudaFlash().supports(prefill(**pattern)) == (True, "")
    mixed = Case("t", "mixed", (16, 64), (4000, 9000), 8, 8, 64, "fp16", True, window=1024, **{
        k: v for k, v in pattern.items() if k != "window"})
    assert CudaFlash().supports(mixed) == (True, "")


def test_cuda_backends_run_alibi():
    assert "alibi" in CudaPaged.patterns and "alibi" in CudaFlash.patterns
    assert CudaPaged().supports(decode(alibi=True, window=4096)) == (True, "")
    assert CudaFlash().supports(prefill(alibi=True, softcap=50.0)) == (True, "")


def test_window_bounds_the_attended_context():
    assert attended_context(decode()) == 32768
    assert attended_context(decode(window=4096)) == 4097
    assert attended_context(decode(window=100_000)) == 32768
    assert attended_context(decode(window=0)) == 1


def test_window_steers_the_variant_and_partitions():
    # A window of 512 tokens leaves too little per block for v2 to repay its merge, whatever the context.
    slots, work = 528, 16
    assert choose_variant(work, attended_context(decode()), slots) == "v2"
    assert choose_variant(work, attended_context(decode(window=512)), slots) == "v1"
    # v2 splits the window's span, not the context: smaller partitions for the same fill.
    full = partition_tokens(work, attended_context(decode()), slots)
    windowed = partition_tokens(work, attended_context(decode(window=4096)), slots)
    assert windowed < full
