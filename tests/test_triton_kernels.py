"""Triton flash and paged attention against the float64 reference, through Triton's interpreter.

Every test draws fresh random inputs (never zeros) and poisons the output buffer with NaN first, so an
element the kernel forgot to write fails the check; paged tests also put NaN in every cache slot no
sequence owns. Outputs are judged by attnbench.reference.check_output (per sequence and query head,
against the plain in-dtype PyTorch error). Shapes are small: the interpreter runs the kernels element
by element on the CPU.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.inputs import build_inputs, cumulative
from attnbench.reference import ErrorCheck, check_output, reference_attention
from tests.cache_poison import poison_unused_slots


def compiled_triton_loaded() -> bool:
    """True once triton.language was imported without the interpreter: its own @jit helpers (tl.zeros,
    ...) are then compiled-only, and kernels cannot run on CPU tensors in this process any more."""
    lang = sys.modules.get("triton.language")
    return lang is not None and type(lang.zeros).__name__ != "InterpretedFunction"


@pytest.fixture(scope="module", autouse=True)
def _interpret():
    """Run this module's kernels through the interpreter, restoring the environment afterwards."""
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    yield
    if old is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = old


@pytest.fixture(autouse=True)
def _needs_fresh_triton(request):
    if request.node.name != "test_module_in_fresh_process" and compiled_triton_loaded():
        pytest.skip("triton was imported compiled earlier in this session; test_module_in_fresh_process "
                    "runs this module in a new process instead")


def test_module_in_fresh_process():
    """When another test imported triton first, rerun this whole module where the interpreter can work."""
    if not compiled_triton_loaded():
        pytest.skip("this process can interpret: the tests above ran here")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], cwd=root,
                         env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def kernels(name: str):
    from attnbench.backends._triton_common import kernels_module

    return kernels_module(name)


def run_flash(case: Case, **kw) -> tuple[ErrorCheck, torch.Tensor]:
    inp = build_inputs(case, "cpu")
    mod = kernels("flash_fwd")
    out = torch.full_like(inp.q, float("nan"))
    lse = torch.full((case.num_q_heads, case.total_q), float("nan"))
    mod.flash_attn_varlen_fwd(inp.q, inp.k, inp.v, inp.cu_seqlens_q, inp.cu_seqlens_k, case.max_q,
                              case.causal, case.softmax_scale, out=out, lse=lse, **kw)
    return check_output(out, inp), lse


def run_paged(case: Case, num_splits: int = 1, **kw) -> ErrorCheck:
    inp = build_inputs(case, "cpu")
    paged = inp.paged
    assert paged is not None
    poison_unused_slots(paged)
    mod = kernels("paged_attn")
    out = torch.full_like(inp.q, float("nan"))
    _, _, used = mod.paged_attention(inp.q, paged.k_cache, paged.v_cache, paged.block_tables, paged.kv_lens,
                                     inp.cu_seqlens_q, case.max_q, case.max_kv, case.causal,
                                     case.softmax_scale, num_splits=num_splits, out=out, **kw)
    assert used == num_splits
    return check_output(out, inp)


def case(phase="prefill", q=(17,), kv=None, hq=4, hkv=2, d=64, dtype="bf16", causal=True, bs=None,
         layout="shuffled", seed=0) -> Case:
    kv = q if kv is None else kv
    return Case("test", phase, tuple(q), tuple(kv), hq, hkv, d, dtype, causal, block_size=bs,
                kv_layout=layout, seed=seed)


# ---- flash ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("length", [1, 17, 129])
def test_flash_odd_lengths(length, causal):
    check, _ = run_flash(case(q=(length,), causal=causal, seed=length))
    assert check.ok, check.reason


@pytest.mark.parametrize("causal", [True, False])
def test_flash_varlen_bottom_right_causal(causal):
    # q shorter than kv (chunked prefill shape), lengths below, at and above the 16-row tiles
    c = case("mixed", q=(1, 16, 17, 5), kv=(1, 40, 17, 70), causal=causal, dtype="fp16", seed=3)
    check, _ = run_flash(c)
    assert check.ok, check.reason


