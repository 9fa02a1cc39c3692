"""The FlashInfer calls the `flashinfer` backends make: page metadata, wrapper, plan(), run().

FlashInfer's paged KV is CSR-shaped: kv_indptr (B + 1,) offsets into kv_indices, the pages of every
sequence one after another, and kv_last_page_len (B,) the tokens in each sequence's last page
(1 .. page_size). All three are built here from the harness's block tables and KV lengths, so the
kernel reads the harness's pool pages in the harness's (shuffled) order. The pool itself is handed
over as the (k_cache, v_cache) tuple that FlashInfer's NHD layout takes, each
(num_pages, page_size, num_kv_heads, head_dim): exactly attnbench's pool tensors, no copy.

Every call passes its arguments by keyword: FlashInfer deprecates positional plan() arguments and
moves keywords between minor versions, and a keyword that is gone fails loudly instead of landing
in the wrong slot. plan() runs in prepare (untimed: it copies the metadata to the host, picks the
split-KV schedule and, on first use, JIT-compiles the module); run() is the timed work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from attnbench.backends._flashinfer_api import WORKSPACE_BYTES, FlashInferLib
from attnbench.case import Case
from attnbench.inputs import TORCH_DTYPES, Inputs

# The paths, as written to the row's fi_path.
DECODE_TC, DECODE_CUDA_CORE, DECODE_FA3 = "decode-fa2-tc", "decode-fa2", "decode-fa3"
PREFILL_PAGED, PREFILL_RAGGED = "prefill-paged", "prefill-ragged"
KV_LAYOUT_USED = ("NHD (k_cache, v_cache) tuple, each (num_pages, page_size, Hkv, D): "
                  "the pool as given, no copy")

_workspaces: dict[str, torch.Tensor] = {}


def workspace(device: torch.device) -> torch.Tensor:
    """One zeroed float workspace per device, shared by every wrapper (FlashInfer needs it zeroed
    before its first use only). It holds split-KV partial outputs between the kernel and the merge
    of one run(), so wrappers whose runs are serialised on one stream can share it; allocating
    128 MB per point would only churn the allocator."""
    key = str(device)
    if key not in _workspaces:
        _workspaces[key] = torch.zeros(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
    return _workspaces[key]


@dataclass(frozen=True)
class PageMetadata:
    indptr: torch.Tensor  # int32 (B + 1,): sequence i's pages are indices[indptr[i]:indptr[i + 1]]
    indices: torch.Tensor  # int32 (total pages,): pool page ids in each sequence's order
    last_page_len: torch.Tensor  # int32 (B,): tokens in the last page, 1 .. page_size


def page_metadata(block_tables: torch.Tensor, kv_lens: tuple[int, ...], page_size: int) -> PageMetadata:
    """FlashInfer's CSR page table from the harness's padded block tables.

    Sequence i with n_i tokens holds ceil(n_i / page_size) pages: the first entries of its block
    table row (the rest is padding). Its last page holds n_i - (pages_i - 1) * page_size tokens.
    """
    device = block_tables.device
    pages = torch.tensor([-(-n // page_size) for n in kv_lens], dtype=torch.int64)
    if int(pages.max()) > block_tables.shape[1]:
        width = block_tables.shape[1]
        raise ValueError(f"block tables of width {width} cannot hold {int(pages.max())} pages")
    indptr = torch.zeros(len(kv_lens) + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(pages, 0)
    used = torch.arange(block_tables.shape[1])[None, :] < pages[:, None]  # (B, width), row-major
    indices = block_tables[used.to(device)].to(torch.int32)
    last = torch.tensor(kv_lens, dtype=torch.int64) - (pages - 1) * page_size
    return PageMetadata(indptr.to(torch.int32).to(device), indices.contiguous(),
                        last.to(torch.int32).to(device))


def pattern_kwargs(case: Case) -> dict[str, Any]:
    """Case.window / softcap / alibi as FlashInfer's plan() keywords.

    window_left is the left context in tokens (the mask keeps keys j >= p - window_left), -1 for
    none; logits_soft_cap 0 disables the cap; ALiBi is a position-encoding mode.
    """
    return {
        "pos_encoding_mode": "ALIBI" if case.alibi else "NONE",
        "window_left": -1 if case.window is None else int(case.window),
        "logits_soft_cap": 0.0 if case.softcap is None else float(case.softcap),
    }


@dataclass
class Planned:
    """A planned wrapper; run() is the timed call."""

    path: str
    backend: str  # fa2 | fa3
    wrapper: Any
    run_kwargs: dict[str, Any]
    pages: int  # pages the kernel reads (0 for ragged)

    def run(self) -> torch.Tensor:
        return self.wrapper.run(**self.run_kwargs)


def _dtypes(case: Case) -> dict[str, Any]:
    dtype = TORCH_DTYPES[case.dtype]
    return {"q_data_type": dtype, "kv_data_type": dtype}


def plan_decode(lib: FlashInferLib, case: Case, inputs: Inputs, path: str) -> Planned:
    """BatchDecodeWithPagedKVCacheWrapper: one query token per sequence over the paged pool.

    decode-fa2-tc runs FlashInfer's prefill kernel on tensor cores (use_tensor_cores=True: the GQA
    group's query heads form the MMA rows), decode-fa2 its CUDA-core decode kernel, decode-fa3 the
    tensor-core path on the sm90 FA3 kernels.
    """
    paged = inputs.paged
    assert paged is not None
    meta = page_metadata(paged.block_tables, case.kv_lens, paged.block_size)
    tensor_cores = path in (DECODE_TC, DECODE_FA3)
    backend = "fa3" if path == DECODE_FA3 else "fa2"
    wrapper = lib.module.BatchDecodeWithPagedKVCacheWrapper(
        float_workspace_buffer=workspace(inputs.device), kv_layout="NHD",
        use_tensor_cores=tensor_cores, backend=backend)
    wrapper.plan(
        indptr=meta.indptr, indices=meta.indices, last_page_len=meta.last_page_len,
        num_qo_heads=case.num_q_heads, num_kv_heads=case.num_kv_heads, head_dim=case.head_dim,
        page_size=paged.block_size, sm_scale=case.softmax_scale, **pattern_kwargs(case), **_dtypes(case))
    out = torch.empty_like(inputs.q)
    run_kwargs = {"q": inputs.q, "paged_kv_cache": (paged.k_cache, paged.v_cache), "out": out}
    return Planned(path, backend, wrapper, run_kwargs, int(meta.indices.numel()))


def plan_paged_prefill(lib: FlashInferLib, case: Case, inputs: Inputs, backend: str) -> Planned:
    """BatchPrefillWithPagedKVCacheWrapper: q_len new tokens at the end of each paged context
    (prefill with the prompt in the cache, or a chunk of a chunked prefill); causal aligns
    bottom-right as attnbench's does."""
    paged = inputs.paged
    assert paged is not None
    meta = page_metadata(paged.block_tables, case.kv_lens, paged.block_size)
    wrapper = lib.module.BatchPrefillWithPagedKVCacheWrapper(
        float_workspace_buffer=workspace(inputs.device), kv_layout="NHD", backend=backend)
    wrapper.plan(
        qo_indptr=inputs.cu_seqlens_q, paged_kv_indptr=meta.indptr, paged_kv_indices=meta.indices,
        paged_kv_last_page_len=meta.last_page_len, num_qo_heads=case.num_q_heads,
        num_kv_heads=case.num_kv_heads, head_dim_qk=case.head_dim, page_size=paged.block_size,
        causal=case.causal, sm_scale=case.softmax_scale, **pattern_kwargs(case), **_dtypes(case))
    out = torch.empty_like(inputs.q)
    run_kwargs = {"q": inputs.q, "paged_kv_cache": (paged.k_cache, paged.v_cache), "out": out}
    return Planned(PREFILL_PAGED, backend, wrapper, run_kwargs, int(meta.indices.numel()))


