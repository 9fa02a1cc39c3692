"""Fake flash-attn libraries for tests on a CPU: flash-attn 4 (flash_attn.cute), flash-attn 3
(flash_attn_interface) and flash-attn 2 (flash_attn). They record every call, enforce the real
libraries' argument rules, and compute real attention (attnbench.inputs.reference_attention per
sequence, K/V gathered through the page table they are given), so a wrong mapping of layouts, block
tables or lengths shows up as a wrong output, not only as a wrong keyword. The `libs` fixture of
test_flash_attn_backend.py installs them (installed_fakes).
"""

from __future__ import annotations

import sys
import types

import torch

from attnbench.backends import _flash_attn_api as api
from attnbench.case import Case
from attnbench.inputs import reference_attention

MODULES = ("flash_attn", "flash_attn.cute", "flash_attn_interface")


# ---- fake libraries ------------------------------------------------------------------------------
def _attend(q, k, v, scale, causal):
    """One sequence: q (Lq, Hq, D), k/v (Lk, Hkv, D) -> (Lq, Hq, D) in q's dtype."""
    lq, hq, d = q.shape
    lk, hkv = k.shape[0], k.shape[1]
    case = Case("fake", "mixed", (lq,), (lk,), hq, hkv, d, "fp32", causal)
    q_scaled = q.double() * (scale / case.softmax_scale)  # reference_attention applies d**-0.5
    return reference_attention(case, q_scaled, k.double(), v.double(), [0, lq], [0, lk]).to(q.dtype)


def _gather(cache, table_row, n):
    pages = -(-n // cache.shape[1])
    return cache[table_row[:pages].long()].reshape(-1, cache.shape[2], cache.shape[3])[:n]


def _run_varlen(q, k, v, cu_q, cu_k, scale, causal):
    cq, ck = cu_q.tolist(), cu_k.tolist()
    return torch.cat([_attend(q[cq[i]:cq[i + 1]], k[ck[i]:ck[i + 1]], v[ck[i]:ck[i + 1]], scale, causal)
                      for i in range(len(cq) - 1)])


def _run_paged(q, k_cache, v_cache, table, lens, cu_q, scale, causal):
    """q batched (B, Lq, H, D) when cu_q is None, else packed (total_q, H, D)."""
    outs = []
    for i, n in enumerate(lens.tolist()):
        qs = q[i] if cu_q is None else q[cu_q[i]:cu_q[i + 1]]
        outs.append(_attend(qs, _gather(k_cache, table[i], n), _gather(v_cache, table[i], n), scale, causal))
    return torch.stack(outs) if cu_q is None else torch.cat(outs)


def _run_batched(q, k, v, scale, causal):
    return torch.stack([_attend(q[i], k[i], v[i], scale, causal) for i in range(q.shape[0])])


def _int32(*tensors):
    for t in tensors:
        assert t is None or (t.dtype == torch.int32 and t.stride(-1) == 1), "int32 contiguous expected"


def fake_fa4(version: str = "0.0.0") -> types.ModuleType:
    mod = types.ModuleType("flash_attn.cute")
    mod.__version__, mod.calls = version, []

    def flash_attn_func(q, k, v, qv=None, softmax_scale=None, causal=False, **rest):
        mod.calls.append(("flash_attn_func", dict(q=q, k=k, v=v, softmax_scale=softmax_scale, causal=causal)))
        assert q.dim() == 4 and k.dim() == 4
        return _run_batched(q, k, v, softmax_scale, causal), None

    def flash_attn_varlen_func(q, k, v, qv=None, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                               max_seqlen_k=None, min_seqlen_k=None, seqused_q=None, seqused_k=None,
                               gather_kv_indices=None, page_table=None, softmax_scale=None, causal=False,
                               **rest):
        kw = dict(q=q, k=k, v=v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                  max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, seqused_k=seqused_k,
                  page_table=page_table, softmax_scale=softmax_scale, causal=causal)
        mod.calls.append(("flash_attn_varlen_func", kw))
        _int32(cu_seqlens_q, cu_seqlens_k, seqused_k, page_table)
        if page_table is not None:  # the real interface's assertions
            assert cu_seqlens_k is None, "page_table is not supported with cu_seqlens_k"
            batch = q.shape[0] if cu_seqlens_q is None else cu_seqlens_q.shape[0] - 1
            assert page_table.shape[0] == batch and k.dim() == 4 and v.shape == k.shape
            assert seqused_k is not None and seqused_k.shape == (batch,)
            return _run_paged(q, k, v, page_table, seqused_k, cu_seqlens_q, softmax_scale, causal), None
        return _run_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale, causal), None

    mod.flash_attn_func, mod.flash_attn_varlen_func = flash_attn_func, flash_attn_varlen_func
    return mod


