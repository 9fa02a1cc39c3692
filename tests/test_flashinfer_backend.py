"""The flashinfer backends on a CPU: detection, limits, the page-table mapping, plan vs run, paths.

flashinfer is not installed here: tests/flashinfer_fake.py stands in for it (keyword-only
wrappers that record their calls and compute attention from the page table they are handed), so
a wrong kv_indptr / kv_indices / kv_last_page_len shows up as a wrong output in check_output.
"""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest
import torch

from attnbench.backends import _flashinfer_api as api
from attnbench.backends import _flashinfer_calls as calls
from attnbench.backends import get_backend
from attnbench.backends.base import Unsupported
from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.inputs import build_inputs
from attnbench.point import run_point
from attnbench.reference import check_output
from tests.flashinfer_fake import make_fake

BLOCK_SIZES = (1, 8, 16, 32, 64, 128, 256)


@pytest.fixture
def fi(monkeypatch, tmp_path):
    """Install the fake flashinfer (JIT cache under tmp_path) on a pretend sm_90 GPU with nvcc."""
    monkeypatch.setenv(api.WORKSPACE_ENV, str(tmp_path))
    monkeypatch.setattr(api, "gpu_arch", lambda: 90)
    monkeypatch.setattr(api, "find_nvcc", lambda: "/usr/local/cuda/bin/nvcc")
    monkeypatch.setattr(api, "find_ninja", lambda: "/usr/bin/ninja")
    api.reset()
    mod = make_fake(jit_dir=api.jit_dir("0.7.2.post1"))
    monkeypatch.setitem(sys.modules, "flashinfer", mod)
    yield mod
    api.reset()


def decode_case(block_size, kv_lens=(37, 64, 5, 129), hq=8, hkv=2, d=64, **kw):
    return Case("t", "decode", tuple(1 for _ in kv_lens), kv_lens, hq, hkv, d, "bf16", True, "list",
                block_size, "shuffled", seed=1, **kw)


def mixed_case(block_size, q_lens=(5, 16, 3), kv_lens=(40, 48, 19)):
    return Case("t", "mixed", q_lens, kv_lens, 8, 2, 64, "bf16", True, "list", block_size, "shuffled", seed=2)


def prefill_case(lens=(17, 40, 9), causal=True):
    return Case("t", "prefill", lens, lens, 4, 2, 64, "fp16", causal, "list", seed=3)


def run_and_check(name, case, inputs=None):
    inputs = inputs or build_inputs(case, "cpu")
    prepared = get_backend(name).prepare(case, inputs)
    packed = prepared.to_packed(prepared.run())
    check = check_output(packed, inputs)
    assert check.ok, check.reason
    return inputs, prepared


def calls_of(mod, what):
    return [kw for kind, step, kw in mod.calls if step == what]


# ---- detection ---------------------------------------------------------------------------------
def test_absent_flashinfer_is_unavailable_with_the_install_hint(monkeypatch):
    api.reset()
    monkeypatch.setitem(sys.modules, "flashinfer", None)  # import raises ImportError
    for name in ("flashinfer", "flashinfer-notc", "flashinfer-fa3"):
        ok, why = get_backend(name).available("cuda")
        assert not ok and "not installed" in why and api.INSTALL_HINT in why
        assert not get_backend(name).supports(decode_case(16))[0]
    api.reset()


def test_no_nvcc_or_ninja_means_no_jit(fi, monkeypatch):
    backend = get_backend("flashinfer")
    assert backend.available("cuda") == (True, "")
    monkeypatch.setattr(api, "find_ninja", lambda: None)
    assert "no ninja" in backend.available("cuda")[1]
    monkeypatch.setattr(api, "find_nvcc", lambda: None)
    ok, why = backend.available("cuda")
    assert not ok and "no nvcc for FlashInfer's JIT" in why
    monkeypatch.setattr(api, "has_prebuilt_cache", lambda: True)
    assert backend.available("cuda") == (True, "")
    assert not backend.available("cpu")[0]


def test_fa3_needs_hopper(fi, monkeypatch):
    backend = get_backend("flashinfer-fa3")
    assert backend.available("cuda") == (True, "")
    monkeypatch.setattr(api, "gpu_arch", lambda: 100)
    ok, why = backend.available("cuda")
    assert not ok and "sm90 (Hopper) only" in why and "sm_100" in why
    assert "sm90 (Hopper) only" in backend.supports(decode_case(16))[1]
    assert get_backend("flashinfer").available("cuda") == (True, "")  # FA2 runs there
    monkeypatch.setattr(api, "gpu_arch", lambda: 75)
    assert "sm_80+" in get_backend("flashinfer").available("cuda")[1]


