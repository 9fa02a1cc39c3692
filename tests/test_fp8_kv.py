"""The fp8 KV-cache axis on the CPU (issue 20): config and case ids, quantised inputs and the reference
made from them, the byte model, skip reasons, rows and the readers of rows.

The Triton kernel's fp8 path runs under the interpreter in tests/test_triton_kernels.py; cuda-paged's
(its tc implementation) on a GPU in tests/test_cuda_kernels.py, its CPU side in tests/test_cuda_paged_fp8.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from attnbench import metrics
from attnbench import row as columns
from attnbench.backends import all_backends, get_backend
from attnbench.case import KV_DTYPES, KV_SCALES, Case
from attnbench.config.sweep_config import ConfigError, expand_workload, load_config, parse_config
from attnbench.inputs import build_inputs
from attnbench.kv_quant import FP8_MAX, dequantise, quantise
from attnbench.memory.iteration_time import _shape
from attnbench.paths import configs_dir
from attnbench.point import base_row
from attnbench.reference import check_output, reference_attention
from attnbench.report.load import normalize
from attnbench.report.select import describe_case
from attnbench.runner.plan import build_plan

ROOT = Path(__file__).resolve().parent.parent
FP8_BACKENDS = {"naive", "triton-paged", "cuda-paged"}  # the built-in backends that read an fp8 cache

WORKLOAD = """
name: t
workloads:
  - name: d
    phase: decode
    batch: [3]
    lengths: ["uniform:5-90"]
    q_heads: [4]
    kv_heads: [2]
    head_dim: [16]
    block_size: [8]
