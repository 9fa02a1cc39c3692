"""cuda-paged with an fp8 KV cache, on the CPU: what it accepts, the bytes it is held to, and the scales
and codes its prepare() hands the library (through a recorder in place of the CUDA library); with nvcc,
the built library's argument checks. The kernel itself runs in tests/test_cuda_kernels.py (GPU).
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from attnbench import cuda_build, cuda_lib, metrics
from attnbench.backends import cuda_paged
from attnbench.backends.cuda_paged import IMPL_ENV, CudaPaged
from attnbench.case import KV_SCALES, Case
from attnbench.inputs import build_inputs
from attnbench.reference import check_output

needs_nvcc = pytest.mark.skipif(cuda_build.find_nvcc() is None, reason="nvcc not found")


def fp8_case(scale: str = "per-head", bs: int = 16, d: int = 64, dtype: str = "bf16", hq: int = 8,
             hkv: int = 2, kv: tuple[int, ...] = (1, 40, 300)) -> Case:
    return Case("t", "decode", (1,) * len(kv), kv, hq, hkv, d, dtype, True, block_size=bs,
                kv_dtype="fp8_e4m3", kv_scale=scale)


# ---- what the backend accepts --------------------------------------------------------------------
@pytest.mark.parametrize("scale", KV_SCALES)
@pytest.mark.parametrize("bs", cuda_paged.BLOCK_SIZES)
@pytest.mark.parametrize("d", cuda_paged.HEAD_DIMS)
def test_tc_the_default_reads_fp8_per_tensor_and_per_head(monkeypatch, scale, bs, d):
    monkeypatch.delenv(IMPL_ENV, raising=False)
    assert CudaPaged().supports(fp8_case(scale, bs, d)) == (True, "")
    monkeypatch.setenv(IMPL_ENV, "tc")
    assert CudaPaged().supports(fp8_case(scale, bs, d, dtype="fp16")) == (True, "")


def test_simt_refuses_fp8_in_one_line_naming_the_way_out(monkeypatch):
    monkeypatch.setenv(IMPL_ENV, "simt")
    ok, why = CudaPaged().supports(fp8_case())
    assert not ok and "\n" not in why
    assert why.startswith("kv_dtype fp8_e4m3: ATTNBENCH_CUDA_PAGED_IMPL=simt reads fp16/bf16 K/V only")
    assert "impl tc" in why
    # an unquantised case is simt's as before
    assert CudaPaged().supports(replace(fp8_case(), kv_dtype="auto", kv_scale=None)) == (True, "")


def test_a_bad_impl_is_named_for_an_fp8_case(monkeypatch):
    monkeypatch.setenv(IMPL_ENV, "wgmma")
    ok, why = CudaPaged().supports(fp8_case())
    assert not ok and why == "ATTNBENCH_CUDA_PAGED_IMPL='wgmma': allowed tc, simt"


def test_the_other_limits_still_come_first():
    ok, why = CudaPaged().supports(fp8_case(d=96))
    assert not ok and "head_dim 96" in why


# ---- the bytes it is held to ---------------------------------------------------------------------
@pytest.mark.parametrize("scale", KV_SCALES)
def test_the_byte_model_reads_one_byte_per_fp8_element(scale):
    """The issue's shape (B64 ctx4096 Hq32/Hkv8 D128 bs16): K and V at 1 byte, Q and O at 2, plus the
    scales and the table entries; so at a fixed share of copy bandwidth fp8 runs 2.00x bf16's tokens/s."""
    fp8 = fp8_case(scale, bs=16, d=128, hq=32, hkv=8, kv=(4096,) * 64)
    bf16 = replace(fp8, kv_dtype="auto", kv_scale=None)
    q_o = 2 * 64 * 32 * 128 * 2
    kv = 2 * 64 * 4096 * 8 * 128
    scales = 2 * 4 * (8 if scale == "per-head" else 1)
    tables = 4 * 64 * (4096 // 16) + 4 * 64
    assert metrics.min_hbm_bytes(fp8) == q_o + kv + scales + tables
    assert metrics.min_hbm_bytes(bf16) == q_o + 2 * kv + tables
    assert metrics.min_hbm_bytes(bf16) / metrics.min_hbm_bytes(fp8) == pytest.approx(2.0, abs=0.005)


# ---- what prepare() hands the library ------------------------------------------------------------
class RecordingLib:
    """Stands in for cuda_lib.CudaLib: records the keyword arguments of each call."""

    def __init__(self):
        self.decode: list[dict] = []
        self.per_sm: list[dict] = []

    def paged_blocks_per_sm(self, head_dim, num_q_heads, num_kv_heads, dtype, impl="tc", kv_dtype=0):
        self.per_sm.append(dict(head_dim=head_dim, dtype=dtype, impl=impl, kv_dtype=kv_dtype))
        return 3

    def paged_decode(self, **kw):
        self.decode.append(kw)


@pytest.fixture
def recorder(monkeypatch):
    lib = RecordingLib()
    monkeypatch.setattr(cuda_lib, "load", lambda arch=None: lib)
    sm132 = SimpleNamespace(multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda dev: sm132)
    monkeypatch.setattr(cuda_paged, "current_stream", lambda: 0)
    monkeypatch.delenv(IMPL_ENV, raising=False)
    return lib


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("scale", KV_SCALES)
def test_prepare_passes_the_fp8_pool_its_scales_and_their_count(recorder, monkeypatch, scale, variant):
    monkeypatch.setenv(cuda_paged.VARIANT_ENV, variant)
    case = fp8_case(scale)
    inputs = build_inputs(case, "cpu")
    prepared = CudaPaged().prepare(case, inputs)
    prepared.run()
    (kw,) = recorder.decode
    assert inputs.paged is not None and inputs.k_scale is not None and inputs.v_scale is not None
    pool = inputs.paged
    assert (kw["k_cache"], kw["v_cache"]) == (pool.k_cache.data_ptr(), pool.v_cache.data_ptr())
    assert inputs.paged.k_cache.dtype == torch.float8_e4m3fn
    assert kw["kv_dtype"] == cuda_lib.KV_DTYPE_CODES["fp8_e4m3"] and kw["impl"] == "tc"
    assert (kw["k_scale"], kw["v_scale"]) == (inputs.k_scale.data_ptr(), inputs.v_scale.data_ptr())
    assert kw["kv_scales"] == (case.num_kv_heads if scale == "per-head" else 1) == inputs.k_scale.numel()
    assert kw["dtype"] == cuda_lib.DTYPE_CODES["bf16"]  # the query's and the output's
    assert recorder.per_sm == [dict(head_dim=64, dtype=1, impl="tc", kv_dtype=1)]  # fp8 kernels' occupancy
    assert prepared.info["variant"] == variant and (kw["partition_tokens"] > 0) == (variant == "v2")


def test_prepare_of_an_unquantised_case_passes_no_scales(recorder):
    case = replace(fp8_case(), kv_dtype="auto", kv_scale=None)
    CudaPaged().prepare(case, build_inputs(case, "cpu")).run()
    (kw,) = recorder.decode
    assert (kw["kv_dtype"], kw["k_scale"], kw["v_scale"], kw["kv_scales"]) == (0, 0, 0, 0)
    assert recorder.per_sm[0]["kv_dtype"] == 0


def test_the_wrapper_puts_the_kv_arguments_before_the_stream():
    calls: list[tuple] = []
    lib = object.__new__(cuda_lib.CudaLib)
    lib._lib = SimpleNamespace(attnbench_paged_decode_tc=lambda *a: calls.append(a) or 0)
    lib.paged_decode(out=1, q=2, k_cache=3, v_cache=4, block_tables=5, kv_lens=6, batch=1, num_q_heads=8,
                     num_kv_heads=2, head_dim=64, block_size=16, table_stride=4, dtype=1, scale=0.125,
                     kv_dtype=1, k_scale=77, v_scale=88, kv_scales=2, stream=99)
    (args,) = calls
    assert len(args) == len(cuda_lib.PAGED_DECODE_ARGTYPES)
    assert args[-5:] == (1, 77, 88, 2, 99)


# ---- the built library's checks (no GPU: arguments are checked before any CUDA call) ---------------
@needs_nvcc
def test_the_library_rejects_fp8_where_it_cannot_read_it():
    cuda_build.compile_check(("sm_80",))
    lib = cuda_lib.CudaLib(cuda_build.build("sm_80"))
    args = dict(out=0, q=0, k_cache=0, v_cache=0, block_tables=0, kv_lens=0, batch=1, num_q_heads=8,
                num_kv_heads=2, head_dim=128, block_size=16, table_stride=1, dtype=1, scale=0.1)
    with pytest.raises(cuda_lib.KernelError, match=r"kv_dtype fp8 e4m3: attnbench_paged_decode_tc only"):
        lib.paged_decode(**args, kv_dtype=1, k_scale=16, v_scale=32, kv_scales=1, impl="simt")
    needs = r"fp8 KV needs k_scale, v_scale .* or 2 \(per KV head\), got 0"
    with pytest.raises(cuda_lib.KernelError, match=needs):
        lib.paged_decode(**args, kv_dtype=1)
    with pytest.raises(cuda_lib.KernelError, match=r"got 3"):
        lib.paged_decode(**args, kv_dtype=1, k_scale=16, v_scale=32, kv_scales=3)
    with pytest.raises(cuda_lib.KernelError, match=r"kv_dtype code 5: allowed 0 \(auto: dtype\), 1 \(fp8"):
        lib.paged_decode(**args, kv_dtype=5)


def test_the_planted_fp8_fault_is_one_the_check_sees():
    """tests/mutation.py's tc-fp8-v-scale-dropped leaves V's scale out: the output is the reference over
    s_v of its KV head; the harness's check (which the GPU mutant script applies) rejects it by far."""
    from tests.mutation import FP8_CUDA_MUTANTS

    assert "tc-fp8-v-scale-dropped" in FP8_CUDA_MUTANTS
    case = fp8_case("per-head", kv=(300, 1, 40))
    inputs = build_inputs(case, "cpu")
    assert inputs.v_scale is not None
    per_q_head = inputs.v_scale.repeat_interleave(case.gqa_ratio).view(1, -1, 1)
    out = (inputs.reference / per_q_head).to(torch.bfloat16)
    check = check_output(out, inputs)
    assert not check.ok and check.ratio is not None and check.ratio > 10
    assert check_output(inputs.reference.to(torch.bfloat16), inputs).ok  # the honest answer passes
