"""The SDPA backends' chunked-prefill path: a uniform causal case with q_len < kv_len goes through a
CausalBias (lower right), which must reach SDPA as it is (on torch 2.11 a .to() copy of it lost its
seq_len_q and the H200 study's chunked-prefill rows failed)."""

from __future__ import annotations

from attnbench.backends import get_backend
from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.reference import check_output


def test_chunked_prefill_passes_the_causal_bias_unconverted(monkeypatch):
    from torch.nn.attention.bias import CausalBias

    def broken_to(*_args, **_kwargs):  # what a copy of the bias did on torch 2.11
        raise AttributeError("'CausalBias' object has no attribute 'seq_len_q'")

    monkeypatch.setattr(CausalBias, "to", broken_to)
    case = Case("t", "mixed", (16, 16), (80, 80), 4, 4, 64, "fp32", True)
    inputs = build_inputs(case, "cpu")
    prepared = get_backend("sdpa-math").prepare(case, inputs)
    assert prepared.info["input_mode"] == "dense-causal-lower-right"
    check = check_output(prepared.to_packed(prepared.run()), inputs)
    assert check.ok, check.reason
