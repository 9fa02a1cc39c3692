"""sdpa-flash-cpu (aten::_scaled_dot_product_flash_attention_for_cpu) against the float64 reference, per
sequence, in every input mode it uses: dense, dense causal, bottom-right causal mask, padded mask."""

from __future__ import annotations

import pytest
import torch

from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.measure import measure_memory

TOL = {"fp32": 1e-5, "bf16": 1.5e-2, "fp16": 2e-3}
CASES = {
    "dense": Case("t", "prefill", (64, 64), (64, 64), 4, 4, 64, "fp32", False),
    "dense-causal": Case("t", "prefill", (96,), (96,), 4, 2, 64, "fp32", True),
    "dense-causal-lower-right-mask": Case("t", "mixed", (32, 32), (160, 160), 4, 1, 64, "fp32", True),
    "padded-masked": Case("t", "prefill", (1, 50, 130), (1, 50, 130), 8, 2, 64, "fp32", True),
}


def check(case: Case) -> dict:
    backend = get_backend("sdpa-flash-cpu")
    assert backend.available("cpu") == (True, "")
    assert backend.supports(case) == (True, "")
    inputs = build_inputs(case, "cpu")
    prepared = backend.prepare(case, inputs)
    out = prepared.to_packed(prepared.run())
    for i, (rows, _) in enumerate(inputs.seq_slices()):
        ref = inputs.reference[rows]
        err = (torch.linalg.vector_norm(out[rows].float() - ref) / torch.linalg.vector_norm(ref)).item()
        assert err <= TOL[case.dtype], f"sequence {i}: relative error {err:.3g}"
    return prepared.info


@pytest.mark.parametrize("mode", sorted(CASES))
def test_every_input_mode_per_sequence(mode):
    assert check(CASES[mode])["input_mode"] == mode


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_decode_mixed_contexts_gqa_half_precision(dtype):
    case = Case("t", "decode", (1,) * 4, (1, 7, 300, 33), 8, 2, 128, dtype, False)
    assert check(case)["input_mode"] == "padded-masked"


def test_working_memory_is_measured_and_far_below_the_scores():
    n = 512
    case = Case("t", "prefill", (n,), (n,), 4, 4, 64, "fp32", True)
    inputs = build_inputs(case, "cpu")
    flash = get_backend("sdpa-flash-cpu").prepare(case, inputs)
    naive = get_backend("naive").prepare(case, inputs)
    _, flash_mem = measure_memory(flash.run, torch.device("cpu"))
    _, naive_mem = measure_memory(naive.run, torch.device("cpu"))
    scores = 4 * n * n * 4  # heads x N x N float32
    assert naive_mem["working_mem_bytes"] >= scores
    assert 0 < flash_mem["working_mem_bytes"] < scores / 4