def plan_ragged_prefill(lib: FlashInferLib, case: Case, inputs: Inputs, backend: str) -> Planned:
    """BatchPrefillWithRaggedKVCacheWrapper: contiguous packed K/V (varlen), the harness's
    cu_seqlens as qo_indptr / kv_indptr."""
    wrapper = lib.module.BatchPrefillWithRaggedKVCacheWrapper(
        float_workspace_buffer=workspace(inputs.device), kv_layout="NHD", backend=backend)
    wrapper.plan(
        qo_indptr=inputs.cu_seqlens_q, kv_indptr=inputs.cu_seqlens_k, num_qo_heads=case.num_q_heads,
        num_kv_heads=case.num_kv_heads, head_dim_qk=case.head_dim, causal=case.causal,
        sm_scale=case.softmax_scale, **pattern_kwargs(case), **_dtypes(case))
    out = torch.empty_like(inputs.q)
    run_kwargs = {"q": inputs.q, "k": inputs.k, "v": inputs.v, "out": out}
    return Planned(PREFILL_RAGGED, backend, wrapper, run_kwargs, 0)


def plan_for(lib: FlashInferLib, case: Case, inputs: Inputs, path: str, backend: str) -> Planned:
    planners: dict[str, Callable[[], Planned]] = {
        PREFILL_PAGED: lambda: plan_paged_prefill(lib, case, inputs, backend),
        PREFILL_RAGGED: lambda: plan_ragged_prefill(lib, case, inputs, backend),
    }
    return planners[path]() if path in planners else plan_decode(lib, case, inputs, path)
