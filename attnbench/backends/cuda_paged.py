"""cuda-paged: attnbench's own CUDA paged-attention decode (kernels/cuda/paged_attention.cu).

Two variants of one kernel: v1 walks each sequence's whole context in one thread block per
(sequence, KV head); v2 cuts the context into partitions computed by separate blocks and merged by a
second kernel. v2 pays off when v1 would leave most of the GPU idle (few sequences x KV heads, long
contexts); the choice is automatic, recorded in the row's "variant", and ATTNBENCH_CUDA_PAGED_VARIANT
(v1 | v2) overrides it.

Two implementations of both (row column "paged_impl"; ATTNBENCH_CUDA_PAGED_IMPL overrides): "tc"
(default) packs up to 16 query heads of a KV group as the rows of m16n8k16 tensor-core MMAs for
QK^T and PV, each warp keeping its own softmax state over its tokens; "simt", the first kernel, does
those dot products on FP32 CUDA cores (8 heads per block at most).

An fp8 KV cache (kv_dtype fp8_e4m3, a float32 scale per tensor or per KV head) runs on "tc" alone: its
tiles move as one byte per element and are widened to the query's dtype in registers, K's scale folded
into the softmax scale and V's into the output (one block serves one KV head). "simt" refuses it.

Sliding window, logit soft-cap and ALiBi are run-time kernel arguments (no rebuild per window size): v1
starts its walk at the window's first token; v2 sizes its partitions for the window's span
(min(context, window + 1) tokens, see attended_context) and its partitions wholly before the window
return at once, the merge skipping them.
"""

from __future__ import annotations

import functools
import math
import os

import torch

from attnbench import cuda_lib
from attnbench.backends._cuda_common import DTYPES, cuda_available, current_stream, dtype_code
from attnbench.backends.base import Backend, Prepared, Unsupported, register
from attnbench.case import Case
from attnbench.inputs import Inputs
from attnbench.patterns import alibi_slopes

HEAD_DIMS = (64, 128, 256)
BLOCK_SIZES = (8, 16, 32, 64, 128)
VARIANTS = ("v1", "v2")
VARIANT_ENV = "ATTNBENCH_CUDA_PAGED_VARIANT"
IMPL_ENV = "ATTNBENCH_CUDA_PAGED_IMPL"  # tc | simt
TC_HEADS_PER_BLOCK = 16  # the MMA's rows (kTcRows in paged_attention.cu)
PARTITION_ENV = "ATTNBENCH_CUDA_PAGED_PARTITION"  # v2 partition size in tokens (tuning only)
V2_MIN_CONTEXT = 1024  # shorter contexts: a partition would hold too few tiles to repay the merge
MIN_PARTITION = 256
PARTITION_ALIGN = 64  # the kernel's largest token tile
KV_LAYOUT_USED = "NHD (num_blocks, block_size, num_kv_heads, head_dim), as given"


def attended_context(case: Case) -> int:
    """Longest span of tokens a decode query reads: max context, or at most window + 1 with a window."""
    return case.max_kv if case.window is None else min(case.max_kv, case.window + 1)


def heads_per_block(group: int, impl: str = "simt") -> int:
    """Query heads one thread block serves (mirrors heads_per_block and kTcRows in paged_attention.cu)."""
    if impl == "tc":
        return min(group, TC_HEADS_PER_BLOCK)
    return 1 if group <= 1 else 2 if group <= 2 else 4 if group <= 4 else 8


def work_items(batch: int, num_q_heads: int, num_kv_heads: int, impl: str = "simt") -> int:
    """Thread blocks v1 launches: sequences x KV heads x head tiles."""
    group = num_q_heads // num_kv_heads
    return batch * num_kv_heads * math.ceil(group / heads_per_block(group, impl))


def fp8_kv_reason(case: Case) -> str:
    """Why the implementation ATTNBENCH_CUDA_PAGED_IMPL picks cannot read the case's KV cache ("" when it
    can): an fp8 cache needs tc."""
    if not case.kv_quantised:
        return ""
    try:
        impl = choose_impl(os.environ.get(IMPL_ENV) or None)
    except ValueError as e:
        return str(e)
    if impl == "tc":
        return ""
    return (f"kv_dtype {case.kv_dtype}: {IMPL_ENV}={impl} reads {'/'.join(DTYPES)} K/V only; "
            f"fp8 runs on impl tc (the default)")