@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2), (8, 1)])
def test_flash_gqa_ratios(hq, hkv):
    check, _ = run_flash(case(q=(33, 7), hq=hq, hkv=hkv, seed=hq * 10 + hkv))
    assert check.ok, check.reason


@pytest.mark.parametrize("d", [64, 128, 256, 48, 80])
def test_flash_head_dims(d):
    check, _ = run_flash(case(q=(19,), hq=2, hkv=1, d=d, dtype="fp16", seed=d))
    assert check.ok, check.reason


def test_flash_tma_path_in_interpreter():
    # The Hopper path (tensor descriptors over the packed (total, H * D) view) under the interpreter,
    # with several sequences so tiles cross a sequence end and read the next one's rows.
    c = case("mixed", q=(9, 23), kv=(30, 23), hq=4, hkv=2, dtype="fp16", seed=5)
    check, _ = run_flash(c, use_tma=True)
    assert check.ok, check.reason


def test_flash_length_1000_large_tiles():
    mod = kernels("flash_fwd")
    cfg = mod.LaunchConfig.of(4, 1, BLOCK_M=64, BLOCK_N=64)
    check, _ = run_flash(case(q=(1000,), hq=1, hkv=1, dtype="fp16", seed=11), config=cfg)
    assert check.ok, check.reason


def test_flash_lse_matches_reference():
    c = case("mixed", q=(5, 12), kv=(20, 12), hq=2, hkv=1, dtype="fp16", seed=9)
    inp = build_inputs(c, "cpu")
    _, lse = run_flash(c)
    cu_q, cu_k = inp.cu_seqlens_q.tolist(), inp.cu_seqlens_k.tolist()
    for b in range(c.batch):
        qs = inp.q[cu_q[b]:cu_q[b + 1]].double().transpose(0, 1)
        ks = inp.k[cu_k[b]:cu_k[b + 1]].double().transpose(0, 1).repeat_interleave(c.gqa_ratio, 0)
        s = qs @ ks.transpose(1, 2) * c.softmax_scale
        nq, nk = qs.shape[1], ks.shape[1]
        mask = torch.arange(nk)[None, :] > torch.arange(nq)[:, None] + (nk - nq)
        ref = torch.logsumexp(s.masked_fill(mask, -math.inf), dim=-1)
        torch.testing.assert_close(lse[:, cu_q[b]:cu_q[b + 1]].double(), ref, atol=2e-3, rtol=1e-3)


# ---- paged ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bs", [1, 8, 16, 32, 64, 128, 256, 24])
def test_paged_decode_block_sizes(bs):
    check = run_paged(case("decode", q=(1, 1, 1), kv=(1, 17, 129), bs=bs, seed=bs))
    assert check.ok, check.reason


@pytest.mark.parametrize("layout", ["shuffled", "contiguous"])
@pytest.mark.parametrize("hq,hkv", [(4, 4), (8, 2), (8, 1)])
def test_paged_decode_gqa_and_layouts(hq, hkv, layout):
    c = case("decode", q=(1, 1), kv=(40, 77), hq=hq, hkv=hkv, bs=16, layout=layout, dtype="fp16")
    check = run_paged(c)
    assert check.ok, check.reason


@pytest.mark.parametrize("splits", [2, 3])
def test_paged_split_kv(splits):
    # Contexts shorter than one chunk leave empty splits; the reduce must ignore them.
    c = case("decode", q=(1, 1, 1), kv=(300, 5, 129), hq=8, hkv=2, bs=16, dtype="fp16", seed=7)
    check = run_paged(c, num_splits=splits)
    assert check.ok, check.reason


