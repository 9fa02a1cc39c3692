"""cpu-paged with sliding window, logit soft-capping and ALiBi, judged per (sequence, head) as a sweep judges.

attnbench.reference.check_output decides, as in a sweep: every (sequence, query head) within a small
factor of a plain PyTorch implementation's error in the case's dtype. The reference itself is checked
here against tests/pattern_oracle.py, a float64 implementation written separately from the Case
docstring's definitions.

Batches mix contexts shorter and far longer than the window (so some rows see their whole context,
others only the window), over every block size the backend claims, decode, prefill and chunked
prefill, GQA and MHA. Outputs are NaN-poisoned; a kernel built with an off-by-one at the window edge,
and calls with a wrong window or no soft-cap, must fail the same check.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from attnbench import cpu_build
from attnbench.backends import get_backend
from attnbench.backends.cpu_paged import BLOCK_SIZES, alibi_slopes, query_tile
from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.reference import check_output
from tests.pattern_oracle import pattern_attention, worst_cell_error

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ with OpenMP")

# reference vs oracle, per-(sequence, head) relative L2: both float64 from the same inputs, the reference
# then kept in float32 (its rounding is ~6e-8)
AGREE = 1e-6
MIXED_KV = (1, 3, 40, 17, 300)  # short and long contexts together


def run_kernel(case: Case, inputs, lib=None, threads: int = 2, **override) -> torch.Tensor:
    """The kernel's output for the case (NaN-poisoned buffer); `override` replaces pattern arguments."""
    paged = inputs.paged
    lib = lib or cpu_build.load()
    tile = query_tile(case)
    out = torch.full_like(inputs.q, float("nan"))
    per_thread = lib.paged_scratch_floats(case.num_q_heads, case.num_kv_heads, case.head_dim, case.block_size,
                                          tile)
    scratch = torch.empty(threads * per_thread)
    tables = paged.block_tables.to(torch.int32).contiguous()
    kv_lens = paged.kv_lens.to(torch.int32).contiguous()
    cu_q = inputs.cu_seqlens_q.to(torch.int32).contiguous()
    slopes = torch.tensor(alibi_slopes(case.num_q_heads), dtype=torch.float32)
    pattern = dict(window=case.window, softcap=case.softcap,
                   alibi_slopes=slopes.data_ptr() if case.alibi else 0)
    pattern.update(override)
    lib.paged_attention(
        out=out.data_ptr(), q=inputs.q.data_ptr(), k_cache=paged.k_cache.data_ptr(),
        v_cache=paged.v_cache.data_ptr(), block_tables=tables.data_ptr(), kv_lens=kv_lens.data_ptr(),
        cu_seqlens_q=cu_q.data_ptr(), batch=case.batch, num_q_heads=case.num_q_heads,
        num_kv_heads=case.num_kv_heads, head_dim=case.head_dim, num_blocks=paged.k_cache.shape[0],
        block_size=case.block_size, table_stride=tables.shape[1], dtype=cpu_build.DTYPE_CODES[case.dtype],
        causal=case.causal, scale=case.softmax_scale, query_tile=tile, num_threads=threads,
        scratch=scratch.data_ptr(), scratch_floats=scratch.numel(), **pattern,
    )
    return out


def oracle(case: Case, inputs) -> torch.Tensor:
    cu_q, cu_k = inputs.cu_seqlens_q.tolist(), inputs.cu_seqlens_k.tolist()
    return pattern_attention(case, inputs.q, inputs.k, inputs.v, cu_q, cu_k, alibi_slopes(case.num_q_heads))


def is_wrong(case: Case, out: torch.Tensor, inputs) -> bool:
    return not check_output(out, inputs).ok


def assert_close(case: Case, out: torch.Tensor, inputs) -> None:
    check = check_output(out, inputs)
    assert check.ok, f"{case.pattern} bs={case.block_size}: {check.reason}"


def make_case(phase: str, *, window=None, softcap=None, alibi=False, block_size=16, dtype="fp32",
              hq=8, hkv=2, causal=True, d=64) -> Case:
    kv = MIXED_KV
    q = {"decode": (1,) * len(kv), "prefill": kv, "mixed": tuple(min(k, 7) for k in kv)}[phase]
    return Case("t", phase, q, kv, hq, hkv, d, dtype, causal, block_size=block_size, window=window,
                softcap=softcap, alibi=alibi)


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_decode_window_and_softcap_every_block_size(block_size):
    # window 24: shorter than some contexts (300, 40), longer than others (1, 3, 17)
    case = make_case("decode", window=24, softcap=1.0, block_size=block_size)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)


@pytest.mark.parametrize("window", [0, 1, 5, 63, 64, 299, 5000])
@pytest.mark.parametrize("phase", ["decode", "prefill", "mixed"])
def test_windows_smaller_and_larger_than_the_context(phase, window):
    case = make_case(phase, window=window, block_size=8)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)


@pytest.mark.parametrize("softcap", [50.0, 1.0, 0.25])
@pytest.mark.parametrize("phase", ["decode", "prefill"])
def test_softcap_values(phase, softcap):
    case = make_case(phase, softcap=softcap, block_size=32)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)


