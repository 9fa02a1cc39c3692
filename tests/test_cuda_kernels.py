"""cuda-paged and cuda-flash against the harness reference, on a GPU (skipped without one).

Inputs come from attnbench.inputs.build_inputs (the harness's own path: random data, shuffled block
tables from the KV-cache manager, float32 reference). Every cache slot no sequence owns holds NaN, and
every output is poisoned with NaN and recomputed, so a read past a sequence's end or an element the
kernel forgot to write fails. Outputs are judged by attnbench.reference.check_output (per sequence and
query head, against the plain in-dtype PyTorch error). scripts/gpu_cuda_check.py covers a wider matrix
(spare junk blocks, invalid table padding, context 32768) and times the kernels.

An fp8 cache (kv_dtype fp8_e4m3, cuda-paged's tc implementation) is judged the same way against the
reference over the dequantised cache; its unowned slots hold e4m3's NaN byte, which the kernel's
conversion reads as 480, beyond any stored element (tests/cache_poison.py), so a stale read still shows.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from attnbench.backends.cuda_flash import CONFIGS, CudaFlash
from attnbench.backends.cuda_paged import CudaPaged
from attnbench.case import Case
from attnbench.inputs import Inputs, build_inputs
from attnbench.reference import ErrorCheck, check_output
from tests.cache_poison import poison_unused_slots

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def run_poisoned(backend, case: Case, inputs: Inputs | None = None) -> tuple[ErrorCheck, torch.Tensor, dict]:
    """Check one run on NaN-poisoned cache slots (paged cases) and a NaN-poisoned output buffer."""
    if inputs is None:
        inputs = build_inputs(case, "cuda")
        if inputs.paged is not None:
            poison_unused_slots(inputs.paged)
    prep = backend.prepare(case, inputs)
    prep.run().fill_(float("nan"))
    out = prep.to_packed(prep.run())
    torch.cuda.synchronize()
    return check_output(out, inputs), out, prep.info


def decode_case(kv_lens, hq, hkv, d, dtype, bs, seed=0) -> Case:
    return Case(
        workload="t",
        phase="decode",
        q_lens=(1,) * len(kv_lens),
        kv_lens=tuple(kv_lens),
        num_q_heads=hq,
        num_kv_heads=hkv,
        head_dim=d,
        dtype=dtype,
        causal=True,
        block_size=bs,
        seed=seed,
    )


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("hq, hkv", [(4, 4), (8, 2), (16, 2)])  # GQA 1, 4, 8
@pytest.mark.parametrize("bs", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_paged_decode(monkeypatch, dtype, d, bs, hq, hkv, variant):
    monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_VARIANT", variant)
    monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_PARTITION", "256")  # v2: 1000 tokens -> 4 partitions merged
    check, _, info = run_poisoned(
        CudaPaged(), decode_case((1, 17, 129, 1000), hq, hkv, d, dtype, bs, seed=bs + d)
    )
    assert info["variant"] == variant
    assert check.ok, check.reason


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_paged_v1_and_v2_agree_on_a_long_context(monkeypatch, dtype):
    v1_and_v2_agree(monkeypatch, decode_case((33, 32768), 24, 4, 128, dtype, 16, seed=5))  # group 6


def v1_and_v2_agree(monkeypatch, case: Case) -> None:
    """Both variants correct on a case with padded head slots, and v2 judged against v1's output in
    place of the reference: they differ only in how partitions are merged, so they must agree within
    what the check allows against the reference itself."""
    inputs = build_inputs(case, "cuda")
    assert inputs.paged is not None and poison_unused_slots(inputs.paged) > 0
    outs = {}
    for variant in ("v1", "v2"):
        monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_VARIANT", variant)
        check, outs[variant], _ = run_poisoned(CudaPaged(), case, inputs)
        assert check.ok, (variant, check.reason)
    agree = check_output(outs["v2"], replace(inputs, reference=outs["v1"].float()))
    assert agree.ok, agree.reason


def fp8(case: Case, scale: str) -> Case:
    return replace(case, kv_dtype="fp8_e4m3", kv_scale=scale)


@pytest.mark.parametrize("variant", ["v1", "v2"])
@pytest.mark.parametrize("scale", ["per-tensor", "per-head"])
@pytest.mark.parametrize("hq, hkv", [(4, 4), (16, 2)])  # GQA 1 (15 padding rows), 8
@pytest.mark.parametrize("bs", [8, 16, 32, 64, 128])
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_paged_decode_fp8_kv(monkeypatch, dtype, d, bs, hq, hkv, scale, variant):
    monkeypatch.delenv("ATTNBENCH_CUDA_PAGED_IMPL", raising=False)  # tc, the one that reads fp8
    monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_VARIANT", variant)
    monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_PARTITION", "256")
    case = fp8(decode_case((1, 17, 129, 1000), hq, hkv, d, dtype, bs, seed=bs + d + 1), scale)
    check, _, info = run_poisoned(CudaPaged(), case)
    assert (info["variant"], info["paged_impl"]) == (variant, "tc")
    assert check.ok, check.reason


@pytest.mark.parametrize("scale", ["per-tensor", "per-head"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_paged_fp8_v1_and_v2_agree_on_a_long_context(monkeypatch, dtype, scale):
    monkeypatch.delenv("ATTNBENCH_CUDA_PAGED_IMPL", raising=False)
    v1_and_v2_agree(monkeypatch, fp8(decode_case((33, 32768, 5), 24, 4, 128, dtype, 16, seed=7), scale))


def test_paged_fp8_with_window_softcap_and_alibi(monkeypatch):
    """K's scale joins the logit scale before the soft-cap and ALiBi: the capped score is the true one's."""
    monkeypatch.delenv("ATTNBENCH_CUDA_PAGED_IMPL", raising=False)
    base = decode_case((1, 300, 2000), 16, 4, 128, "bf16", 16, seed=11)
    case = replace(fp8(base, "per-head"), window=700, softcap=5.0, alibi=True)
    for variant in ("v1", "v2"):
        monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_VARIANT", variant)
        monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_PARTITION", "256")
        check, _, _ = run_poisoned(CudaPaged(), case)
        assert check.ok, (variant, check.reason)


def test_paged_automatic_variant_is_recorded():
    _, _, info = run_poisoned(CudaPaged(), decode_case((4096,) * 2, 32, 8, 128, "bf16", 16))
    assert info["variant"] in ("v1", "v2") and "kv_layout_used" in info


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("d", [64, 128])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize(
    "q_lens, kv_lens, hq, hkv",
    [
        ((1, 17, 129, 300), (1, 17, 129, 300), 8, 2),  # varlen prefill, GQA 4
        ((5, 64, 130), (100, 64, 1000), 4, 4),  # chunks at the end of longer contexts (bottom-right causal)
        ((257,), (257,), 8, 1),  # MQA
    ],
)
def test_flash_forward(monkeypatch, q_lens, kv_lens, hq, hkv, dtype, d, causal, config):
    monkeypatch.setenv("ATTNBENCH_CUDA_FLASH_CONFIG", str(config))
    phase = "prefill" if q_lens == kv_lens else "mixed"
    case = Case(
        workload="t",
        phase=phase,
        q_lens=q_lens,
        kv_lens=kv_lens,
        num_q_heads=hq,
        num_kv_heads=hkv,
        head_dim=d,
        dtype=dtype,
        causal=causal,
        seed=len(q_lens) + d,
    )
    check, _, _ = run_poisoned(CudaFlash(), case)
    assert check.ok, check.reason
