"""cpu-paged: attnbench's own paged attention for a CPU (kernels/cpu/paged_attention.cpp, C++ with OpenMP).

Reads the harness's NHD block pool through the block tables as given (no gather, no conversion) for
decode, prefill and chunked prefill. One work item is (sequence, query tile, KV head), the tile's
query heads sharing each K/V block read; the OpenMP team is torch's thread count (fewer for small work),
and the library shares torch's OpenMP runtime (libgomp.so.1 is the one torch loaded), so the kernel and
torch's own CPU kernels use one thread pool. The per-thread float32 scratch (widened K/V blocks,
accumulators) is allocated inside the timed call, so the row's working memory counts it.

Patterns: sliding window (blocks wholly before the window are never read), logit soft-capping and
ALiBi, all run-time kernel arguments (a new window size or cap reuses the same library).
"""

from __future__ import annotations

import functools

import torch

from attnbench import cpu_build, metrics
from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.patterns import alibi_slopes

DTYPES = ("fp32", "fp16", "bf16")
BLOCK_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_HEAD_DIM = 1024  # the kernel's bound (kMaxHeadDim)
# Query rows per work item in prefill: enough (row, head) pairs per K/V block read to amortise its
# float32 widening, few enough that the scratch stays in L2 (16 x 8 heads x 128 x 4 B = 64 KiB).
PREFILL_QUERY_TILE = 16


# Below this much work per thread, waking another thread and waiting for it at the region's end
# costs more than it saves (far more on a busy machine, where the woken thread may wait a whole
# scheduler slice for a core); ~0.5 ms of one core at a few GFLOP/s. torch's own CPU kernels keep
# small work on one thread the same way (a grain size).
MIN_FLOPS_PER_THREAD = 4_000_000


def query_tile(case: Case) -> int:
    return 1 if case.max_q == 1 else min(PREFILL_QUERY_TILE, case.max_q)


def thread_count(case: Case, available: int) -> int:
    """OpenMP threads for the case: torch's count, fewer when the work is too small to share."""
    return max(1, min(available, metrics.flops(case) // MIN_FLOPS_PER_THREAD))


@register
class CpuPaged(Backend):
    name = "cpu-paged"
    family = "paged"
    impl = "cpp"
    purpose = "paged attention over block tables on a CPU (C++/OpenMP, online softmax in float32)"
    memory_model = "paged KV cache: fixed-size blocks scattered in a pool, read through block tables"
    kv_inputs = ("paged",)
    devices = ("cpu",)
    patterns = frozenset({"window", "softcap", "alibi"})

    def available(self, device: str) -> tuple[bool, str]:
        ok, reason = super().available(device)
        return (ok, reason) if not ok else cpu_build.toolchain_status()

    def supports(self, case: Case) -> tuple[bool, str]:
        if not case.paged:
            return False, "needs a paged KV cache (a block size)"
        if case.dtype not in DTYPES:
            return False, f"dtype {case.dtype}: allowed {', '.join(DTYPES)}"
        if case.block_size not in BLOCK_SIZES:
            return False, f"block_size {case.block_size}: allowed {', '.join(map(str, BLOCK_SIZES))}"
        if case.head_dim > MAX_HEAD_DIM:
            return False, f"head_dim {case.head_dim}: allowed 1 .. {MAX_HEAD_DIM}"
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        ok, reason = self.supports(case)
        if not ok:
            raise Unsupported(reason)
        paged = inputs.paged
        assert paged is not None
        lib = cpu_build.load()
        q = inputs.q.contiguous()
        k_cache, v_cache = paged.k_cache.contiguous(), paged.v_cache.contiguous()
        tables = paged.block_tables.to(torch.int32).contiguous()
        kv_lens = paged.kv_lens.to(torch.int32).contiguous()
        cu_q = inputs.cu_seqlens_q.to(torch.int32).contiguous()
        out = torch.empty_like(q)
        tile = query_tile(case)
        threads = thread_count(case, torch.get_num_threads())
        per_thread = lib.paged_scratch_floats(case.num_q_heads, case.num_kv_heads, case.head_dim,
                                              paged.block_size, tile)
        slopes = torch.tensor(alibi_slopes(case.num_q_heads), dtype=torch.float32) if case.alibi else None
        attention = functools.partial(  # the call's arguments, bound once outside the timed call
            lib.paged_attention,
            out=out.data_ptr(), q=q.data_ptr(), k_cache=k_cache.data_ptr(), v_cache=v_cache.data_ptr(),
            block_tables=tables.data_ptr(), kv_lens=kv_lens.data_ptr(), cu_seqlens_q=cu_q.data_ptr(),
            batch=case.batch, num_q_heads=case.num_q_heads, num_kv_heads=case.num_kv_heads,
            head_dim=case.head_dim, num_blocks=k_cache.shape[0], block_size=paged.block_size,
            table_stride=tables.shape[1], dtype=cpu_build.DTYPE_CODES[case.dtype], causal=case.causal,
            scale=case.softmax_scale, query_tile=tile, num_threads=threads,
            window=case.window, softcap=case.softcap,
            alibi_slopes=slopes.data_ptr() if slopes is not None else 0,  # 0: none, the default
        )
        keep = (q, k_cache, v_cache, tables, kv_lens, cu_q, slopes)  # alive as long as run()

        def run() -> torch.Tensor:
            _ = keep
            scratch = torch.empty(threads * per_thread, dtype=torch.float32)
            attention(scratch=scratch.data_ptr(), scratch_floats=scratch.numel())
            return out

        info = {"query_tile": tile, "threads": threads, "pattern": case.pattern,
                "kv_layout_used": "NHD (num_blocks, block_size, num_kv_heads, head_dim), as given"}
        return Prepared(run=run, to_packed=lambda o: o, info=info)
