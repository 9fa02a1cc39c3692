"""Every planted fault must come out `incorrect`; every honest kernel must pass on the same batches.

The batches mix contexts from 1 to 4096 tokens (the longest first, so a read past its table row lands
on the next sequence's blocks rather than outside the table), in bf16 and fp16 for the Triton kernels
(run through Triton's interpreter) and in bf16, fp16 and fp32 for the harness-level mutants. The GPU
script scripts/gpu_mutants_check.py runs the same mutants of the CUDA and compiled Triton kernels with
contexts up to 32768.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from attnbench.backends._triton_common import compiled_triton_loaded
from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.inputs import build_inputs
from attnbench.point import run_point
from attnbench.reference import check_output
from tests.cache_poison import poison_unused_slots
from tests.mutation import (
    FP8_KV_MUTANTS,
    HARNESS_FAULTS,
    TRITON_MUTANTS,
    V_WORDS_MUTANTS,
    load_triton_mutant,
    mutant_backend,
)

CONTEXTS = (4096, 1, 2, 17, 129, 1000)
# Chunked-prefill style rows (q_len <= kv_len): prefill rows for the short sequences, a decode row for
# the long ones, so one causal batch exercises the diagonal and the 4096-token context.
MIXED_Q = (1, 1, 2, 17, 129, 3)


def decode_case(dtype: str, block_size: int | None = 16, seed: int = 0) -> Case:
    return Case("mut", "decode", (1,) * len(CONTEXTS), CONTEXTS, 4, 2, 32, dtype, False,
                block_size=block_size, seed=seed)


def mixed_case(dtype: str, block_size: int | None = 16, seed: int = 1) -> Case:
    return Case("mut", "mixed", MIXED_Q, CONTEXTS, 4, 2, 32, dtype, True, block_size=block_size, seed=seed)


# ---- harness-level mutants (plugin backend through run_point) ---------------------------------------
POLICY = TimingPolicy(min_samples=1, max_samples=1, warmup_ms=0, min_warmup_calls=0)


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_harness_catches_every_planted_fault(dtype: str) -> None:
    cases = {"decode": decode_case(dtype), "mixed": mixed_case(dtype)}
    inputs = {k: build_inputs(c, "cpu") for k, c in cases.items()}
    for fault in HARNESS_FAULTS:
        for kind, case in cases.items():
            if fault == "causal-diagonal" and kind == "decode":
                continue  # decode rows see every key; the mixed batch carries the diagonal
            if fault == "stale-slot-read" and kind == "mixed":
                continue  # the extra slot lies past every row's diagonal: causality masks it anyway
            row = run_point(case, mutant_backend(fault), inputs[kind], POLICY, {})
            want = "ok" if fault == "none" else "incorrect"
            assert row["status"] == want, (fault, kind, dtype, row.get("reason"), row.get("rel_err_ratio"))
            if want == "incorrect":
                assert "sequence" in row["reason"] or "NaN" in row["reason"]


def test_row_names_the_worst_sequence() -> None:
    """A fault confined to the longest sequence is found there, though the batch-wide error is small."""
    case = decode_case("bf16")
    inputs = build_inputs(case, "cpu")
    out = inputs.reference.clone()
    long_rows = slice(0, 1)  # sequence 0 holds the 4096-token context
    out[long_rows] += 0.05 * out[long_rows].abs().mean() * torch.randn_like(out[long_rows])
    check = check_output(out, inputs)
    assert not check.ok and check.seq == 0
    # The old rule (one Frobenius norm over the batch, tolerance 2e-2 for bf16) would have passed it.
    assert check.batch_rel_err is not None and check.batch_rel_err < 2e-2


def test_nan_output_is_incorrect_and_located() -> None:
    case = decode_case("fp16")
    inputs = build_inputs(case, "cpu")
    out = inputs.reference.clone()
    out[3, 2, 5] = float("nan")
    check = check_output(out, inputs)
    assert not check.ok and "NaN" in check.reason and check.seq == 3 and check.head == 2


def test_tolerance_follows_the_dtype_implementation() -> None:
    """The allowed error is a small multiple of the plain in-dtype error, cell by cell, not a table."""
    from attnbench.reference import FACTOR, FLOOR

    for dtype in ("bf16", "fp16", "fp32"):
        inputs = build_inputs(decode_case(dtype, block_size=None), "cpu")
        base = inputs.error_baseline
        typical = torch.maximum(base.plain_rel, base.plain_rel.median(dim=1, keepdim=True).values)
        expected = FACTOR * torch.maximum(typical, base.round_rel) + FLOOR[dtype]
        assert torch.allclose(base.allowed, expected)
        assert bool((base.round_rel <= base.plain_rel * 1.5 + 1e-12).all())  # rounding is the lesser part
        # The length-1 sequence's output is its one V row: exact in any dtype, so only the floor allows.
        assert float(base.plain_rel[1].max()) == 0.0
        assert float(base.plain_rel[0].min()) > 0.0


# ---- Triton kernel mutants under the interpreter ------------------------------------------------------
@pytest.fixture()
def interpret(monkeypatch, request):
    if compiled_triton_loaded():
        pytest.skip("triton was imported compiled earlier in this session; "
                    "test_triton_mutants_in_fresh_process runs these tests in a new process")
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _cfg(block_q: int):
    from attnbench_kernels.triton.tuning import LaunchConfig

    # Wide key tiles keep the interpreter's per-tile cost down (the 4096-token context is 32 tiles).
    return LaunchConfig.of(4, 1, BLOCK_Q=block_q, BLOCK_M=16, BLOCK_N=128)


def run_triton_paged(mod, case: Case, splits: int) -> torch.Tensor:
    inputs = build_inputs(case, "cpu")
    p = inputs.paged
    out = torch.full_like(inputs.q, float("nan"))  # poisoned: an unwritten element fails the check
    mod.paged_attention(inputs.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens, inputs.cu_seqlens_q,
                        case.max_q, case.max_kv, causal=case.causal, sm_scale=case.softmax_scale,
                        num_splits=splits, out=out, config=_cfg(1 if case.max_q == 1 else 8))
    return check_output(out, inputs)


def run_triton_flash(mod, case: Case):
    from attnbench_kernels.triton.tuning import LaunchConfig

    inputs = build_inputs(case, "cpu")
    out = torch.full_like(inputs.q, float("nan"))
    mod.flash_attn_varlen_fwd(inputs.q, inputs.k, inputs.v, inputs.cu_seqlens_q, inputs.cu_seqlens_k,
                              case.max_q, case.causal, case.softmax_scale, out=out,
                              config=LaunchConfig.of(4, 1, BLOCK_M=32, BLOCK_N=128))
    return check_output(out, inputs)


def paged_runs(mutant: str, dtype: str) -> list[tuple[Case, int]]:
    if mutant == "causal-diagonal":
        return [(mixed_case(dtype), 1)]
    if mutant == "last-split-dropped":
        return [(decode_case(dtype), 3)]  # 3 chunks of 1408 keys: only the 4096-token row has a third
    return [(decode_case(dtype), 1)]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_triton_paged_honest_passes(interpret, dtype: str) -> None:
    from attnbench.backends._triton_common import kernels_module

    mod = kernels_module("paged_attn")
    for case, splits in [(decode_case(dtype), 1), (decode_case(dtype), 3), (mixed_case(dtype), 1)]:
        check = run_triton_paged(mod, case, splits)
        assert check.ok, (case.phase, splits, check.reason)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("mutant", sorted(TRITON_MUTANTS["paged_attn"]))
def test_triton_paged_mutant_caught(interpret, mutant: str, dtype: str) -> None:
    mod = load_triton_mutant("paged_attn", mutant)
    for case, splits in paged_runs(mutant, dtype):
        check = run_triton_paged(mod, case, splits)
        assert not check.ok, (mutant, dtype, check.ratio)


def run_triton_paged_fp8(mod, case: Case, v_words: bool = False) -> torch.Tensor:
    """The fp8 kernel on case, unowned slots holding NaN bytes, V read as bytes or (v_words) words."""
    inputs = build_inputs(case, "cpu")
    p = inputs.paged
    assert p is not None
    poison_unused_slots(p)
    out = torch.full_like(inputs.q, float("nan"))
    mod.paged_attention(inputs.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens, inputs.cu_seqlens_q,
                        case.max_q, case.max_kv, causal=case.causal, sm_scale=case.softmax_scale,
                        num_splits=1, out=out, config=_cfg(1), k_scale=inputs.k_scale, v_scale=inputs.v_scale,
                        v_words=v_words)
    return check_output(out, inputs)


def fp8_decode_case(dtype: str, block_size: int = 16) -> Case:
    """decode_case with an fp8 e4m3 cache scaled per KV head. Block size 16 reads a tile's tokens
    through the table one by one (tokens past the end read block 0); 128 reads a tile from one block,
    where the slots past the end are the poisoned tail of the last block."""
    c = decode_case(dtype, block_size=block_size, seed=2)
    return replace(c, kv_dtype="fp8_e4m3", kv_scale="per-head")


@pytest.mark.parametrize(("mutant", "v_words"), [
    (m, words) for m in (None, *sorted(FP8_KV_MUTANTS["paged_attn"])) for words in (False, True)
    if words or m not in V_WORDS_MUTANTS  # the words mutants sit in code only v_words runs
])
def test_triton_paged_fp8_mutant_caught(interpret, mutant: str | None, v_words: bool) -> None:
    from attnbench.backends._triton_common import kernels_module

    mod = kernels_module("paged_attn") if mutant is None else load_triton_mutant("paged_attn", mutant)
    checks = [run_triton_paged_fp8(mod, fp8_decode_case("bf16", bs), v_words) for bs in (16, 128)]
    if mutant is None:
        assert all(c.ok for c in checks), [c.reason for c in checks]
    else:
        assert not all(c.ok for c in checks), (mutant, [c.ratio for c in checks])


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_triton_flash_honest_passes(interpret, dtype: str) -> None:
    from attnbench.backends._triton_common import kernels_module

    mod = kernels_module("flash_fwd")
    for case in (decode_case(dtype, block_size=None), mixed_case(dtype, block_size=None)):
        check = run_triton_flash(mod, case)
        assert check.ok, (case.phase, check.reason)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("mutant", sorted(TRITON_MUTANTS["flash_fwd"]))
def test_triton_flash_mutant_caught(interpret, mutant: str, dtype: str) -> None:
    mod = load_triton_mutant("flash_fwd", mutant)
    case = mixed_case(dtype, block_size=None) if mutant == "causal-diagonal" else decode_case(dtype, None)
    check = run_triton_flash(mod, case)
    assert not check.ok, (mutant, dtype, check.ratio)


def test_triton_mutants_in_fresh_process() -> None:
    """When another test imported triton compiled first, run the Triton tests above in a new process."""
    if not compiled_triton_loaded():
        pytest.skip("this process can interpret: the tests above ran here")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "triton",
                          __file__], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_cuda_mutants_apply_to_the_sources(tmp_path: Path) -> None:
    """Each CUDA mutant's sites exist exactly once in today's sources (the GPU script plants them)."""
    from attnbench.cuda_build import cuda_src_dir
    from tests.mutation import CUDA_MUTANTS, CUDA_PATTERN_MUTANTS, write_cuda_mutant

    for unit, mutants in [*CUDA_MUTANTS.items(), *CUDA_PATTERN_MUTANTS.items()]:
        honest = (cuda_src_dir() / unit).read_text()
        for mutant in mutants:
            text = write_cuda_mutant(cuda_src_dir(), unit, mutant, tmp_path).read_text()
            assert text != honest, (unit, mutant)


def test_an_exact_output_passes() -> None:
    """A zero error (a length-1 sequence's output is its V row) is a pass, not an undefined ratio."""
    inputs = build_inputs(Case("mut", "prefill", (1,), (1,), 4, 2, 64, "bf16", True, seed=1), "cpu")
    check = check_output(inputs.reference.clone(), inputs)
    assert check.ok and check.ratio == 0.0
