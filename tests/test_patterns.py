"""Attention patterns (sliding window, soft-cap, ALiBi): slopes, counts, FLOP/byte models, every
pattern-capable backend against the reference per (sequence, head), loop bounds that skip tiles left of
the window, the skip reasons, planted pattern faults, and the config / CLI axes."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace

import pytest
import torch

from attnbench import metrics, patterns
from attnbench.backends import get_backend
from attnbench.backends._triton_common import compiled_triton_loaded
from attnbench.case import Case
from attnbench.inputs import build_inputs
from attnbench.reference import check_output

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::RuntimeWarning")


# ---- slopes and counts ---------------------------------------------------------------------------
def test_alibi_slopes_power_of_two_and_interleaved():
    assert patterns.alibi_slopes(8) == [2.0**-k for k in range(1, 9)]
    # 12 heads: the 8 slopes of 8 heads, then the odd terms of 16 heads' series 2^-0.5, 2^-1.5, ...
    assert patterns.alibi_slopes(12) == [2.0**-k for k in range(1, 9)] + [2.0**-0.5, 2.0**-1.5,
                                                                         2.0**-2.5, 2.0**-3.5]
    assert patterns.alibi_slopes(1) == [2.0**-8]
    with pytest.raises(ValueError):
        patterns.alibi_slopes(0)


def test_attended_pairs_by_hand():
    assert patterns.attended_pairs(1, 10, False, 3) == 4  # decode: the query at 9 sees keys 6..9
    assert patterns.attended_pairs(5, 5, True, 1) == 1 + 2 + 2 + 2 + 2
    assert patterns.attended_pairs(3, 10, False, 2) == 5 + 4 + 3  # p = 7, 8, 9 see keys p-2 .. 9
    assert patterns.attended_pairs(4, 4, True, None) == 10


def test_attended_pairs_match_the_mask():
    for nq, nk, causal, window in itertools.product((1, 3, 7), (7, 12), (True, False), (None, 0, 2, 5, 30)):
        if nq > nk:
            continue
        mask = patterns.visible(nq, nk, causal, window, "cpu")
        assert patterns.attended_pairs(nq, nk, causal, window) == int(mask.sum()), (nq, nk, causal, window)
        cols = mask.any(0).nonzero().flatten()
        first, last = patterns.reachable_keys(nq, nk, causal, window)
        assert (first, last) == (int(cols.min()), int(cols.max()))


def test_flop_and_byte_models_count_only_the_window():
    case = Case("t", "decode", (1, 1), (8192, 100), 4, 2, 64, "bf16", False, window=4096, block_size=16)
    pairs = 4097 + 100  # the long query sees keys 4095..8191; the short one all 100
    assert metrics.flops(case) == 4 * 64 * 4 * pairs
    q_bytes = 2 * 4 * 64 * 2
    kv_bytes = 2 * pairs * 2 * 64 * 2  # K and V, 2 KV heads, only reachable keys
    blocks = (8191 // 16 - 4095 // 16 + 1) + 7  # 257 blocks hold keys 4095..8191, 7 hold 100 keys
    assert blocks == 264
    assert metrics.min_hbm_bytes(case) == 2 * q_bytes + kv_bytes + 4 * blocks + 4 * 2
    full = replace(case, window=None)
    assert metrics.flops(full) == 4 * 64 * 4 * (8192 + 100)
    assert patterns.reachable_blocks(1, 8192, False, None, 16) == 512


# ---- backends against the reference ----------------------------------------------------------------
CASES = {
    "prefill-varlen-gqa-window": Case("t", "prefill", (9, 70), (9, 70), 4, 2, 32, "bf16", True, window=20),
    "prefill-full-window-alibi": Case("t", "prefill", (40, 23), (40, 23), 4, 4, 32, "fp16", False,
                                      window=11, alibi=True),
    "mixed-softcap-alibi": Case("t", "mixed", (17, 30), (60, 90), 4, 1, 32, "bf16", True, softcap=3.0,
                                alibi=True),
    "mixed-all-three": Case("t", "mixed", (5, 30), (60, 90), 6, 2, 32, "bf16", True, window=13, softcap=2.0,
                            alibi=True),
    "decode-varlen-window-softcap": Case("t", "decode", (1, 1, 1), (3, 300, 77), 4, 2, 32, "bf16", False,
                                         window=33, softcap=2.0),
    "decode-alibi": Case("t", "decode", (1, 1), (200, 31), 12, 4, 32, "fp16", False, alibi=True),
}
PAGED_BLOCKS = {"triton-paged": (16, 12), "flex-paged": (16,), "naive": (16,)}
CONTIGUOUS = ("naive", "sdpa-math", "triton-flash", "flex")


@pytest.fixture()
def interpret(monkeypatch):
    if compiled_triton_loaded():
        pytest.skip("triton was imported compiled earlier in this session")
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def _backend(name: str):
    b = type(get_backend(name))()  # an instance of our own: the registry's is shared by other tests
    if name.startswith("flex"):
        b.compile = False  # eager FlexAttention on a CPU (the GPU script runs the compiled one)
    return b


def _check(name: str, case: Case):
    b = _backend(name)
    ok, why = b.supports(case)
    assert ok, why
    inputs = build_inputs(case, "cpu")
    prepared = b.prepare(case, inputs)
    return check_output(prepared.to_packed(prepared.run()), inputs), prepared


def _points():
    for label, case in CASES.items():
        for name in CONTIGUOUS:
            yield name, label, case
        for name, sizes in PAGED_BLOCKS.items():
            for bs in sizes:
                yield name, f"{label}-bs{bs}", replace(case, block_size=bs)


@pytest.mark.parametrize("name,label,case", list(_points()), ids=lambda x: x if isinstance(x, str) else "")
def test_backend_matches_reference_per_sequence(interpret, name, label, case):
    b = _backend(name)
    if name == "sdpa-math" and case.softcap is not None:
        assert b.supports(case) == (False, "no softcap pattern in this backend")
        return
    check, _ = _check(name, case)
    assert check.ok, (name, label, check.reason)


def test_fused_sdpa_kernels_skip_patterns():
    case = CASES["prefill-varlen-gqa-window"]
    for name in ("sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-flash-cpu"):
        assert get_backend(name).supports(case) == (False, "no window pattern in this backend")
    both = replace(case, softcap=5.0, alibi=True)
    why = "no window/softcap/alibi pattern in this backend"
    assert get_backend("sdpa-flash").supports(both) == (False, why)


def test_triton_split_kv_respects_the_window(interpret):
    from attnbench.backends._triton_common import kernels_module

    mod = kernels_module("paged_attn")
    case = Case("t", "decode", (1, 1, 1), (700, 300, 77), 4, 2, 32, "bf16", False, window=150, softcap=4.0,
                block_size=16)
    inputs = build_inputs(case, "cpu")
    p = inputs.paged
    assert mod.window_span(700, 1, 150) == 150 + 1 + 128
    out, _, splits = mod.paged_attention(inputs.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens,
                                         inputs.cu_seqlens_q, case.max_q, case.max_kv, False,
                                         case.softmax_scale, num_splits=3, window=150, softcap=4.0)
    assert splits == 3
    check = check_output(out, inputs)
    assert check.ok, check.reason


def _poison_left_of_window(t: torch.Tensor, rows: list[int]) -> None:
    t[rows] = float("nan")


def test_triton_flash_never_loads_tiles_left_of_the_window(interpret):
    """NaN planted in every K/V row of the tiles wholly left of each row's window: a kernel that loads
    them (even masked) multiplies NaN into its output; loop bounds that start at the window do not."""
    case = Case("t", "decode", (1, 1), (300, 200), 4, 2, 32, "bf16", False, window=40)
    inputs = build_inputs(case, "cpu")
    prepared = _backend("triton-flash").prepare(case, inputs)
    # 16-key tiles on the interpreter: window starts 259 and 159 -> tiles from 256 and 144 are read.
    rows = list(range(0, 256)) + [300 + j for j in range(0, 144)]
    _poison_left_of_window(inputs.k, rows)
    _poison_left_of_window(inputs.v, rows)
    check = check_output(prepared.to_packed(prepared.run()), inputs)
    assert check.ok, check.reason


def test_triton_paged_never_loads_blocks_left_of_the_window(interpret):
    case = Case("t", "decode", (1, 1), (300, 200), 4, 2, 32, "bf16", False, window=40, block_size=16)
    inputs = build_inputs(case, "cpu")
    prepared = _backend("triton-paged").prepare(case, inputs)
    p = inputs.paged
    for seq, first_read in ((0, 256 // 16), (1, 144 // 16)):
        dead = p.block_tables[seq, :first_read].long()
        p.k_cache[dead] = float("nan")
        p.v_cache[dead] = float("nan")
    check = check_output(prepared.to_packed(prepared.run()), inputs)
    assert check.ok, check.reason


def test_flex_paged_block_lists_start_at_the_window():
    from attnbench.backends.flex_paged import page_table_to_blocks

    table = torch.arange(20, dtype=torch.int32).reshape(1, 20)
    blocks = page_table_to_blocks((1,), (300,), table, 20, 16, False, 1, q_block=128, full_blocks=False,
                                  window=40)
    # The query at 299 sees keys 259..299: pages 16..18, nothing before.
    n = int(blocks.kv_num_blocks[0, 0, 0])
    assert blocks.kv_indices[0, 0, 0, :n].tolist() == [16, 17, 18]
    assert int(blocks.full_kv_num_blocks[0, 0, 0]) == 0


def test_flex_decode_block_lists_start_at_the_window():
    from attnbench.backends.flex import sequence_kv_blocks

    cu = torch.tensor([0, 300, 500])
    count, idx = sequence_kv_blocks(cu, 500, 128, first_key=torch.tensor([259, 0]))
    assert count.tolist() == [1, 2]  # keys 259..299 in block 2; keys 300..499 in blocks 2, 3
    assert idx[0, :1].tolist() == [2] and idx[1, :2].tolist() == [2, 3]


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="inductor's CPU FlexAttention needs a C++ compiler")
def test_compiled_flex_builds_a_kernel_per_window_size():
    """torch.compile'd flex-paged (inductor's CPU template) honours window + soft-cap, and a second window
    size compiles anew (the window is a constant of the traced mask_mod): new_kernel says so."""
    backend = type(get_backend("flex-paged"))()
    seen = []
    for window in (32, 48):
        case = Case("t", "decode", (1, 1), (300, 77), 4, 2, 32, "bf16", False, window=window, softcap=3.0,
                    block_size=16)
        inputs = build_inputs(case, "cpu")
        prepared = backend.prepare(case, inputs)
        check = check_output(prepared.to_packed(prepared.run()), inputs)
        assert check.ok, check.reason
        seen.append(prepared.info.get("new_kernel"))
    assert seen == [True, True]


# ---- planted pattern faults -----------------------------------------------------------------------
MUTANT_CASES = {
    "window-off-by-one": Case("t", "mixed", (20, 9), (60, 90), 4, 2, 32, "bf16", True, window=13),
    "window-tile-skipped": Case("t", "mixed", (20, 9), (60, 90), 4, 2, 32, "bf16", True, window=37),
    "softcap-ignored": Case("t", "mixed", (20, 9), (60, 90), 4, 2, 32, "bf16", True, softcap=1.0),
    "alibi-slope-halved": Case("t", "mixed", (20, 9), (60, 90), 4, 2, 32, "bf16", True, alibi=True),
}


def _pattern_mutants() -> list[tuple[str, str]]:
    from tests.mutation import PATTERN_MUTANTS

    return [(module, m) for module, muts in PATTERN_MUTANTS.items() for m in sorted(muts)]


@pytest.mark.parametrize("module,mutant", _pattern_mutants())
def test_pattern_mutants_are_caught(interpret, module, mutant):
    from tests.mutation import load_triton_mutant

    mod = load_triton_mutant(module, mutant)
    if mutant == "split-ignores-window":
        case = Case("t", "decode", (1, 1), (900, 77), 4, 2, 32, "bf16", False, window=150, block_size=16)
    else:
        case = MUTANT_CASES[mutant]
        case = replace(case, block_size=16) if module == "paged_attn" else case
    inputs = build_inputs(case, "cpu")
    slopes = patterns.slopes_tensor(case.num_q_heads, "cpu") if case.alibi else None
    kw = dict(window=case.window, softcap=case.softcap, alibi_slopes=slopes)
    if module == "flash_fwd":
        out = mod.flash_attn_varlen_fwd(inputs.q, inputs.k, inputs.v, inputs.cu_seqlens_q,
                                        inputs.cu_seqlens_k, case.max_q, case.causal, case.softmax_scale,
                                        **kw)[0]
    else:
        p = inputs.paged
        splits = 3 if mutant == "split-ignores-window" else 1
        out = mod.paged_attention(inputs.q, p.k_cache, p.v_cache, p.block_tables, p.kv_lens,
                                  inputs.cu_seqlens_q, case.max_q, case.max_kv, case.causal,
                                  case.softmax_scale, num_splits=splits, **kw)[0]
    assert not check_output(out, inputs).ok, (module, mutant)


# ---- config and CLI --------------------------------------------------------------------------------
def _workload(extra: str) -> str:
    return ("name: t\nworkloads:\n  - name: w\n    phase: decode\n    lengths: ['fixed:64']\n"
            "    q_heads: [4]\n    kv_heads: [2]\n    head_dim: [32]\n" + extra)


def test_config_pattern_axes_expand():
    from attnbench.config.sweep_config import expand_workload, parse_config, workload_size

    axes = "    window: [none, 16]\n    softcap: [null, 30]\n    alibi: [false, true]\n"
    cfg = parse_config(_workload(axes))
    wl = cfg.workloads[0]
    cases = expand_workload(wl, 0)
    assert len(cases) == workload_size(wl) == 8
    assert {c.pattern for c in cases} == {"none", "alibi", "softcap30", "softcap30+alibi", "window16",
                                         "window16+alibi", "window16+softcap30", "window16+softcap30+alibi"}
    assert all(c.pattern in c.case_id or c.pattern == "none" for c in cases)
    plain = expand_workload(parse_config(_workload("")).workloads[0], 0)
    assert [c.pattern for c in plain] == ["none"]


@pytest.mark.parametrize("extra,needle", [
    ("    window: [-1]\n", "window: bad value -1; expected a token count >= 0 or none"),
    ("    window: [1.5]\n", "window: bad value 1.5"),
    ("    softcap: [0]\n", "softcap: bad value 0; expected a number > 0 or none"),
    ("    softcap: ['big']\n", "softcap: bad value 'big'"),
    ("    alibi: [maybe]\n", "alibi: bad value 'maybe'"),
])
def test_config_pattern_errors_name_key_and_rule(extra, needle):
    from attnbench.config.sweep_config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=None) as err:
        parse_config(_workload(extra))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_schema_lists_the_pattern_axes():
    from attnbench.config.schema import schema

    props = schema()["properties"]["workloads"]["items"]["properties"]
    assert {"window", "softcap", "alibi"} <= set(props)


def test_run_flags_make_a_patterned_case_and_reject_bad_values():
    from attnbench.case_flags import FlagError, case_from_flags

    case = case_from_flags("decode", "1", "300", 4, 2, 32, "bf16", True, None, "shuffled", 0, window=64,
                           softcap=50.0, alibi=True)
    assert (case.window, case.softcap, case.alibi) == (64, 50.0, True)
    assert case.pattern == "window64+softcap50+alibi"
    with pytest.raises(FlagError, match="--window -2"):
        case_from_flags("decode", "1", "300", 4, 2, 32, "bf16", True, None, "shuffled", 0, window=-2)
    with pytest.raises(FlagError, match="--softcap"):
        case_from_flags("decode", "1", "300", 4, 2, 32, "bf16", True, None, "shuffled", 0,
                        softcap=float("nan"))


def test_cli_bad_window_exits_2():
    from typer.testing import CliRunner

    from attnbench.cli import app

    res = CliRunner().invoke(app, ["run", "--device", "cpu", "--window", "-5", "--no-isolate"])
    assert res.exit_code == 2, res.output
    assert "--window -5" in res.output


def test_cli_window_row_carries_the_pattern(interpret, tmp_path):
    from typer.testing import CliRunner

    from attnbench.cli import app

    out = tmp_path / "rows.jsonl"
    res = CliRunner().invoke(app, ["run", "--device", "cpu", "--no-isolate", "--backend", "naive",
                                   "--backend", "sdpa-math", "--phase", "decode", "--seqlen", "1,1",
                                   "--kv-len", "90,40", "--q-heads", "4", "--kv-heads", "2", "--head-dim",
                                   "32", "--window", "16", "--softcap", "5", "--out", str(out)])
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by = {r["backend"]: r for r in rows}
    assert by["naive"]["status"] == "ok" and by["naive"]["pattern"] == "window16+softcap5"
    assert by["naive"]["window"] == 16 and by["naive"]["softcap"] == 5.0
    assert by["sdpa-math"]["status"] == "skipped" and "softcap" in by["sdpa-math"]["reason"]
    assert res.exit_code in (0, 1)



def test_interpreted_pattern_tests_in_fresh_process():
    """When another test imported triton compiled first, run this module's Triton tests in a new process."""
    import subprocess
    import sys
    from pathlib import Path

    if not compiled_triton_loaded():
        pytest.skip("this process can interpret: the tests above ran here")
    import os

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__], cwd=root,
                         env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