@pytest.mark.parametrize("splits", [1, 2])
@pytest.mark.parametrize("bs", [8, 32])
def test_paged_chunked_prefill(bs, splits):
    c = case("mixed", q=(1, 5, 17), kv=(17, 40, 260), hq=8, hkv=2, bs=bs, dtype="fp16", seed=bs)
    check = run_paged(c, num_splits=splits)
    assert check.ok, check.reason


def test_paged_mixed_non_causal():
    check = run_paged(case("mixed", q=(3, 9), kv=(20, 33), causal=False, bs=16, dtype="fp16", seed=2))
    assert check.ok, check.reason


def test_paged_prefill_whole_context_in_cache():
    check = run_paged(case("prefill", q=(17, 30), hq=4, hkv=1, bs=16, seed=4))
    assert check.ok, check.reason


@pytest.mark.parametrize("d", [64, 128, 256, 80])
def test_paged_head_dims(d):
    check = run_paged(case("decode", q=(1, 1), kv=(18, 35), hq=4, hkv=2, d=d, bs=16, dtype="fp16", seed=d))
    assert check.ok, check.reason


def test_paged_long_context_split_matches_one_pass():
    c = case("decode", q=(1,), kv=(1000,), hq=4, hkv=1, bs=64, dtype="fp16", seed=21)
    for splits in (1, 4):
        check = run_paged(c, num_splits=splits)
        assert check.ok, (splits, check.reason)


# ---- paged, fp8 e4m3 KV cache (issue 20) ---------------------------------------------------------------
def fp8(c: Case, scale: str) -> Case:
    return replace(c, kv_dtype="fp8_e4m3", kv_scale=scale)


def run_paged_fp8(c: Case, num_splits: int = 1, fault=None, v_words: bool = False) -> ErrorCheck:
    """run_paged for an fp8 case, the cache's scales passed to the kernel; fault(k_scale, v_scale) ->
    (k_scale, v_scale) plants a wrong scale (the check must then reject the output)."""
    inp = build_inputs(c, "cpu")
    paged = inp.paged
    assert paged is not None and paged.k_cache.dtype == torch.float8_e4m3fn
    assert inp.k_scale is not None and inp.v_scale is not None
    poison_unused_slots(paged)
    k_scale, v_scale = (inp.k_scale, inp.v_scale) if fault is None else fault(inp.k_scale, inp.v_scale)
    out = torch.full_like(inp.q, float("nan"))
    _, _, used = kernels("paged_attn").paged_attention(
        inp.q, paged.k_cache, paged.v_cache, paged.block_tables, paged.kv_lens, inp.cu_seqlens_q, c.max_q,
        c.max_kv, c.causal, c.softmax_scale, num_splits=num_splits, out=out, k_scale=k_scale, v_scale=v_scale,
        window=c.window, softcap=c.softcap, v_words=v_words)
    assert used == num_splits
    return check_output(out, inp)


@pytest.mark.parametrize("scale", ["per-tensor", "per-head"])
@pytest.mark.parametrize("bs,splits", [(8, 1), (16, 2), (32, 1), (24, 3)])
def test_paged_fp8_decode_short_and_long_contexts(bs, splits, scale):
    c = fp8(case("decode", q=(1, 1, 1), kv=(1, 17, 300), hq=8, hkv=2, d=32, bs=bs, seed=bs), scale)
    check = run_paged_fp8(c, num_splits=splits)
    assert check.ok, check.reason


@pytest.mark.parametrize("scale", ["per-tensor", "per-head"])
def test_paged_fp8_chunked_prefill_fp16(scale):
    c = fp8(case("mixed", q=(1, 5, 17), kv=(17, 40, 150), hq=8, hkv=2, d=32, bs=16, dtype="fp16", seed=5),
            scale)
    check = run_paged_fp8(c, num_splits=2)
    assert check.ok, check.reason


