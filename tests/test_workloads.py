from __future__ import annotations

import numpy as np
import pytest

from attnbench.workloads import MixError, draw_lengths, parse_mix


def test_string_and_mapping_forms_agree():
    assert parse_mix("uniform:10-20") == parse_mix({"dist": "uniform", "min": 10, "max": 20})
    assert parse_mix(512) == parse_mix("fixed:512")


@pytest.mark.parametrize(
    "spec",
    [
        "fixed:100",
        "uniform:1-1000",
        "lognormal:800:0.9:4096",
        "bimodal:64-2048:0.3",
        {"dist": "list", "lens": [1, 17, 129, 1000]},
        "sharegpt",
        "alpaca:1024",
    ],
)
def test_seeded_and_in_range(spec):
    mix = parse_mix(spec)
    a = draw_lengths(mix, 64, seed=3, phase="prefill")
    assert a == draw_lengths(mix, 64, seed=3, phase="prefill")
    assert len(a) == 64 and all(n >= 1 for n in a)
    if mix.dist not in ("fixed", "list"):
        assert a != draw_lengths(mix, 64, seed=4, phase="prefill")


def test_uniform_bounds_and_lognormal_cap():
    lens = draw_lengths(parse_mix("uniform:5-9"), 500, 0, "prefill")
    assert min(lens) >= 5 and max(lens) <= 9 and len(set(lens)) == 5
    lens = draw_lengths(parse_mix("lognormal:1000:1.5:3000"), 2000, 0, "prefill")
    assert max(lens) <= 3000


def test_lognormal_mean_is_the_mean():
    lens = draw_lengths(parse_mix("lognormal:500:0.5:100000"), 20000, 1, "prefill")
    assert abs(np.mean(lens) - 500) / 500 < 0.03


def test_bimodal_share():
    lens = draw_lengths(parse_mix("bimodal:10-1000:0.25"), 4000, 0, "prefill")
    assert set(lens) == {10, 1000}
    assert abs(lens.count(1000) / 4000 - 0.25) < 0.03


def test_dataset_presets_differ_in_scale():
    sharegpt = draw_lengths(parse_mix("sharegpt"), 2000, 0, "prefill")
    alpaca = draw_lengths(parse_mix("alpaca"), 2000, 0, "prefill")
    assert np.mean(sharegpt) > 3 * np.mean(alpaca)
    decode = draw_lengths(parse_mix("sharegpt"), 2000, 0, "decode")
    assert np.mean(decode) > np.mean(sharegpt)  # contexts include generated tokens


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("gauss:1", "unknown length mix"),
        ({"dist": "uniform", "min": 3}, "needs max"),
        ({"dist": "fixed", "len": 0}, ">= 1"),
        ({"dist": "bimodal", "short": 1, "long": 2, "p_long": 2.0}, "within [0, 1]"),
        ({"dist": "fixed", "len": 4, "colour": 1}, "unknown key 'colour'"),
    ],
)
def test_bad_specs(spec, needle):
    with pytest.raises(MixError, match=None) as info:
        parse_mix(spec)
    assert needle in str(info.value)