def fake_fa2(block_table_in_varlen: bool = True) -> types.ModuleType:
    mod = types.ModuleType("flash_attn")
    mod.__version__, mod.calls, mod.__path__ = "2.7.4.post1", [], []

    def page_rule(cache):
        if cache.shape[1] % 256:
            raise RuntimeError("Paged KV cache block size must be divisible by 256")

    def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, **rest):
        mod.calls.append(("flash_attn_func", dict(q=q, k=k, v=v, softmax_scale=softmax_scale, causal=causal)))
        return _run_batched(q, k, v, softmax_scale, causal)

    def varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
               softmax_scale=None, causal=False, block_table=None):
        mod.calls.append(("flash_attn_varlen_func", dict(
            q=q, k=k, v=v, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
            max_seqlen_k=max_seqlen_k, softmax_scale=softmax_scale, causal=causal, block_table=block_table)))
        if block_table is None:
            return _run_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale, causal)
        page_rule(k)
        lens = cu_seqlens_k[1:] - cu_seqlens_k[:-1]
        return _run_paged(q, k, v, block_table, lens, cu_seqlens_q.tolist(), softmax_scale, causal)

    def varlen_old(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                   softmax_scale=None, causal=False):
        return varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                      softmax_scale, causal)

    def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                                cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None,
                                block_table=None, softmax_scale=None, causal=False, **rest):
        mod.calls.append(("flash_attn_with_kvcache", dict(
            q=q, k_cache=k_cache, v_cache=v_cache, cache_seqlens=cache_seqlens, block_table=block_table,
            softmax_scale=softmax_scale, causal=causal)))
        _int32(cache_seqlens, block_table)
        assert q.dim() == 4, "FA2 kvcache takes q as (batch, seqlen, nheads, headdim)"
        page_rule(k_cache)
        return _run_paged(q, k_cache, v_cache, block_table, cache_seqlens, None, softmax_scale, causal)

    mod.flash_attn_func, mod.flash_attn_with_kvcache = flash_attn_func, flash_attn_with_kvcache
    mod.flash_attn_varlen_func = varlen if block_table_in_varlen else varlen_old
    return mod


def fake_fa3() -> types.ModuleType:
    mod = types.ModuleType("flash_attn_interface")
    mod.calls = []

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False, **rest):
        mod.calls.append(("flash_attn_func", dict(q=q, k=k, v=v, softmax_scale=softmax_scale, causal=causal)))
        return _run_batched(q, k, v, softmax_scale, causal)

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                               seqused_q=None, seqused_k=None, softmax_scale=None, causal=False, **rest):
        mod.calls.append(("flash_attn_varlen_func", dict(q=q, cu_seqlens_q=cu_seqlens_q)))
        return _run_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale, causal)

    def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, qv=None, rotary_cos=None,
                                rotary_sin=None, cache_seqlens=None, cache_batch_idx=None,
                                cache_leftpad=None, page_table=None,
                                cu_seqlens_q=None, cu_seqlens_k_new=None, max_seqlen_q=None,
                                softmax_scale=None, causal=False, **rest):
        mod.calls.append(("flash_attn_with_kvcache", dict(
            q=q, k_cache=k_cache, page_table=page_table, cache_seqlens=cache_seqlens,
            cu_seqlens_q=cu_seqlens_q, max_seqlen_q=max_seqlen_q,
            softmax_scale=softmax_scale, causal=causal)))
        _int32(cache_seqlens, page_table, cu_seqlens_q)
        cu = None if cu_seqlens_q is None else cu_seqlens_q.tolist()
        return _run_paged(q, k_cache, v_cache, page_table, cache_seqlens, cu, softmax_scale, causal)

    mod.flash_attn_func, mod.flash_attn_varlen_func = flash_attn_func, flash_attn_varlen_func
    mod.flash_attn_with_kvcache = flash_attn_with_kvcache
    return mod


def namespace_pkg() -> types.ModuleType:
    """What `import flash_attn` gives with only flash-attn-4 installed: an empty namespace package."""
    mod = types.ModuleType("flash_attn")
    mod.__path__ = []
    return mod


def installed_fakes(monkeypatch):
    """The body of a `libs` fixture: yields install(fa4=..., fa3=..., fa2=...), which installs the fakes
    given and makes anything not given unimportable; undone after the test."""
    monkeypatch.delenv(api.IMPL_ENV, raising=False)
    monkeypatch.setattr(api, "gpu_arch", lambda: None)

    def install(fa4=None, fa3=None, fa2=None):
        api.reset()
        parent = fa2 if fa2 is not None else (namespace_pkg() if fa4 is not None else None)
        monkeypatch.setitem(sys.modules, "flash_attn", parent)
        monkeypatch.setitem(sys.modules, "flash_attn.cute", fa4)
        monkeypatch.setitem(sys.modules, "flash_attn_interface", fa3)
        if parent is not None and fa4 is not None:
            monkeypatch.setattr(parent, "cute", fa4, raising=False)
        return fa4 or fa3 or fa2

    yield install
    api.reset()  # later tests must not see the fakes