def choose_impl(override: str | None = None) -> str:
    """tc unless ATTNBENCH_CUDA_PAGED_IMPL says simt."""
    if override and override not in cuda_lib.PAGED_IMPLS:
        raise ValueError(f"{IMPL_ENV}={override!r}: allowed {', '.join(cuda_lib.PAGED_IMPLS)}")
    return override or "tc"


def choose_variant(work: int, max_kv: int, slots: int, override: str | None = None) -> str:
    """v2 when v1's blocks fill at most half of the GPU's resident-block slots and contexts are long.

    slots = SMs x blocks per SM (occupancy). With work >= slots / 2, v1 already keeps the memory
    system busy and v2 would only add the partial-output traffic and the merge kernel.
    """
    if override:
        if override not in VARIANTS:
            raise ValueError(f"{VARIANT_ENV}={override!r}: allowed {', '.join(VARIANTS)}")
        return override
    return "v2" if max_kv >= V2_MIN_CONTEXT and slots // max(work, 1) >= 2 else "v1"


def partition_tokens(work: int, max_kv: int, slots: int) -> int:
    """Partition size that makes work x partitions fill the slots once (one wave, no straggler wave)."""
    parts = max(1, slots // max(work, 1))
    tokens = math.ceil(max_kv / parts)
    tokens = PARTITION_ALIGN * math.ceil(tokens / PARTITION_ALIGN)
    return max(MIN_PARTITION, tokens)


@register
class CudaPaged(Backend):
    name = "cuda-paged"
    family = "paged"
    impl = "cuda"
    purpose = "paged-attention decode over block tables (CUDA C++, v1 one-pass / v2 split-K)"
    memory_model = "paged KV cache: fixed-size blocks scattered in a pool, read through block tables"
    kv_inputs = ("paged",)
    devices = ("cuda",)
    patterns = frozenset({"window", "softcap", "alibi"})
    kv_dtypes = frozenset({"auto", "fp8_e4m3"})

    def available(self, device: str) -> tuple[bool, str]:
        ok, reason = super().available(device)
        return (ok, reason) if not ok else cuda_available(device)

    def supports(self, case: Case) -> tuple[bool, str]:
        if not case.paged:
            return False, "needs a paged KV cache (a block size)"
        if case.phase != "decode" or case.max_q != 1:
            return False, f"phase {case.phase}: decode only (one query token per sequence)"
        if case.dtype not in DTYPES:
            return False, f"dtype {case.dtype}: allowed {', '.join(DTYPES)}"
        if case.head_dim not in HEAD_DIMS:
            return False, f"head_dim {case.head_dim}: allowed {', '.join(map(str, HEAD_DIMS))}"
        if case.block_size not in BLOCK_SIZES:
            return False, f"block_size {case.block_size}: allowed {', '.join(map(str, BLOCK_SIZES))}"
        fp8_why = fp8_kv_reason(case)
        if fp8_why:
            return False, fp8_why
        return True, ""

    def prepare(self, case: Case, inputs: Inputs) -> Prepared:
        ok, reason = self.supports(case)
        if not ok:
            raise Unsupported(reason)
        paged = inputs.paged
        assert paged is not None
        assert case.block_size is not None, "supports() admits only block sizes in BLOCK_SIZES"
        lib = cuda_lib.load()
        code = dtype_code(case.dtype)
        q = inputs.q.contiguous()
        k_cache, v_cache = paged.k_cache.contiguous(), paged.v_cache.contiguous()
        tables = paged.block_tables.to(torch.int32).contiguous()
        kv_lens = paged.kv_lens.to(torch.int32).contiguous()
        out = torch.empty_like(q)
        kv_code = cuda_lib.KV_DTYPE_CODES[case.kv_dtype]
        k_scale = v_scale = None
        if case.kv_quantised:  # (1,) or (Hkv,) float32 each, as the inputs hold them
            assert inputs.k_scale is not None and inputs.v_scale is not None, "a quantised case has scales"
            k_scale = inputs.k_scale.to(device=q.device, dtype=torch.float32).contiguous()
            v_scale = inputs.v_scale.to(device=q.device, dtype=torch.float32).contiguous()
            if k_scale.numel() != v_scale.numel():
                raise Unsupported(f"k_scale has {k_scale.numel()} entries, v_scale {v_scale.numel()}: one "
                                  "granularity for both")

        try:
            impl = choose_impl(os.environ.get(IMPL_ENV) or None)
        except ValueError as e:
            raise Unsupported(str(e)) from None
        props = torch.cuda.get_device_properties(q.device)
        per_sm = lib.paged_blocks_per_sm(case.head_dim, case.num_q_heads, case.num_kv_heads, code, impl=impl,
                                         kv_dtype=kv_code)
        slots = props.multi_processor_count * max(1, per_sm)
        work = work_items(case.batch, case.num_q_heads, case.num_kv_heads, impl)
        try:
            # The window's span, not the context, is what a block walks (and what v2 splits).
            variant = choose_variant(work, attended_context(case), slots, os.environ.get(VARIANT_ENV) or None)
        except ValueError as e:
            raise Unsupported(str(e)) from None
        info: dict = {
            "variant": variant,
            "paged_impl": impl,
            "kv_layout_used": KV_LAYOUT_USED,
            "heads_per_block": heads_per_block(case.gqa_ratio, impl),
        }
        part_tokens, max_parts = 0, 0
        part_acc = part_ml = None
        if variant == "v2":
            env = os.environ.get(PARTITION_ENV)
            part_tokens = int(env) if env else partition_tokens(work, attended_context(case), slots)
            if part_tokens <= 0 or part_tokens % PARTITION_ALIGN:
                raise Unsupported(f"{PARTITION_ENV}={part_tokens}: a positive multiple of {PARTITION_ALIGN}")
            max_parts = math.ceil(case.max_kv / part_tokens)  # partitions index absolute positions
            part_acc = torch.empty(
                (case.batch, case.num_q_heads, max_parts, case.head_dim), dtype=torch.float32, device=q.device
            )
            part_ml = torch.empty(
                (case.batch, case.num_q_heads, max_parts, 2), dtype=torch.float32, device=q.device
            )
            info.update(partition_tokens=part_tokens, partitions=max_parts)

        slopes = (torch.tensor(alibi_slopes(case.num_q_heads), dtype=torch.float32, device=q.device)
                  if case.alibi else None)
        decode = functools.partial(  # the launch's arguments, bound once outside the timed call
            lib.paged_decode,
            out=out.data_ptr(),
            q=q.data_ptr(),
            k_cache=k_cache.data_ptr(),
            v_cache=v_cache.data_ptr(),
            block_tables=tables.data_ptr(),
            kv_lens=kv_lens.data_ptr(),
            batch=case.batch,
            num_q_heads=case.num_q_heads,
            num_kv_heads=case.num_kv_heads,
            head_dim=case.head_dim,
            block_size=case.block_size,
            table_stride=tables.shape[1],
            dtype=code,
            scale=case.softmax_scale,
            window=case.window,
            softcap=case.softcap,
            partition_tokens=part_tokens,
            part_acc=part_acc.data_ptr() if part_acc is not None else 0,
            part_ml=part_ml.data_ptr() if part_ml is not None else 0,
            max_partitions=max_parts,
            alibi_slopes=slopes.data_ptr() if slopes is not None else 0,
            kv_dtype=kv_code,
            k_scale=k_scale.data_ptr() if k_scale is not None else 0,
            v_scale=v_scale.data_ptr() if v_scale is not None else 0,
            kv_scales=k_scale.numel() if k_scale is not None else 0,
            impl=impl,
        )
        # alive as long as run()
        keep = (q, k_cache, v_cache, tables, kv_lens, part_acc, part_ml, slopes, k_scale, v_scale)

        def run() -> torch.Tensor:
            _ = keep
            decode(stream=current_stream())
            return out

        return Prepared(run=run, to_packed=lambda o: o, info=info)
