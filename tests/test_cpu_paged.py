"""cpu-paged (kernels/cpu/paged_attention.cpp) against the float64 reference, sequence by sequence.

Every case mixes very short and long contexts in one batch: a batch-wide error norm would hide a wrong
short sequence behind the long ones. The kernel writes into a NaN-poisoned buffer, so an element it
forgot to write fails the comparison.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from attnbench import cpu_build
from attnbench.backends import get_backend
from attnbench.backends.cpu_paged import BLOCK_SIZES, MIN_FLOPS_PER_THREAD, query_tile, thread_count
from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.measure import measure_memory

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ with OpenMP")

TOL = {"fp32": 1e-5, "bf16": 1.5e-2, "fp16": 2e-3}  # per-sequence relative L2 error
MIXED_KV = (1, 3, 40, 17, 700)  # short and long contexts together


def run_kernel(case: Case, threads: int = 2) -> tuple[torch.Tensor, object]:
    """The kernel's output for the case, written into a NaN-filled buffer, and the case's inputs."""
    inputs = build_inputs(case, "cpu")
    paged = inputs.paged
    lib = cpu_build.load()
    tile = query_tile(case)
    out = torch.full_like(inputs.q, float("nan"))
    per_thread = lib.paged_scratch_floats(case.num_q_heads, case.num_kv_heads, case.head_dim, case.block_size,
                                          tile)
    scratch = torch.empty(threads * per_thread)
    tables = paged.block_tables.to(torch.int32).contiguous()
    kv_lens = paged.kv_lens.to(torch.int32).contiguous()
    cu_q = inputs.cu_seqlens_q.to(torch.int32).contiguous()
    lib.paged_attention(
        out=out.data_ptr(), q=inputs.q.data_ptr(), k_cache=paged.k_cache.data_ptr(),
        v_cache=paged.v_cache.data_ptr(), block_tables=tables.data_ptr(), kv_lens=kv_lens.data_ptr(),
        cu_seqlens_q=cu_q.data_ptr(), batch=case.batch, num_q_heads=case.num_q_heads,
        num_kv_heads=case.num_kv_heads, head_dim=case.head_dim, num_blocks=paged.k_cache.shape[0],
        block_size=case.block_size, table_stride=tables.shape[1], dtype=cpu_build.DTYPE_CODES[case.dtype],
        causal=case.causal, scale=case.softmax_scale, query_tile=tile, num_threads=threads,
        scratch=scratch.data_ptr(), scratch_floats=scratch.numel(),
    )
    return out, inputs


def assert_each_sequence_close(out: torch.Tensor, inputs, tol: float) -> None:
    for i, (rows, _) in enumerate(inputs.seq_slices()):
        ref = inputs.reference[rows]
        err = (torch.linalg.vector_norm(out[rows].float() - ref) / torch.linalg.vector_norm(ref)).item()
        assert err <= tol, f"sequence {i} (kv_len {inputs.case.kv_lens[i]}): relative error {err:.3g} > {tol}"


def decode_case(dtype: str = "fp32", block_size: int = 16, layout: str = "shuffled", hq: int = 8,
                hkv: int = 2, d: int = 64) -> Case:
    return Case("t", "decode", (1,) * len(MIXED_KV), MIXED_KV, hq, hkv, d, dtype, False,
                block_size=block_size, kv_layout=layout)


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_decode_every_claimed_block_size_per_sequence(block_size):
    out, inputs = run_kernel(decode_case(block_size=block_size))
    assert_each_sequence_close(out, inputs, TOL["fp32"])


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2), (8, 1)])
def test_decode_dtypes_and_gqa(dtype, heads):
    out, inputs = run_kernel(decode_case(dtype=dtype, hq=heads[0], hkv=heads[1]))
    assert_each_sequence_close(out, inputs, TOL[dtype])


@pytest.mark.parametrize("head_dim", [40, 80, 128, 256])
def test_decode_head_dims(head_dim):
    out, inputs = run_kernel(decode_case(d=head_dim, block_size=32))
    assert_each_sequence_close(out, inputs, TOL["fp32"])


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block_size", [1, 16, 64])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_prefill_mixed_lengths(causal, block_size, dtype):
    lens = (1, 37, 5, 90)  # 90 > the 16-row query tile: several tiles, a partial last one
    case = Case("t", "prefill", lens, lens, 4, 2, 64, dtype, causal, block_size=block_size)
    out, inputs = run_kernel(case)
    assert_each_sequence_close(out, inputs, TOL[dtype])


@pytest.mark.parametrize("block_size", [8, 16, 256])
def test_chunked_prefill_bottom_right_causal(block_size):
    case = Case("t", "mixed", (32, 1, 7, 20), (160, 9, 7, 300), 4, 1, 64, "fp32", True, block_size=block_size)
    out, inputs = run_kernel(case)
    assert_each_sequence_close(out, inputs, TOL["fp32"])


def test_shuffled_and_contiguous_blocks_give_the_same_output():
    shuffled, _ = run_kernel(decode_case(layout="shuffled"))
    contiguous, _ = run_kernel(decode_case(layout="contiguous"))
    torch.testing.assert_close(shuffled, contiguous, rtol=0, atol=0)


def test_one_and_two_threads_agree():
    case = Case("t", "prefill", (50, 120), (50, 120), 4, 2, 64, "fp32", True, block_size=16)
    one, _ = run_kernel(case, threads=1)
    two, _ = run_kernel(case, threads=2)
    torch.testing.assert_close(one, two, rtol=0, atol=0)


def test_bad_block_table_and_lengths_are_refused_with_the_reason():
    case = decode_case()
    inputs = build_inputs(case, "cpu")
    paged = inputs.paged
    lib = cpu_build.load()
    out = torch.empty_like(inputs.q)
    scratch = torch.empty(lib.paged_scratch_floats(8, 2, 64, 16, 1))
    tables = paged.block_tables.to(torch.int32).clone()
    kv_lens = paged.kv_lens.to(torch.int32).clone()
    cu_q = inputs.cu_seqlens_q.to(torch.int32)

    def call() -> None:
        lib.paged_attention(
            out=out.data_ptr(), q=inputs.q.data_ptr(), k_cache=paged.k_cache.data_ptr(),
            v_cache=paged.v_cache.data_ptr(), block_tables=tables.data_ptr(), kv_lens=kv_lens.data_ptr(),
            cu_seqlens_q=cu_q.data_ptr(), batch=case.batch, num_q_heads=8, num_kv_heads=2, head_dim=64,
            num_blocks=paged.k_cache.shape[0], block_size=16, table_stride=tables.shape[1], dtype=0,
            causal=False, scale=0.125, query_tile=1, num_threads=1, scratch=scratch.data_ptr(),
            scratch_floats=scratch.numel(),
        )

    call()  # the inputs as built are fine
    tables[4, 0] = paged.k_cache.shape[0]
    with pytest.raises(cpu_build.KernelError, match="sequence 4: block table entry 0"):
        call()
    tables[4, 0] = 0
    kv_lens[1] = 0  # shorter than its one query token
    with pytest.raises(cpu_build.KernelError, match="sequence 1: q_len 1 must be within 0 .. kv_len 0"):
        call()
    with pytest.raises(cpu_build.KernelError, match="num_q_heads must be a positive multiple"):
        lib.paged_scratch_floats(8, 3, 64, 16, 1)


def test_backend_rows_ok_and_working_memory_counts_the_scratch():
    backend = get_backend("cpu-paged")
    assert backend.available("cpu") == (True, "")
    assert not backend.supports(decode_case(block_size=24))[0]
    case = Case("t", "decode", (1,) * 4, (900, 1000, 1100, 1200), 8, 2, 64, "fp32", False, block_size=16)
    inputs = build_inputs(case, "cpu")
    prepared = backend.prepare(case, inputs)
    out, mem = measure_memory(prepared.run, torch.device("cpu"))
    assert_each_sequence_close(out, inputs, TOL["fp32"])
    threads = prepared.info["threads"]
    scratch_bytes = 4 * threads * cpu_build.load().paged_scratch_floats(8, 2, 64, 16, 1)
    # the output buffer is allocated in prepare: the call's memory is its scratch, exactly
    assert mem["peak_mem_bytes"] == mem["working_mem_bytes"] == scratch_bytes


def test_small_work_stays_on_one_thread():
    tiny = decode_case()
    assert thread_count(tiny, 8) == 1
    big = Case("t", "prefill", (2048,), (2048,), 32, 8, 128, "bf16", True, block_size=16)
    assert thread_count(big, 8) == 8
    from attnbench import metrics

    assert thread_count(big, 10**9) == metrics.flops(big) // MIN_FLOPS_PER_THREAD