def test_paged_fp8_with_patterns():
    c = fp8(case("mixed", q=(3, 9), kv=(40, 70), hq=4, hkv=2, d=32, bs=16, seed=6), "per-head")
    c = replace(c, window=24, softcap=20.0)
    check = run_paged_fp8(c)
    assert check.ok, check.reason


@pytest.mark.parametrize("bs,splits,phase", [(8, 1, "decode"), (16, 3, "decode"), (128, 1, "decode"),
                                              (16, 2, "mixed"), (24, 1, "patterns")])
def test_paged_fp8_v_read_as_words(bs, splits, phase):
    """V_WORDS (an fp8 V cache read as int32 words, widened in registers) on short and long contexts,
    splits, block sizes inside and across a key tile, chunked prefill and the patterns."""
    if phase == "decode":
        c = case("decode", q=(1, 1, 1), kv=(1, 17, 300), hq=8, hkv=2, d=32, bs=bs, seed=bs)
    else:
        c = case("mixed", q=(3, 9, 1), kv=(40, 150, 17), hq=8, hkv=2, d=64, bs=bs, dtype="fp16", seed=bs)
    c = fp8(c, "per-head")
    if phase == "patterns":
        c = replace(c, window=24, softcap=20.0)
    check = run_paged_fp8(c, num_splits=splits, v_words=True)
    assert check.ok, check.reason


@pytest.mark.parametrize(("scale", "fault"), [
    ("per-tensor", lambda ks, vs: (ks, vs * 1.02)),  # V's scale 2% off
    ("per-tensor", lambda ks, vs: (ks * 1.03, vs)),  # K's scale 3% off: the softmax temperature
    ("per-tensor", lambda ks, vs: (vs, ks)),  # K's and V's scales swapped
    ("per-head", lambda ks, vs: (ks.roll(1), vs.roll(1))),  # each KV head given another head's scales
    ("per-head", lambda ks, vs: (ks[:1].contiguous(), vs[:1].contiguous())),  # head 0's scale for all
])
def test_paged_fp8_wrong_scale_is_caught(scale, fault):
    c = fp8(case("decode", q=(1, 1, 1), kv=(1, 17, 300), hq=8, hkv=2, d=32, bs=16, seed=11), scale)
    check = run_paged_fp8(c, fault=fault)
    assert not check.ok and check.ratio is not None and check.ratio > 1.5, check


def test_paged_fp8_scales_must_fit_the_cache():
    c = fp8(case("decode", q=(1,), kv=(20,), hq=4, hkv=2, d=32, bs=16), "per-head")
    inp = build_inputs(c, "cpu")
    p = inp.paged
    assert p is not None and inp.k_scale is not None
    mod = kernels("paged_attn")
    args = (inp.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens, inp.cu_seqlens_q, 1, 20, False)
    with pytest.raises(ValueError, match="needs k_scale and v_scale"):
        mod.paged_attention(*args)
    with pytest.raises(ValueError, match="1 or 2"):
        mod.paged_attention(*args, k_scale=torch.ones(3), v_scale=torch.ones(3))


def test_choose_num_splits():
    mod = kernels("paged_attn")
    assert mod.choose_num_splits(programs=512, max_kv=4096, num_sms=132) == 1  # already fills the chip
    s = mod.choose_num_splits(programs=32, max_kv=32768, num_sms=132)
    assert s >= 2 and 32 * s <= 132 * 2  # one wave of resident programs
    assert mod.choose_num_splits(programs=4, max_kv=600, num_sms=132) == 1  # too short to be worth it


# ---- backends ------------------------------------------------------------------------------------------
def test_backends_run_interpreted_and_report_variant():
    for name, c in [("triton-flash", case(q=(17, 9), hq=4, hkv=2)),
                    ("triton-paged", case("decode", q=(1, 1), kv=(17, 40), bs=16)),
                    ("triton-paged", case("mixed", q=(4, 2), kv=(17, 40), bs=8)),
                    ("triton-paged", fp8(case("decode", q=(1, 1), kv=(17, 40), bs=16), "per-head"))]:
        backend = get_backend(name)
        assert backend.available("cpu") == (True, "")
        assert backend.supports(c) == (True, "")
        inp = build_inputs(c, "cpu")
        prepared = backend.prepare(c, inp)
        out = prepared.to_packed(prepared.run())
        check = check_output(out, inp)
        assert check.ok, (name, c.phase, check.reason)
        assert prepared.info["interpreted"] is True
        assert prepared.info["variant"]


