"""flash-attn's pattern keywords: window_size / softcap / alibi_slopes passed where the installed entry point
takes them, and a skip naming the missing ones where it does not (fake libraries; the GPU script runs the
real ones)."""

from __future__ import annotations

import types

import torch

from attnbench.backends import _flash_attn_api as api
from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.patterns import alibi_slopes
from attnbench.reference import check_output, reference_attention
from tests.test_flash_attn_backend import libs  # noqa: F401 - the fixture


def _attend(q, k, v, scale, causal, window_size, softcap, slopes, unlimited):
    lq, hq, d = q.shape
    lk, hkv = k.shape[0], k.shape[1]
    left, right = window_size
    assert right == (0 if causal else unlimited), "right edge: 0 causal, unlimited otherwise"
    window = None if left in (-1, None) else left
    if slopes is not None:
        assert slopes.dtype == torch.float32 and slopes.tolist() == alibi_slopes(hq)
    case = Case("fake", "mixed", (lq,), (lk,), hq, hkv, d, "fp32", causal, window=window,
                softcap=softcap or None, alibi=slopes is not None)
    assert scale == case.softmax_scale
    return reference_attention(case, q.double(), k.double(), v.double(), [0, lq], [0, lk]).to(q.dtype)


def fake(generation: int) -> types.ModuleType:
    """FA2 (window_size, softcap, alibi_slopes) or FA4 (window_size, softcap; no ALiBi) varlen entry."""
    mod = types.ModuleType("flash_attn" if generation == 2 else "flash_attn.cute")
    mod.__version__, mod.calls, mod.__path__ = ("2.7.4" if generation == 2 else "4.0.0b1"), [], []
    unlimited = -1 if generation == 2 else None

    def run(q, k, v, cu_q, cu_k, scale, causal, window_size, softcap, slopes):
        cq, ck = cu_q.tolist(), cu_k.tolist()
        return torch.cat([_attend(q[cq[i]:cq[i + 1]], k[ck[i]:ck[i + 1]], v[ck[i]:ck[i + 1]], scale, causal,
                                  window_size, softcap, slopes, unlimited) for i in range(len(cq) - 1)])

    if generation == 2:
        def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                   dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                                   softcap=0.0, alibi_slopes=None, block_table=None):
            mod.calls.append(dict(window_size=window_size, softcap=softcap, alibi_slopes=alibi_slopes))
            return run(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale, causal, window_size, softcap,
                       alibi_slopes)
    else:
        def flash_attn_varlen_func(q, k, v, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                                   max_seqlen_k=None, seqused_k=None, page_table=None, softmax_scale=None,
                                   causal=False, window_size=(None, None), softcap=None):
            mod.calls.append(dict(window_size=window_size, softcap=softcap))
            return run(q, k, v, cu_seqlens_q, cu_seqlens_k, softmax_scale, causal, window_size, softcap,
                       None), None
    mod.flash_attn_varlen_func = flash_attn_varlen_func
    mod.flash_attn_func = lambda *a, **kw: (_ for _ in ()).throw(AssertionError("varlen cases only"))
    return mod


def _case(**pattern) -> Case:
    return Case("t", "mixed", (5, 16), (40, 48), 8, 2, 64, "bf16", True, **pattern)


def _run(case: Case):
    backend = get_backend("flash-attn")
    assert backend.supports(case) == (True, "")
    inputs = build_inputs(case, "cpu")
    prepared = backend.prepare(case, inputs)
    return check_output(prepared.to_packed(prepared.run()), inputs)


def test_fa2_takes_window_softcap_and_alibi(libs):  # noqa: F811
    fa2 = libs(fa2=fake(2))
    check = _run(_case(window=9, softcap=3.0, alibi=True))
    assert check.ok, check.reason
    kw = fa2.calls[-1]
    assert kw["window_size"] == (9, 0) and kw["softcap"] == 3.0 and kw["alibi_slopes"] is not None


def test_fa4_takes_window_and_softcap_and_names_missing_alibi(libs):  # noqa: F811
    fa4 = libs(fa4=fake(4))
    check = _run(_case(window=9, softcap=3.0))
    assert check.ok, check.reason
    assert fa4.calls[-1] == {"window_size": (9, 0), "softcap": 3.0}
    ok, why = get_backend("flash-attn").supports(_case(window=9, alibi=True))
    assert not ok
    assert why == ("flash_attn.cute 4.0.0b1 flash_attn_varlen_func takes no alibi (alibi_slopes): "
                   "that pattern is not in this flash-attn")


def test_non_causal_window_is_left_only(libs):  # noqa: F811
    fa2 = libs(fa2=fake(2))
    case = Case("t", "prefill", (20, 33), (20, 33), 4, 2, 32, "fp16", False, window=6)
    assert _run(case).ok
    assert fa2.calls[-1]["window_size"] == (6, -1)
    assert api.pattern_kwargs(api.detect()[0], case, torch.device("cpu")) == {"window_size": (6, -1)}
