"""cuda-paged and cuda-flash against the harness reference, on a GPU (skipped without one).

Inputs come from attnbench.inputs.build_inputs (the harness's own path: random data, shuffled block
tables from the KV-cache manager, float32 reference). Every output is poisoned with NaN and recomputed,
so an element the kernel forgot to write fails. scripts/gpu_cuda_check.py covers a wider matrix (float64
reference, junk in block tails, context 32768) and times the kernels.
"""

from __future__ import annotations

import pytest
import torch

from attnbench.backends.cuda_flash import CONFIGS, CudaFlash
from attnbench.backends.cuda_paged import CudaPaged
from attnbench.case import Case
from attnbench.inputs import build_inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TOL = {"bf16": 1.5e-2, "fp16": 3e-3}  # relative L2 error


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(out).all(), "output has NaN/inf (an element was never written)"
    return ((out.float() - ref).norm() / ref.norm()).item()


def run_poisoned(backend, case: Case) -> tuple[float, torch.Tensor, dict]:
    inputs = build_inputs(case, "cuda")
    prep = backend.prepare(case, inputs)
    prep.run().fill_(float("nan"))
    out = prep.to_packed(prep.run())
    torch.cuda.synchronize()
    return rel_err(out, inputs.reference), out, prep.info


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
    err, _, info = run_poisoned(
        CudaPaged(), decode_case((1, 17, 129, 1000), hq, hkv, d, dtype, bs, seed=bs + d)
    )
    assert info["variant"] == variant
    assert err < TOL[dtype]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_paged_v1_and_v2_agree_on_a_long_context(monkeypatch, dtype):
    case = decode_case((33, 32768), 24, 4, 128, dtype, 16, seed=5)  # group 6: padded head slots
    outs = {}
    for variant in ("v1", "v2"):
        monkeypatch.setenv("ATTNBENCH_CUDA_PAGED_VARIANT", variant)
        err, outs[variant], _ = run_poisoned(CudaPaged(), case)
        assert err < TOL[dtype]
    assert rel_err(outs["v2"], outs["v1"].float()) < TOL[dtype] / 4


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
    err, _, _ = run_poisoned(CudaFlash(), case)
    assert err < TOL[dtype]