"""


def fp8_case(scale="per-tensor", phase="decode", q=(1, 1, 1), kv=(1, 33, 90), bs=8, dtype="bf16",
             hq=4, hkv=2, d=16) -> Case:
    causal = phase != "decode"
    return Case("t", phase, q, kv, hq, hkv, d, dtype, causal, block_size=bs, kv_dtype="fp8_e4m3",
                kv_scale=scale)


# ---- config and case ids ---------------------------------------------------------------------------
def test_the_axes_expand_auto_once_and_fp8_per_scale():
    cfg = parse_config(WORKLOAD + "    kv_dtype: [auto, fp8_e4m3]\n    kv_scale: [per-tensor, per-head]\n",
                       "t.yaml")
    cases = expand_workload(cfg.workloads[0], cfg.seed)
    kinds = [(c.kv_dtype, c.kv_scale, c.paged) for c in cases]
    assert kinds == [(kv, sc, p) for kv, sc in (("auto", None), ("fp8_e4m3", "per-tensor"),
                                                ("fp8_e4m3", "per-head")) for p in (False, True)]
    ids = [c.case_id for c in cases]
    assert len(set(ids)) == len(ids)
    assert ids[2].split("/")[6:8] == ["bf16", "kvfp8_e4m3-per-tensor"]
    # every kv point shares its lengths (and so its work) with the auto case
    assert len({(c.q_lens, c.kv_lens) for c in cases}) == 1


@pytest.mark.parametrize(("extra", "needle"), [
    ("    kv_dtype: [fp8]\n", "kv_dtype: bad value 'fp8'; expected one of " + ", ".join(KV_DTYPES)),
    ("    kv_dtype: fp8_e4m3\n    kv_scale: per-block\n",
     "kv_scale: bad value 'per-block'; expected one of " + ", ".join(KV_SCALES)),
    ("    kv_scale: per-head\n", "no kv_scale without a quantised kv_dtype"),
    ("    kv_dtype: []\n", "kv_dtype: bad value []"),
])
def test_bad_kv_values_are_one_line_naming_what_is_allowed(extra, needle):
    with pytest.raises(ConfigError) as err:
        parse_config(WORKLOAD + extra, "t.yaml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_case_checks_its_kv_fields():
    assert fp8_case(scale=None).kv_scale == "per-tensor"  # the documented default
    with pytest.raises(ValueError, match="kv_scale 'per-head' needs a quantised kv_dtype"):
        Case("t", "decode", (1,), (4,), 2, 2, 16, "bf16", False, kv_scale="per-head")
    with pytest.raises(ValueError, match="kv_dtype 'int8'"):
        Case("t", "decode", (1,), (4,), 2, 2, 16, "bf16", False, kv_dtype="int8")
    c = fp8_case("per-head")
    assert Case.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_case_ids_rows_and_json_of_configs_without_the_axis_stay_as_they_were():
    # tests/fixtures/rows/golden.json holds the points of tiny.yaml at the base commit 1ac65ae
    golden = json.loads((ROOT / "tests" / "fixtures" / "rows" / "golden.json").read_text())
    cfg = load_config(ROOT / "tests" / "fixtures" / "rows" / "tiny.yaml")
    ids = {c.case_id for wl in cfg.workloads for c in expand_workload(wl, cfg.seed)}
    assert ids == {g["point"][0] for g in golden}
    # and no shipped workload without the axis carries the new fields anywhere (h200-fp8.yaml asks for it)
    for path in sorted(configs_dir().glob("*.yaml")):
        if path.name.startswith("fragmentation"):
            continue
        cfg = load_config(path)
        for wl in cfg.workloads:
            if wl.kv_dtype != ("auto",):
                continue
            for c in expand_workload(wl, cfg.seed):
                assert c.kv_dtype == "auto" and "/kv" not in c.case_id, path.name
                assert "kv_dtype" not in c.to_json() and "kv_dtype" not in c.describe(), path.name


def test_an_explicit_auto_gives_the_cases_of_no_axis():
    plain = parse_config(WORKLOAD, "t.yaml").workloads[0]
    auto = parse_config(WORKLOAD + "    kv_dtype: [auto]\n", "t.yaml").workloads[0]
    assert expand_workload(plain, 0) == expand_workload(auto, 0)


# ---- quantisation, inputs and the reference --------------------------------------------------------
@pytest.mark.parametrize("scale", KV_SCALES)
def test_quantise_scales_by_amax_over_448_and_round_trips_within_e4m3s_precision(scale):
    x = (torch.randn(200, 3, 16) * torch.tensor([0.5, 1.0, 4.0]).view(1, 3, 1)).to(torch.bfloat16)
    stored, s = quantise(x, "fp8_e4m3", scale)
    assert stored.dtype == torch.float8_e4m3fn and s.dtype == torch.float32
    amax = x.float().abs().amax(dim=(0, 2)) if scale == "per-head" else x.float().abs().amax().reshape(1)
    assert torch.equal(s, amax / FP8_MAX)
    back = dequantise(stored, s, torch.float64)
    assert torch.isfinite(back).all() and back.abs().amax() > 0
    # every element's largest value maps to 448 exactly; rounding to 3 mantissa bits: |err| <= 2^-4 |x|
    # for normal values, plus half the smallest subnormal (2^-10 * scale) near zero
    per_elem = (s if scale == "per-tensor" else s.view(1, 3, 1)).double()
    err = (back - x.double()).abs()
    assert (err <= x.double().abs() * 2.0**-4 + 2.0**-10 * per_elem).all()
    assert stored.float().abs().amax() == FP8_MAX


@pytest.mark.parametrize("scale", KV_SCALES)
def test_fp8_inputs_store_the_same_bytes_packed_and_paged_with_finite_stale_slots(scale):
    case = fp8_case(scale)
    base = build_inputs(case.without_paging(), "cpu")
    inp = build_inputs(case, "cpu", base)
    p = inp.paged
    assert p is not None and inp.k_scale is not None and inp.v_scale is not None
    assert inp.k.dtype == p.k_cache.dtype == torch.float8_e4m3fn and inp.q.dtype == torch.bfloat16
    assert inp.k_scale.shape == ((2,) if scale == "per-head" else (1,))
    assert not torch.equal(inp.k_scale, inp.v_scale)  # K and V are quantised each with its own scale
    tables, off = p.block_tables.long(), 0
    for i, n in enumerate(case.kv_lens):
        t = torch.arange(n)
        slots = tables[i][t // 8] * 8 + t % 8
        for cache, packed in ((p.k_cache, inp.k), (p.v_cache, inp.v)):
            assert torch.equal(cache.view(torch.uint8).view(-1, 2, 16)[slots],
                               packed.view(torch.uint8)[off : off + n])
        off += n
    assert torch.isfinite(p.k_cache.float()).all() and torch.isfinite(p.v_cache.float()).all()


@pytest.mark.parametrize("scale", KV_SCALES)
def test_the_reference_is_attention_over_the_dequantised_cache(scale):
    case = fp8_case(scale, phase="mixed", q=(1, 5, 9), kv=(1, 33, 90), bs=None)
    inp = build_inputs(case, "cpu")
    assert inp.k_scale is not None and inp.v_scale is not None
    k64, v64 = dequantise(inp.k, inp.k_scale, torch.float64), dequantise(inp.v, inp.v_scale, torch.float64)
    cu_q, cu_k = inp.cu_seqlens_q.tolist(), inp.cu_seqlens_k.tolist()
    unquantised = replace(case, kv_dtype="auto", kv_scale=None)
    expected = reference_attention(unquantised, inp.q, k64, v64, cu_q, cu_k)
    assert torch.allclose(inp.reference, expected, rtol=0, atol=1e-6)
    assert check_output(expected, inp).ok  # the bar: the output dtype's, met by the exact answer


def test_an_output_that_ignores_the_quantisation_is_incorrect():
    """The reference is exact w.r.t. the fp8 values, so a kernel reading the bf16 data the cache was made
    from (or a wrong scale) misses by e4m3's rounding, far above bf16's bar: the check sees it."""
    case = fp8_case("per-head", kv=(40, 200, 90))
    inp = build_inputs(case.without_paging(), "cpu")
    # the bf16 source data (same seed): what quantise() was applied to
    from attnbench.inputs import random_qkv

    q, k, v = random_qkv(case, "cpu")
    cu_q, cu_k = inp.cu_seqlens_q.tolist(), inp.cu_seqlens_k.tolist()
    unquantised = replace(case, kv_dtype="auto", kv_scale=None, block_size=None)
    source_out = reference_attention(unquantised, q, k, v, cu_q, cu_k)
    check = check_output(source_out, inp)
    assert not check.ok and check.ratio is not None and check.ratio > 2, check


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("scale", KV_SCALES)
def test_naive_dequantises_and_passes_the_check(scale, paged):
    case = fp8_case(scale, phase="mixed", q=(1, 5, 9), kv=(1, 33, 90), bs=8 if paged else None)
    inp = build_inputs(case, "cpu")
    naive = get_backend("naive")
    assert naive.supports(case) == (True, "")
    prepared = naive.prepare(case, inp)
    check = check_output(prepared.to_packed(prepared.run()), inp)
    assert check.ok, check.reason


# ---- byte model and pool accounting ----------------------------------------------------------------
@pytest.mark.parametrize("bs", [None, 8])
@pytest.mark.parametrize("scale", KV_SCALES)
def test_fp8_reads_half_the_kv_bytes_of_bf16_plus_its_scales(scale, bs):
    fp8 = fp8_case(scale, phase="mixed", q=(1, 5, 9), kv=(1, 33, 90), bs=bs)
    bf16 = replace(fp8, kv_dtype="auto", kv_scale=None)
    kv_bf16 = 2 * fp8.total_kv * fp8.num_kv_heads * fp8.head_dim * 2
    scales = 2 * 4 * (fp8.num_kv_heads if scale == "per-head" else 1)
    assert metrics.min_hbm_bytes(bf16) - metrics.min_hbm_bytes(fp8) == kv_bf16 // 2 - scales
    assert metrics.flops(bf16) == metrics.flops(fp8)


def test_the_pools_kv_bytes_count_one_byte_per_element():
    fp8 = fp8_case()
    bf16 = replace(fp8, kv_dtype="auto", kv_scale=None)
    s8, s16 = build_inputs(fp8, "cpu").paged.stats, build_inputs(bf16, "cpu").paged.stats
    assert s8["kv_blocks_allocated"] == s16["kv_blocks_allocated"]
    for key in ("kv_bytes_allocated", "kv_bytes_used", "kv_bytes_logical"):
        assert 2 * s8[key] == s16[key] > 0, key


# ---- backends that cannot read fp8 are skipped with the reason -------------------------------------
def test_every_backend_but_the_fp8_ones_skips_fp8_with_the_reason():
    for paged in (False, True):
        case = fp8_case(bs=8 if paged else None, d=64)  # a head dim every fp8 backend takes
        for name, backend in all_backends().items():
            if not backend.wants(case):
                continue
            ok, why = backend.supports(case)
            if name in FP8_BACKENDS:
                assert ok, (name, why)
            else:
                assert not ok and why.startswith(f"kv_dtype fp8_e4m3: not supported by {name}"), (name, why)
    # the CUDA flash kernel is among them, through the base check alone
    assert get_backend("cuda-flash").supports(fp8_case(bs=None)) == (
        False, "kv_dtype fp8_e4m3: not supported by cuda-flash")


def test_a_sweep_plan_records_the_skips_and_the_rows_carry_the_kv_columns():
    cfg = parse_config(WORKLOAD + "    kv_dtype: [auto, fp8_e4m3]\n", "t.yaml")
    plan = build_plan(cfg, "cpu", ["naive", "sdpa-math", "cpu-paged"])
    fp8 = [pc for pc in plan.cases if pc.case.kv_quantised]
    assert fp8 and all("naive" in pc.run for pc in fp8)
    skipped = {name: why for pc in fp8 for name, why in pc.skip.items()}
    for name in ("sdpa-math", "cpu-paged"):  # (a CUDA backend is "unavailable" on a CPU first)
        assert f"kv_dtype fp8_e4m3: not supported by {name}" in skipped[name]
    row = columns.check(base_row(fp8[0].case, get_backend("naive"), "cpu"), False)
    assert (row["kv_dtype"], row["kv_scale"]) == ("fp8_e4m3", "per-tensor")
    auto = next(pc for pc in plan.cases if not pc.case.kv_quantised)
    assert "kv_dtype" not in base_row(auto.case, get_backend("naive"), "cpu")


def test_an_exclude_rule_can_name_kv_dtype():
    cfg = parse_config(WORKLOAD + "    kv_dtype: [auto, fp8_e4m3]\nexclude:\n  - {kv_dtype: fp8_e4m3}\n",
                       "t.yaml")
    plan = build_plan(cfg, "cpu", ["naive"])
    assert plan.cases and not any(pc.case.kv_quantised and pc.run for pc in plan.cases)


# ---- readers of rows -------------------------------------------------------------------------------
def test_reports_keep_fp8_rows_apart_and_read_rows_without_the_columns():
    fp8 = fp8_case()
    auto = replace(fp8, kv_dtype="auto", kv_scale=None)
    naive = get_backend("naive")
    rows = [{**base_row(c, naive, "cpu"), "status": "ok", "reason": "", "latency_ms_p50": 1.0}
            for c in (auto, fp8)]
    df = normalize(rows)
    assert df["problem"].nunique() == 2
    old = normalize(rows[:1])  # a run from before the axis: no kv columns at all
    assert old["problem"].iloc[0] == df["problem"].iloc[0]
    assert "KV fp8_e4m3 (per-tensor scale)" in describe_case(df.iloc[1])
    assert "KV" not in describe_case(df.iloc[0])
    assert _shape(rows[0])[-1] == "auto" and _shape(rows[1])[-1] == "fp8_e4m3"