def test_backends_refuse_with_reasons():
    flash, paged = get_backend("triton-flash"), get_backend("triton-paged")
    ok, why = flash.supports(case(dtype="fp32"))
    assert not ok and "fp32" in why
    ok, why = flash.supports(case(d=72))
    assert not ok and "multiple of 16" in why
    ok, why = flash.supports(case(d=272))
    assert not ok and "256" in why
    ok, why = flash.supports(case("decode", q=(1,), kv=(8,), bs=16))
    assert not ok and "triton-paged" in why
    ok, why = paged.supports(case("decode", q=(1,), kv=(8,)))
    assert not ok and "block_size" in why
    ok, why = paged.supports(case("decode", q=(1,), kv=(8,), bs=512))
    assert not ok and "block_size" in why


def test_cpu_needs_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    for name in ("triton-flash", "triton-paged"):
        ok, why = get_backend(name).available("cpu")
        assert not ok and "TRITON_INTERPRET=1" in why


def test_reference_helper_agrees_with_inputs():
    # Guards the test's own premise: the reference used above is the float64 one.
    c = case(q=(5,), dtype="fp16")
    inp = build_inputs(c, "cpu")
    ref = reference_attention(c, inp.q, inp.k, inp.v, cumulative(c.q_lens, "cpu").tolist(),
                              cumulative(c.kv_lens, "cpu").tolist())
    torch.testing.assert_close(ref, inp.reference)


def test_online_softmax_rows_with_nothing_visible_stay_finite():
    """Rows whose first tile is all -inf (a window or causal edge hides it) get p = 0 there, not NaN,
    and the same running sums as if that tile had not been there; a row that sees nothing in either
    tile ends with m = -inf, l = 0, acc = 0."""
    kernels("flash_fwd")  # loads the kernels package (and online_softmax) interpreted
    from tests.triton_softmax_probe import two_tiles_kernel

    bm = bn = bd = 16
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(2, bm, bn, generator=gen) * 3
    v = torch.randn(2, bn, bd, generator=gen)
    scores[0, :4] = float("-inf")  # rows 0-3: nothing visible in the first tile
    scores[:, 4] = float("-inf")  # row 4: nothing visible at all
    scores[1, 5, 3:] = float("-inf")  # row 5: part of the second tile masked
    out, l_run, m_run = torch.empty(bm, bd), torch.empty(bm), torch.empty(bm)
    two_tiles_kernel[(1,)](scores, v, out, l_run, m_run, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=bd)

    s = torch.cat([scores[0], scores[1]], dim=1).double()  # (rows, 2 * bn)
    m_ref = s.max(dim=1).values
    seen = m_ref > float("-inf")
    p = torch.where(seen[:, None], torch.exp2(s - m_ref[:, None]), 0.0)
    assert torch.isfinite(out).all() and torch.isfinite(l_run).all()
    assert torch.equal(m_run[~seen], torch.full((int((~seen).sum()),), float("-inf")))
    assert (l_run[~seen] == 0).all() and (out[~seen] == 0).all()
    torch.testing.assert_close(m_run[seen].double(), m_ref[seen])
    torch.testing.assert_close(l_run[seen].double(), p.sum(1)[seen], rtol=1e-5, atol=0)
    acc_ref = p @ torch.cat([v[0], v[1]]).double()
    torch.testing.assert_close(out[seen].double(), acc_ref[seen], rtol=1e-5, atol=1e-5)
