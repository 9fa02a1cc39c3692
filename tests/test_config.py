from __future__ import annotations

import pytest

from attnbench.config.sweep_config import ConfigError, excluded, expand_workload, load_config, parse_config
from attnbench.paths import configs_dir

KNOWN = ["naive", "sdpa-math", "sdpa-flash", "triton-paged"]

BASE = """
name: t
workloads:
  - name: p
    phase: prefill
    batch: [2]
    lengths: ["fixed:64"]
    q_heads: [4]
    kv_heads: [4, 2]
    head_dim: [64]
    dtype: [bf16]
    causal: [true, false]
"""


def test_expands_cartesian_product():
    cfg = parse_config(BASE, "t.yaml", KNOWN)
    cases = expand_workload(cfg.workloads[0], cfg.seed)
    assert len(cases) == 4  # 2 kv_heads x 2 causal
    assert {c.num_kv_heads for c in cases} == {4, 2}
    assert all(c.q_lens == (64, 64) for c in cases)


def test_block_sizes_add_paged_variants_sharing_lengths():
    text = BASE.replace(
        "causal: [true, false]",
        "causal: [true]\n    block_size: [8, 16]\n    kv_layout: [shuffled, contiguous]",
    )
    cases = expand_workload(parse_config(text, "t.yaml").workloads[0], 0)
    paged = [c for c in cases if c.paged]
    assert len(cases) == 2 * (1 + 4)
    assert {(c.block_size, c.kv_layout) for c in paged} == {
        (8, "shuffled"),
        (8, "contiguous"),
        (16, "shuffled"),
        (16, "contiguous"),
    }
    assert all(c.without_paging() in cases for c in paged)


def test_decode_has_one_query_and_no_mask():
    text = BASE.replace("phase: prefill", "phase: decode").replace('"fixed:64"', '"uniform:5-50"')
    cases = expand_workload(parse_config(text, "t.yaml").workloads[0], 0)
    assert all(c.q_lens == (1, 1) and not c.causal for c in cases)
    assert len(cases) == 2  # causal collapses for decode


def test_mixed_phase_chunks_queries():
    text = BASE.replace("phase: prefill", "phase: mixed").replace("causal: [true, false]", "chunk: [16]")
    case = expand_workload(parse_config(text, "t.yaml").workloads[0], 0)[0]
    assert case.q_lens == (16, 16) and case.kv_lens == (64, 64)


@pytest.mark.parametrize(
    "edit, needle",
    [
        (("batch: [2]", "batch: [two]"), "workloads[p].batch: bad value 'two'"),
        (("dtype: [bf16]", "dtype: [fp8]"), "one of bf16, fp16, fp32"),
        (("phase: prefill", "phase: train"), "phase: bad value 'train'"),
        (("head_dim: [64]", "head_dim: [64]\n    colour: red"), "no key 'colour' here"),
        (("kv_heads: [4, 2]", "kv_heads: [3]"), "a divisor of every q_heads"),
        (('"fixed:64"', '"zipf:3"'), "unknown length mix 'zipf:3'"),
        (('"fixed:64"', "{dist: uniform, min: 9, max: 3}"), "larger than uniform.max"),
        (("name: t", "name: t\nbackends: [warp-drive]"), "backends: bad value 'warp-drive'"),
        (("name: t", "name: t\ntiming: {max_samples: 0}"), "timing.max_samples: bad value 0"),
    ],
)
def test_bad_input_names_file_key_value_and_allowed(edit, needle):
    text = BASE.replace(*edit)
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bad.yaml", KNOWN)
    message = str(info.value)
    assert message.startswith("bad.yaml:")
    assert needle in message
    assert "\n" not in message


def test_malformed_yaml_is_one_line():
    with pytest.raises(ConfigError) as info:
        parse_config("name: [unclosed\nworkloads: x", "m.yaml")
    assert "malformed YAML" in str(info.value) and "m.yaml" in str(info.value)


def test_exclusions_match_values_lists_and_thresholds():
    cols = {"backend": "naive", "max_q": 16384, "phase": "prefill"}
    assert excluded(({"backend": "naive", "max_q_gt": 8192},), cols)
    assert not excluded(({"backend": "naive", "max_q_gt": 20000},), cols)
    assert excluded(({"backend": ["flex", "naive"]},), cols)
    assert not excluded(({"backend": "flex"},), cols)


def test_config_hash_follows_text():
    a = parse_config(BASE, "a")
    b = parse_config(BASE + "\n# comment\n", "a")
    assert a.hash != b.hash and a.hash == parse_config(BASE, "b").hash


@pytest.mark.parametrize("name", ["smoke.yaml", "h100.yaml", "a100.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(configs_dir() / name)
    assert cfg.workloads
    for wl in cfg.workloads:
        assert expand_workload(wl, cfg.seed)
