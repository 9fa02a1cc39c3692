"""The flash-attn backend on a CPU: detection, the libraries' limits, and the argument mapping.

flash_attn is not installed here. Fake modules stand in for flash-attn 4, 3 and 2 (tests/fake_flash_attn.py):
they enforce the real libraries' argument rules and compute real attention, so a wrong mapping of
layouts, block tables or lengths shows up as a wrong output, not only as a wrong keyword.
"""

from __future__ import annotations

import pytest

from attnbench.backends import _flash_attn_api as api
from attnbench.backends import get_backend
from attnbench.backends.base import Unsupported
from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.inputs import build_inputs
from attnbench.point import run_point
from attnbench.reference import check_output
from tests.fake_flash_attn import fake_fa2, fake_fa3, fake_fa4, installed_fakes


@pytest.fixture
def libs(monkeypatch):
    """Install fakes: libs(fa4=..., fa3=..., fa2=...); anything not given is made unimportable."""
    yield from installed_fakes(monkeypatch)


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
