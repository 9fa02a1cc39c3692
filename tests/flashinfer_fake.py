"""A fake `flashinfer` module for CPU tests of the flashinfer backends.

Its three wrappers take keyword arguments only (a positional call raises TypeError), record every
constructor, plan() and run() call in `module.calls`, check FlashInfer's metadata rules (int32
indptr/indices/last_page_len, 1 <= last_page_len <= page_size, the NHD (k, v) tuple) and compute
attention from exactly what they are given: K/V gathered from the pool through kv_indices /
kv_indptr / kv_last_page_len, so a wrong page table gives a wrong output and the reference check
catches it. Patterns (window, soft-cap, ALiBi) are recorded but not computed.
"""

from __future__ import annotations

import types
from pathlib import Path

import torch

from attnbench.case import Case
from attnbench.inputs import reference_attention


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal: bool) -> torch.Tensor:
    lq, hq, d = q.shape
    case = Case("fake", "mixed", (lq,), (k.shape[0],), hq, k.shape[1], d, "fp32", causal)
    q_scaled = q.double() * (scale / case.softmax_scale)  # reference_attention applies d**-0.5
    return reference_attention(case, q_scaled, k.double(), v.double(), [0, lq], [0, k.shape[0]]).to(q.dtype)


def _gather(cache: torch.Tensor, pages: torch.Tensor, last: int) -> torch.Tensor:
    page_size = cache.shape[1]
    n = (len(pages) - 1) * page_size + last
    return cache[pages.long()].reshape(-1, cache.shape[2], cache.shape[3])[:n]


def _seq_kv(planned: dict, cache: torch.Tensor, i: int) -> torch.Tensor:
    """Sequence i's keys or values, read from the pool through the planned page table."""
    ip = planned["indptr"].tolist()
    return _gather(cache, planned["indices"][ip[i]:ip[i + 1]], int(planned["last"][i]))


def _check_meta(indptr, indices, last, page_size) -> None:
    for t in (indptr, indices, last):
        assert t.dtype == torch.int32 and t.is_contiguous(), "int32 contiguous metadata expected"
    assert int(indptr[-1]) == indices.numel(), "indptr[-1] must equal the number of indices"
    assert bool(((last >= 1) & (last <= page_size)).all()), "1 <= last_page_len <= page_size"


def make_fake(version: str = "0.7.2.post1", jit_dir: Path | None = None) -> types.ModuleType:
    mod = types.ModuleType("flashinfer")
    mod.__version__, mod.calls = version, []

    def jit_build(name: str) -> None:
        if jit_dir is not None:
            (jit_dir / name).mkdir(parents=True, exist_ok=True)
            (jit_dir / name / f"{name}.so").touch()  # what a real build leaves
            (jit_dir / "tmp").mkdir(exist_ok=True)  # the real package's scratch folder, no module

    class _Wrapper:
        kind = ""

        def __init__(self, *, float_workspace_buffer, kv_layout="NHD", backend="auto", **rest):
            assert float_workspace_buffer.dtype == torch.uint8
            self.ctor = dict(kv_layout=kv_layout, backend=backend, **rest)
            mod.calls.append((self.kind, "init", self.ctor))
            self.planned = None

    class BatchDecodeWithPagedKVCacheWrapper(_Wrapper):
        kind = "decode"

        def plan(self, *, indptr, indices, last_page_len, num_qo_heads, num_kv_heads, head_dim, page_size,
                 **kw):
            _check_meta(indptr, indices, last_page_len, page_size)
            self.planned = dict(indptr=indptr.clone(), indices=indices.clone(), last=last_page_len.clone(),
                                hq=num_qo_heads, hkv=num_kv_heads, d=head_dim, page_size=page_size, **kw)
            mod.calls.append((self.kind, "plan", self.planned))
            jit_build(f"decode_tc{self.ctor['use_tensor_cores']}_{self.ctor['backend']}_d{head_dim}")

        def run(self, *, q, paged_kv_cache, out=None):
            p = self.planned
            mod.calls.append((self.kind, "run", dict(q=q, paged_kv_cache=paged_kv_cache, out=out)))
            k_cache, v_cache = paged_kv_cache
            res = torch.cat([_attend(q[i:i + 1], _seq_kv(p, k_cache, i), _seq_kv(p, v_cache, i),
                                     p["sm_scale"], False) for i in range(q.shape[0])])
            out.copy_(res)
            return out

    class BatchPrefillWithPagedKVCacheWrapper(_Wrapper):
        kind = "prefill-paged"

        def plan(self, *, qo_indptr, paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, num_qo_heads,
                 num_kv_heads, head_dim_qk, page_size, causal=False, **kw):
            _check_meta(paged_kv_indptr, paged_kv_indices, paged_kv_last_page_len, page_size)
            self.planned = dict(qo_indptr=qo_indptr.clone(), indptr=paged_kv_indptr.clone(),
                                indices=paged_kv_indices.clone(), last=paged_kv_last_page_len.clone(),
                                hq=num_qo_heads, hkv=num_kv_heads, d=head_dim_qk, page_size=page_size,
                                causal=causal, **kw)
            mod.calls.append((self.kind, "plan", self.planned))
            jit_build(f"prefill_paged_{self.ctor['backend']}_d{head_dim_qk}")

        def run(self, *, q, paged_kv_cache, out=None):
            p = self.planned
            mod.calls.append((self.kind, "run", dict(q=q, paged_kv_cache=paged_kv_cache, out=out)))
            k_cache, v_cache = paged_kv_cache
            qp = p["qo_indptr"].tolist()
            res = torch.cat([_attend(q[qp[i]:qp[i + 1]], _seq_kv(p, k_cache, i), _seq_kv(p, v_cache, i),
                                     p["sm_scale"], p["causal"]) for i in range(len(qp) - 1)])
            out.copy_(res)
            return out

    class BatchPrefillWithRaggedKVCacheWrapper(_Wrapper):
        kind = "prefill-ragged"

        def plan(self, *, qo_indptr, kv_indptr, num_qo_heads, num_kv_heads, head_dim_qk, causal=False, **kw):
            self.planned = dict(qo_indptr=qo_indptr.clone(), kv_indptr=kv_indptr.clone(), hq=num_qo_heads,
                                hkv=num_kv_heads, d=head_dim_qk, causal=causal, **kw)
            mod.calls.append((self.kind, "plan", self.planned))
            jit_build(f"prefill_ragged_{self.ctor['backend']}_d{head_dim_qk}")

        def run(self, *, q, k, v, out=None):
            p = self.planned
            mod.calls.append((self.kind, "run", dict(q=q, k=k, v=v, out=out)))
            qp, kp = p["qo_indptr"].tolist(), p["kv_indptr"].tolist()
            res = torch.cat([_attend(q[qp[i]:qp[i + 1]], k[kp[i]:kp[i + 1]], v[kp[i]:kp[i + 1]],
                                     p["sm_scale"], p["causal"]) for i in range(len(qp) - 1)])
            out.copy_(res)
            return out

    mod.BatchDecodeWithPagedKVCacheWrapper = BatchDecodeWithPagedKVCacheWrapper
    mod.BatchPrefillWithPagedKVCacheWrapper = BatchPrefillWithPagedKVCacheWrapper
    mod.BatchPrefillWithRaggedKVCacheWrapper = BatchPrefillWithRaggedKVCacheWrapper
    return mod
