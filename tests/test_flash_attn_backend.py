"""The flash-attn backend on a CPU: detection, the libraries' limits, and the argument mapping.

flash_attn is not installed here. Fake modules stand in for flash-attn 4 (flash_attn.cute),
flash-attn 3 (flash_attn_interface) and flash-attn 2 (flash_attn): they record every call, enforce
the real libraries' argument rules, and compute real attention (attnbench.inputs.reference_attention
per sequence, K/V gathered through the page table they are given), so a wrong mapping of layouts,
block tables or lengths shows up as a wrong output, not only as a wrong keyword.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from attnbench.backends import _flash_attn_api as api
from attnbench.backends import get_backend
from attnbench.backends.base import Unsupported
from attnbench.case import Case
from attnbench.config import TimingPolicy
from attnbench.inputs import build_inputs, reference_attention
from attnbench.point import run_point
from attnbench.reference import check_output

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


@pytest.fixture
def libs(monkeypatch):
    """Install fakes: libs(fa4=..., fa3=..., fa2=...); anything not given is made unimportable."""
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


def decode_case(block_size, kv_lens=(37, 64, 5), dtype="bf16", causal=False, hq=8, hkv=2, d=64):
    return Case("t", "decode", tuple(1 for _ in kv_lens), kv_lens, hq, hkv, d, dtype, causal,
                "list", block_size, "shuffled", seed=1)


def mixed_case(block_size, q_lens=(5, 16, 3), kv_lens=(40, 48, 19)):
    return Case("t", "mixed", q_lens, kv_lens, 8, 2, 64, "bf16", True, "list", block_size, "shuffled", seed=2)


def prefill_case(lens=(33, 33), causal=True):
    return Case("t", "prefill", lens, lens, 4, 2, 32, "fp16", causal, "list", seed=3)


def run_and_check(case):
    """prepare + run through the backend; the output must match the reference."""
    backend = get_backend("flash-attn")
    inputs = build_inputs(case, "cpu")
    prepared = backend.prepare(case, inputs)
    packed = prepared.to_packed(prepared.run())
    assert packed.shape == (case.total_q, case.num_q_heads, case.head_dim)
    check = check_output(packed, inputs)
    assert check.ok, check.reason
    return inputs, prepared


# ---- detection ---------------------------------------------------------------------------------
def test_absent_library_is_unavailable_with_the_install_hint(libs):
    libs()
    backend = get_backend("flash-attn")
    for device in ("cuda", "cpu"):
        ok, why = backend.available(device)
        assert not ok and api.INSTALL_HINT in why and "not installed" in why
    ok, why = backend.supports(decode_case(16))
    assert not ok and api.INSTALL_HINT in why


def test_registered_as_flash_family_taking_both_kv_forms():
    backend = get_backend("flash-attn")
    assert (backend.family, backend.impl, backend.devices) == ("flash", "external", ("cuda",))
    assert backend.wants(decode_case(16)) and backend.wants(prefill_case())


def test_fa4_detected_through_its_namespace_package(libs):
    libs(fa4=fake_fa4("0.0.0"))
    lib, _ = api.detect()
    assert (lib.generation, lib.impl, lib.version) == (4, "flash_attn.cute", "4.x")  # "0.0.0" is no version
    backend = get_backend("flash-attn")
    assert backend.available("cuda") == (True, "")
    ok, why = backend.available("cpu")
    assert not ok and "cuda" in why


def test_fa4_preferred_over_fa2_and_env_pins_one(libs, monkeypatch):
    libs(fa4=fake_fa4("4.0.0b36"), fa2=fake_fa2())
    assert api.detect()[0].generation == 4
    monkeypatch.setenv(api.IMPL_ENV, "fa2")
    lib, _ = api.detect()
    assert (lib.generation, lib.version) == (2, "2.7.4.post1")
    monkeypatch.setenv(api.IMPL_ENV, "fa3")
    lib, why = api.detect()
    assert lib is None and "flash_attn_interface not installed" in why
    monkeypatch.setenv(api.IMPL_ENV, "fa9")
    assert "allowed fa4, fa3, fa2" in api.detect()[1]


# ---- flash-attn 4 -------------------------------------------------------------------------------
def test_fa4_paged_decode_maps_pool_page_table_and_seqused(libs):
    fa4 = libs(fa4=fake_fa4("4.0.0b36"))
    case = decode_case(16)
    inputs, prepared = run_and_check(case)
    name, kw = fa4.calls[-1]
    paged = inputs.paged
    assert name == "flash_attn_varlen_func"
    assert kw["q"].shape == (3, 1, 8, 64) and kw["q"].data_ptr() == inputs.q.data_ptr()  # a view, no copy
    assert kw["k"] is paged.k_cache and kw["v"] is paged.v_cache
    assert kw["k"].shape == (paged.k_cache.shape[0], 16, 2, 64)  # (num_pages, page_size, Hkv, D)
    assert kw["page_table"] is paged.block_tables and kw["seqused_k"] is paged.kv_lens
    assert kw["cu_seqlens_k"] is None and kw["cu_seqlens_q"] is None
    assert kw["max_seqlen_k"] == 64 and kw["softmax_scale"] == case.softmax_scale and kw["causal"] is False
    info = prepared.info
    assert info["flash_attn_impl"] == "flash_attn.cute" and info["flash_attn_version"] == "4.0.0b36"
    assert info["kv_path"] == "paged" and info["fa_entry"] == "flash_attn_varlen_func"
    assert "compile_s" in info and len(fa4.calls) == 2  # one compile call in prepare, one run


def test_fa4_chunked_prefill_with_unequal_chunks_passes_packed_q(libs):
    fa4 = libs(fa4=fake_fa4())
    case = mixed_case(16)
    inputs, _ = run_and_check(case)
    kw = fa4.calls[-1][1]
    assert kw["q"].shape == (case.total_q, 8, 64)
    assert kw["cu_seqlens_q"] is inputs.cu_seqlens_q and kw["max_seqlen_q"] == 16
    assert kw["causal"] is True and kw["seqused_k"].tolist() == [40, 48, 19]


def test_fa4_prefill_equal_lengths_uses_batched_views(libs):
    fa4 = libs(fa4=fake_fa4())
    case = prefill_case((33, 33))
    inputs, prepared = run_and_check(case)
    name, kw = fa4.calls[-1]
    assert name == "flash_attn_func" and kw["q"].shape == (2, 33, 4, 32) and kw["k"].shape == (2, 33, 2, 32)
    assert kw["k"].data_ptr() == inputs.k.data_ptr() and kw["causal"] is True
    assert prepared.info["kv_path"] == "varlen" and prepared.info["input_mode"] == "batched-views"


def test_fa4_prefill_varlen_maps_cu_seqlens(libs):
    fa4 = libs(fa4=fake_fa4())
    case = prefill_case((17, 40, 9), causal=False)
    inputs, _ = run_and_check(case)
    name, kw = fa4.calls[-1]
    assert name == "flash_attn_varlen_func" and kw["page_table"] is None
    assert kw["cu_seqlens_q"] is inputs.cu_seqlens_q and kw["cu_seqlens_k"] is inputs.cu_seqlens_k
    assert (kw["max_seqlen_q"], kw["max_seqlen_k"]) == (40, 40) and kw["q"].shape == (66, 4, 32)


@pytest.mark.parametrize("block_size", [8, 16, 32, 64, 128, 256])
def test_fa4_every_block_size_on_hopper_at_head_dim_128(libs, monkeypatch, block_size):
    libs(fa4=fake_fa4())
    monkeypatch.setattr(api, "gpu_arch", lambda: 90)
    assert get_backend("flash-attn").supports(decode_case(block_size, d=128)) == (True, "")


def test_fa4_limits_name_the_rule(libs, monkeypatch):
    libs(fa4=fake_fa4())
    backend = get_backend("flash-attn")
    monkeypatch.setattr(api, "gpu_arch", lambda: 90)
    ok, why = backend.supports(decode_case(16, d=256))  # Hopper KV tile 80: gather path unproven
    assert not ok and "allowed here: block_size 80" in why
    assert backend.supports(decode_case(80, d=256)) == (True, "")  # page == tile: TMA path
    monkeypatch.setattr(api, "gpu_arch", lambda: 80)
    ok, why = backend.supports(decode_case(16))
    assert not ok and "sm_80" in why
    assert backend.supports(prefill_case()) == (True, "")  # no paging: fine on sm80
    monkeypatch.setattr(api, "gpu_arch", lambda: 100)
    ok, why = backend.supports(decode_case(16, d=192))
    assert not ok and "8..128 or 256" in why
    ok, why = backend.supports(decode_case(16, dtype="fp32"))
    assert not ok and "bf16, fp16" in why
    ok, why = backend.supports(decode_case(16, d=60))
    assert not ok and "multiple of 8" in why


def test_fa4_run_point_on_cpu_gives_an_ok_row(libs):
    libs(fa4=fake_fa4("4.0.0b36"))
    case = decode_case(16, causal=True)
    inputs = build_inputs(case, "cpu")
    row = run_point(case, get_backend("flash-attn"), inputs, TimingPolicy.for_device("cpu"), {})
    assert row["status"] == "ok", row["reason"]
    assert row["flash_attn_impl"] == "flash_attn.cute" and row["kv_path"] == "paged"


# ---- flash-attn 3 -------------------------------------------------------------------------------
def test_fa3_paged_decode_and_chunks_use_page_table(libs):
    fa3 = libs(fa3=fake_fa3())
    inputs, prepared = run_and_check(decode_case(16))
    name, kw = fa3.calls[-1]
    assert name == "flash_attn_with_kvcache" and kw["page_table"] is inputs.paged.block_tables
    assert kw["cache_seqlens"] is inputs.paged.kv_lens and kw["q"].shape == (3, 1, 8, 64)
    assert kw["cu_seqlens_q"] is None and prepared.info["flash_attn_impl"] == "flash_attn_interface"
    assert "compile_s" not in prepared.info
    inputs, _ = run_and_check(mixed_case(8))
    kw = fa3.calls[-1][1]
    assert kw["cu_seqlens_q"] is inputs.cu_seqlens_q and kw["max_seqlen_q"] == 16 and kw["causal"] is True


# ---- flash-attn 2 -------------------------------------------------------------------------------
def test_fa2_page_rule_is_reported_not_crashed_into(libs):
    libs(fa2=fake_fa2())
    backend = get_backend("flash-attn")
    ok, why = backend.supports(decode_case(16))
    assert not ok and "multiple of 256" in why
    with pytest.raises(Unsupported, match="multiple of 256"):
        backend.prepare(decode_case(16), build_inputs(decode_case(16), "cpu"))


def test_fa2_paged_decode_uses_kvcache_block_table(libs):
    fa2 = libs(fa2=fake_fa2())
    case = decode_case(256, kv_lens=(300, 513))
    inputs, prepared = run_and_check(case)
    name, kw = fa2.calls[-1]
    assert name == "flash_attn_with_kvcache" and kw["q"].shape == (2, 1, 8, 64)
    assert kw["block_table"] is inputs.paged.block_tables and kw["cache_seqlens"] is inputs.paged.kv_lens
    assert kw["k_cache"].shape[1] == 256 and prepared.info["flash_attn_version"] == "2.7.4.post1"


def test_fa2_unequal_chunks_use_varlen_block_table_when_the_release_has_it(libs):
    fa2 = libs(fa2=fake_fa2())
    case = mixed_case(256, q_lens=(5, 16), kv_lens=(300, 270))
    inputs, _ = run_and_check(case)
    name, kw = fa2.calls[-1]
    assert name == "flash_attn_varlen_func" and kw["block_table"] is inputs.paged.block_tables
    assert kw["cu_seqlens_k"] is inputs.cu_seqlens_k and kw["max_seqlen_k"] == 300
    libs(fa2=fake_fa2(block_table_in_varlen=False))
    ok, why = get_backend("flash-attn").supports(case)
    assert not ok and "block_table" in why


def test_fa2_run_point_on_cpu_gives_an_ok_row(libs):
    libs(fa2=fake_fa2())
    case = prefill_case((20, 31))
    inputs = build_inputs(case, "cpu")
    row = run_point(case, get_backend("flash-attn"), inputs, TimingPolicy.for_device("cpu"), {})
    assert row["status"] == "ok", row["reason"]
    assert row["flash_attn_impl"] == "flash_attn" and row["fa_entry"] == "flash_attn_varlen_func"