@pytest.mark.parametrize("heads", [(8, 8), (8, 2), (6, 3), (4, 1)])
@pytest.mark.parametrize("phase", ["decode", "mixed"])
def test_alibi_with_window_and_softcap_gqa(phase, heads):
    # 6 heads: ALiBi's rule for a head count that is not a power of two
    case = make_case(phase, window=20, softcap=2.0, alibi=True, hq=heads[0], hkv=heads[1], block_size=4)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_window_softcap(dtype):
    case = make_case("prefill", window=33, softcap=5.0, dtype=dtype, block_size=16)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)


def test_non_causal_window_is_left_sided():
    case = make_case("mixed", window=10, causal=False, block_size=16)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)


def test_wrong_pattern_arguments_are_caught():
    """The check can fail: the same kernel with a window one too wide, or without its soft-cap."""
    case = make_case("prefill", window=12, softcap=0.5, block_size=8)
    inputs = build_inputs(case, "cpu")
    assert_close(case, run_kernel(case, inputs), inputs)
    assert is_wrong(case, run_kernel(case, inputs, window=13), inputs)
    assert is_wrong(case, run_kernel(case, inputs, softcap=None), inputs)
    assert is_wrong(case, run_kernel(case, inputs, window=None), inputs)


def test_planted_window_edge_fault_is_caught(tmp_path: Path):
    """A library built with the window edge off by one key fails on windowed cases."""
    src = cpu_build.cpu_src_dir() / "paged_attention.cpp"
    text = src.read_text()
    good = "pos(r) > g.window ? pos(r) - g.window : 0"
    assert text.count(good) == 1, "the mutation site moved: update this test"
    bad = "pos(r) > g.window ? pos(r) - g.window + 1 : 0"
    (tmp_path / "paged_attention.cpp").write_text(text.replace(good, bad))
    for header in cpu_build.cpu_src_dir().glob("*.h"):  # every header the source includes
        (tmp_path / header.name).write_bytes(header.read_bytes())
    lib_path = tmp_path / "libmutant.so"
    subprocess.run([cpu_build.find_cxx(), *cpu_build.FLAGS, "-shared", str(tmp_path / "paged_attention.cpp"),
                    "-o", str(lib_path)], check=True)
    mutant = cpu_build.CpuLib(lib_path)
    case = make_case("decode", window=24, block_size=16)
    inputs = build_inputs(case, "cpu")
    assert is_wrong(case, run_kernel(case, inputs, lib=mutant), inputs)


def test_bad_softcap_is_refused_with_the_reason():
    case = make_case("decode", block_size=16)
    inputs = build_inputs(case, "cpu")
    with pytest.raises(cpu_build.KernelError, match="softcap"):
        run_kernel(case, inputs, softcap=-1.0)


def test_backend_declares_and_runs_patterns():
    backend = get_backend("cpu-paged")
    assert {"window", "softcap", "alibi"} <= backend.patterns
    case = make_case("mixed", window=16, softcap=3.0, alibi=True, block_size=8)
    assert backend.supports(case) == (True, "")
    inputs = build_inputs(case, "cpu")
    prepared = backend.prepare(case, inputs)
    assert prepared.info["pattern"] == case.pattern
    assert_close(case, prepared.run(), inputs)


def test_alibi_slopes_standard_series():
    assert alibi_slopes(8) == [2.0 ** -(h + 1) for h in range(8)]
    six = alibi_slopes(6)  # the 4-head series, then heads 0 and 2 of the 8-head one
    assert six == [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_blocks_outside_the_window_are_never_read(dtype):
    """Blocks wholly before every query's window hold NaN in the pool: a kernel that read them would
    return NaN (NaN * 0 is NaN), so a correct output shows the walk starts at the window's first block."""
    case = make_case("decode", window=24, softcap=1.0, block_size=8, dtype=dtype)
    inputs = build_inputs(case, "cpu")
    paged = inputs.paged
    poisoned = 0
    for s, kv_len in enumerate(case.kv_lens):
        first_visible = max(0, kv_len - 1 - case.window)
        for b in range(first_visible // case.block_size):
            block = int(paged.block_tables[s, b])
            paged.k_cache[block] = float("nan")
            paged.v_cache[block] = float("nan")
            poisoned += 1
    assert poisoned > 0
    assert_close(case, run_kernel(case, inputs), inputs)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("phase", ["decode", "prefill", "mixed"])
def test_the_reference_agrees_with_an_independent_oracle(phase, dtype):
    """The rule above is only as good as attnbench.reference: on every pattern at once, its output
    matches the separately written float64 oracle in every (sequence, head)."""
    case = make_case(phase, window=20, softcap=2.0, alibi=True, hq=6, hkv=3, block_size=8, dtype=dtype)
    inputs = build_inputs(case, "cpu")
    err, seq, head = worst_cell_error(inputs.reference, oracle(case, inputs), inputs.cu_seqlens_q.tolist())
    assert err <= AGREE, f"sequence {seq} head {head}: reference vs oracle {err:.3g}"