def test_status_line_says_installed_importable_and_nvcc(fi, monkeypatch):
    def missing(name):
        raise api.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(api.importlib.metadata, "version", missing)
    assert api.status_line() == "not installed"
    monkeypatch.setattr(api.importlib.metadata, "version", lambda name: "0.7.2.post1")
    monkeypatch.setattr(api, "find_nvcc", lambda: None)
    line = api.status_line()
    assert line.startswith("0.7.2.post1 (JIT: nvcc missing, ninja /usr/bin/ninja") and "cached_ops" in line
    api.reset()
    monkeypatch.setitem(sys.modules, "flashinfer", None)
    assert "installed but not importable" in api.status_line()


# ---- the page table ----------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_page_metadata_from_block_tables_with_mixed_lengths(block_size):
    kv_lens = (1, block_size, block_size + 1, 3 * block_size - 1, 300)
    tables = torch.zeros((len(kv_lens), 400), dtype=torch.int32)
    gen = torch.Generator().manual_seed(block_size)
    rows = []
    for i, n in enumerate(kv_lens):
        pages = -(-n // block_size)
        row = torch.randperm(2000, generator=gen)[:pages].to(torch.int32)
        tables[i, :pages] = row
        rows.append(row)
    meta = calls.page_metadata(tables, kv_lens, block_size)
    assert meta.indptr.dtype == meta.indices.dtype == meta.last_page_len.dtype == torch.int32
    assert meta.indices.tolist() == torch.cat(rows).tolist()  # each sequence's pages, in its order
    assert meta.indptr.tolist() == [0] + torch.cumsum(torch.tensor([len(r) for r in rows]), 0).tolist()
    for i, n in enumerate(kv_lens):
        last = int(meta.last_page_len[i])
        assert 1 <= last <= block_size and (len(rows[i]) - 1) * block_size + last == n


def test_page_metadata_refuses_a_table_too_narrow():
    with pytest.raises(ValueError, match="cannot hold"):
        calls.page_metadata(torch.zeros((1, 2), dtype=torch.int32), (33,), 16)


# ---- paged decode ------------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_decode_tensor_cores_every_block_size_matches_the_reference(fi, block_size):
    case = decode_case(block_size)
    inputs, prepared = run_and_check("flashinfer", case)
    (ctor,) = calls_of(fi, "init")
    assert ctor["use_tensor_cores"] is True and ctor["backend"] == "fa2" and ctor["kv_layout"] == "NHD"
    (plan,) = calls_of(fi, "plan")
    assert (plan["hq"], plan["hkv"], plan["d"], plan["page_size"]) == (8, 2, 64, block_size)  # GQA 4
    assert plan["sm_scale"] == case.softmax_scale and plan["q_data_type"] is torch.bfloat16
    assert (plan["window_left"], plan["logits_soft_cap"], plan["pos_encoding_mode"]) == (-1, 0.0, "NONE")
    run = calls_of(fi, "run")[-1]
    k_cache, v_cache = run["paged_kv_cache"]
    assert k_cache is inputs.paged.k_cache and v_cache is inputs.paged.v_cache  # the pool, no copy
    assert run["q"] is inputs.q
    info = prepared.info
    assert info["fi_path"] == info["variant"] == "decode-fa2-tc" and info["fi_backend"] == "fa2"
    assert info["fi_version"] == "0.7.2.post1" and info["fi_pages"] == plan["indices"].numel()


def test_decode_without_tensor_cores_and_its_group_sizes(fi):
    _, prepared = run_and_check("flashinfer-notc", decode_case(16, hq=12, hkv=2))  # group 6
    assert calls_of(fi, "init")[0]["use_tensor_cores"] is False
    assert prepared.info["fi_path"] == "decode-fa2"
    backend = get_backend("flashinfer-notc")
    ok, why = backend.supports(decode_case(16, hq=10, hkv=2))  # group 5: no kernel
    assert not ok and "GQA group 5" in why
    assert "decode only" in backend.supports(mixed_case(16))[1]
    assert backend.kv_inputs == ("paged",)
    assert get_backend("flashinfer").supports(decode_case(16, hq=10, hkv=2)) == (True, "")


def test_decode_fa3_on_hopper(fi):
    _, prepared = run_and_check("flashinfer-fa3", decode_case(16, d=128))
    ctor = calls_of(fi, "init")[0]
    assert ctor["use_tensor_cores"] is True and ctor["backend"] == "fa3"
    assert prepared.info["fi_path"] == "decode-fa3" and prepared.info["fi_backend"] == "fa3"


def test_prefix_shared_pages_are_read_through_the_same_indices(fi):
    case = Case("t", "decode", (1, 1, 1), (80, 96, 64), 8, 2, 64, "bf16", True, "list", 16, "shuffled",
                seed=4, prefix_len=48)
    inputs, _ = run_and_check("flashinfer", case)
    indices = calls_of(fi, "plan")[0]["indices"]
    assert indices.numel() > torch.unique(indices).numel()  # the 3 prefix pages appear in every sequence


# ---- prefill -----------------------------------------------------------------------------------
def test_chunked_prefill_goes_through_the_paged_prefill_wrapper(fi):
    case = mixed_case(16)
    inputs, prepared = run_and_check("flashinfer", case)
    (plan,) = calls_of(fi, "plan")
    assert torch.equal(plan["qo_indptr"], inputs.cu_seqlens_q) and plan["causal"] is True
    assert prepared.info["fi_path"] == "prefill-paged" and prepared.info["variant"] == "prefill-paged-fa2"
    assert fi.calls[0][0] == "prefill-paged"


def test_paged_prefill_fa3_and_ragged_prefill(fi):
    case = Case("t", "prefill", (24, 40), (24, 40), 8, 2, 64, "bf16", True, "list", 8, "shuffled", seed=5)
    _, prepared = run_and_check("flashinfer-fa3", case)
    assert prepared.info["fi_path"] == "prefill-paged" and calls_of(fi, "init")[0]["backend"] == "fa3"
    fi.calls.clear()
    case = prefill_case(causal=False)
    inputs, prepared = run_and_check("flashinfer", case)
    (plan,) = calls_of(fi, "plan")
    assert torch.equal(plan["kv_indptr"], inputs.cu_seqlens_k) and plan["causal"] is False
    run = calls_of(fi, "run")[-1]
    assert run["k"] is inputs.k and run["v"] is inputs.v
    assert prepared.info["fi_path"] == "prefill-ragged" and "kv_layout_used" not in prepared.info


# ---- plan untimed, run timed, JIT recorded -----------------------------------------------------
def test_plan_happens_once_in_prepare_and_run_only_runs(fi):
    _, prepared = run_and_check("flashinfer", decode_case(16))
    steps = [step for _, step, _ in fi.calls]
    assert steps == ["init", "plan", "run", "run"]  # prepare: plan + a first run; then the timed run
    for _ in range(3):
        prepared.run()
    assert [step for _, step, _ in fi.calls][4:] == ["run"] * 3


def test_jit_seconds_and_built_modules_are_recorded(fi):
    case = decode_case(16)
    _, first = run_and_check("flashinfer", case)
    assert first.info["fi_jit_built"] == ["decode_tcTrue_fa2_d64"]
    assert first.info["compile_s"] >= first.info["fi_plan_s"] >= 0
    assert first.info["fi_jit_dir"].endswith("0.7.2.post1/cached_ops")
    _, again = run_and_check("flashinfer", case)
    assert again.info["fi_jit_built"] == []  # cached: nothing compiled the second time


def test_run_point_gives_an_ok_row_with_the_path(fi):
    case = mixed_case(32)
    inputs = build_inputs(case, "cpu")
    row = run_point(case, get_backend("flashinfer"), inputs, TimingPolicy.for_device("cpu"), {})
    assert row["status"] == "ok", row["reason"]
    assert row["fi_path"] == "prefill-paged" and row["fi_version"] == "0.7.2.post1" and "compile_s" in row


def _sorted_pages(meta, page_size):  # each sequence's pages in ascending order, not the table's
    ip = meta.indptr.tolist()
    parts = [meta.indices[ip[i]:ip[i + 1]].sort().values for i in range(len(ip) - 1)]
    return calls.PageMetadata(meta.indptr, torch.cat(parts).contiguous(), meta.last_page_len)


def _last_key_dropped(meta, page_size):  # the context one token short
    return calls.PageMetadata(meta.indptr, meta.indices, meta.last_page_len - 1)


def _stale_slot_read(meta, page_size):  # one slot past the end: a stale token of the pool
    return calls.PageMetadata(meta.indptr, meta.indices, meta.last_page_len + 1)


def _last_page_dropped(meta, page_size):  # the partial last page skipped
    ip = meta.indptr.tolist()
    keep = torch.cat([meta.indices[ip[i]:ip[i + 1] - 1] for i in range(len(ip) - 1)]).contiguous()
    indptr = (meta.indptr - torch.arange(len(ip), dtype=torch.int32)).contiguous()
    return calls.PageMetadata(indptr, keep, torch.full_like(meta.last_page_len, page_size))


PLANTED = {"pages-sorted": _sorted_pages, "last-key-dropped": _last_key_dropped,
           "stale-slot-read": _stale_slot_read, "last-page-dropped": _last_page_dropped}


@pytest.mark.parametrize("fault", sorted(PLANTED))
@pytest.mark.parametrize("name", ["flashinfer", "flashinfer-notc"])
def test_a_planted_page_table_fault_is_caught(fi, monkeypatch, fault, name):
    real = calls.page_metadata
    monkeypatch.setattr(calls, "page_metadata",
                        lambda tables, lens, bs: PLANTED[fault](real(tables, lens, bs), bs))
    case = decode_case(16, kv_lens=(200, 150, 90))  # last pages hold 8, 6 and 10 of 16 tokens
    inputs = build_inputs(case, "cpu")
    prepared = get_backend(name).prepare(case, inputs)
    assert not check_output(prepared.run(), inputs).ok


def test_a_planted_softmax_scale_fault_is_caught(fi, monkeypatch):
    real = calls.plan_decode

    def off_scale(lib, case, inputs, path):
        planned = real(lib, case, inputs, path)
        planned.wrapper.planned["sm_scale"] *= 1.02
        return planned

    monkeypatch.setattr(calls, "plan_decode", off_scale)
    case = decode_case(16, kv_lens=(200, 150, 90))
    inputs = build_inputs(case, "cpu")
    assert not check_output(get_backend("flashinfer").prepare(case, inputs).run(), inputs).ok


# ---- limits and patterns -----------------------------------------------------------------------
def test_unsupported_dtype_head_dim_and_patterns_name_the_rule(fi, monkeypatch):
    backend = get_backend("flashinfer")
    fp32 = Case("t", "decode", (1,), (8,), 4, 2, 64, "fp32", True, "list", 16)
    assert "dtype fp32" in backend.supports(fp32)[1]
    assert "head_dim 96" in backend.supports(decode_case(16, d=96))[1]
    both = decode_case(16, alibi=True, softcap=30.0)
    assert "before the soft-cap" in backend.supports(both)[1]
    assert "no alibi pattern" in get_backend("flashinfer-fa3").supports(decode_case(16, alibi=True))[1]
    monkeypatch.setitem(sys.modules, "attnbench.patterns", None)
    assert "attnbench.patterns" in backend.supports(decode_case(16, alibi=True))[1]
    with pytest.raises(Unsupported, match="head_dim 96"):
        backend.prepare(decode_case(16, d=96), build_inputs(decode_case(16), "cpu"))


def test_alibi_runs_where_the_slopes_agree(fi, monkeypatch):
    patterns = types.ModuleType("attnbench.patterns")
    patterns.alibi_slopes = lambda n: api.flashinfer_slopes(n, None).tolist()
    monkeypatch.setitem(sys.modules, "attnbench.patterns", patterns)
    backend = get_backend("flashinfer")
    assert backend.supports(decode_case(16, hq=8, alibi=True)) == (True, "")
    patterns.alibi_slopes = lambda n: [1.0] * n
    assert "slopes differ" in backend.supports(decode_case(16, alibi=True))[1]
    assert api.flashinfer_slopes(8, None).tolist() == [2.0 ** (-k) for k in range(1, 9)]
    assert api.flashinfer_slopes(6, None).tolist() == pytest.approx(
        [2.0 ** (-2 * k) for k in range(1, 5)] + [2.0 ** (-1), 2.0 ** (-3)])


def test_alibi_without_causal_masking_runs_only_for_one_query_token(fi):
    # FlashInfer adds slope * (j - i), signed; attnbench -slope * |i - j|: keys right of a query
    backend = get_backend("flashinfer")
    prefill = Case("t", "prefill", (9, 4), (9, 4), 8, 2, 64, "bf16", False, "list", alibi=True)
    assert "alibi without causal" in backend.supports(prefill)[1]
    assert backend.supports(replace(prefill, causal=True)) == (True, "")
    decode = Case("t", "decode", (1, 1), (9, 4), 8, 2, 64, "bf16", False, "list", 16, alibi=True)
    assert backend.supports(decode) == (True, "")  # the one query is the last position: no key right of it


def test_the_jit_cache_is_the_packages_own_where_it_says(fi, tmp_path):
    assert api.jit_dir("0.7.2.post1") == tmp_path / ".cache" / "flashinfer" / "0.7.2.post1" / "cached_ops"
    real = tmp_path / ".cache" / "flashinfer" / "0.7.2.post1" / "90a" / "cached_ops"
    fi.jit = types.SimpleNamespace(env=types.SimpleNamespace(FLASHINFER_JIT_DIR=real))
    lib, _ = api.detect()
    assert api.jit_dir(lib.version, lib) == real
    (real / "batch_decode_x").mkdir(parents=True)
    (real / "batch_decode_x" / "batch_decode_x.so").touch()
    (real / "tmp").mkdir()  # FlashInfer's scratch folder: listed on an H200 as if it were a module
    (real / "half_built").mkdir()  # a build that left no library yet
    assert api.built_modules(lib.version, lib) == {"batch_decode_x"}


def test_window_and_softcap_map_to_plan_keywords(fi):
    plain = decode_case(16)
    inputs = build_inputs(plain, "cpu")
    case = decode_case(16, window=32, softcap=50.0)
    get_backend("flashinfer").prepare(case, inputs)
    plan = calls_of(fi, "plan")[0]
    assert (plan["window_left"], plan["logits_soft_cap"], plan["pos_encoding_mode"]) == (32, 50.0, "NONE")
    assert calls.pattern_kwargs(decode_case(16, window=0))["window_left"] == 0
    assert calls.pattern_kwargs(decode_case(16, alibi=True))["pos_encoding_mode"] == "ALIBI"


def test_positional_calls_are_refused_by_the_fake():
    mod = make_fake()
    with pytest.raises(TypeError):
        mod.BatchPrefillWithRaggedKVCacheWrapper(torch.zeros(8, dtype=torch.uint8))


# ---- the shipped H100 / H200 study config ------------------------------------------------------
def _h100_plan():
    from attnbench.backends import backend_names
    from attnbench.config.sweep_config import load_config
    from attnbench.paths import configs_dir
    from attnbench.runner.plan import build_plan

    cfg = load_config(configs_dir() / "h100.yaml", backend_names())
    return build_plan(cfg, "cuda")


def test_h100_config_runs_flashinfer_on_the_study_cases(fi):
    ran = {pc.case.workload for pc in _h100_plan().cases if "flashinfer" in pc.run}
    assert {"decode-main", "decode-long", "decode-mixed", "decode-prefix", "prefill-main",
            "chunked-prefill", "decode-blocks"} <= ran
    fa3 = {pc.case.workload for pc in _h100_plan().cases if "flashinfer-fa3" in pc.run}
    assert {"decode-main", "decode-long", "prefill-main", "chunked-prefill"} <= fa3


def test_h100_config_skips_flashinfer_cleanly_when_not_installed(monkeypatch):
    api.reset()
    monkeypatch.setitem(sys.modules, "flashinfer", None)
    plan = _h100_plan()
    reasons = {r for pc in plan.cases for n, r in pc.skip.items() if n.startswith("flashinfer")}
    assert reasons and all(r.startswith("unavailable: flashinfer is not installed") for r in reasons)
    assert not any(n.startswith("flashinfer") for pc in plan.cases for n in pc.run)
    api.reset()


def test_the_three_names_share_one_warm_up_and_register_as_paged_external():
    names = ("flashinfer", "flashinfer-notc", "flashinfer-fa3")
    backends = [get_backend(n) for n in names]
    assert {b.warmup_key for b in backends} == {"flashinfer"}
    assert {(b.family, b.impl) for b in backends} == {("paged", "external")}
    assert [b.kernels for b in backends] == ["fa2-tc", "fa2-notc", "fa3"]
