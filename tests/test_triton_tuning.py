"""The Triton tuner's picks: ties go to the earlier candidate, and picks persist on disk."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from attnbench.paths import kernels_dir


@pytest.fixture()
def tuning(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "_tuning_under_test", kernels_dir() / "triton" / "tuning.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    monkeypatch.setenv(module.TUNING_CACHE_ENV, str(tmp_path / "tuning.json"))
    return module


def fake_bench(monkeypatch, times):
    import triton.testing

    calls = []

    def do_bench(fn, warmup, rep, return_mode):
        calls.append(fn)
        return times[len(calls) - 1]

    monkeypatch.setattr(triton.testing, "do_bench", do_bench)
    return calls


def test_earliest_candidate_within_margin_wins(tuning):
    a, b, c = (tuning.LaunchConfig.of(BLOCK_M=m) for m in (128, 64, 32))
    assert tuning.stable_choice([(a, 1.02), (b, 1.00), (c, 1.5)]) is a  # 2% slower: a tie, keep a
    assert tuning.stable_choice([(a, 1.10), (b, 1.00), (c, 1.5)]) is b  # 10% slower: b wins


def test_picks_persist_across_tuners(tuning, monkeypatch):
    cands = [
        tuning.LaunchConfig.of(num_warps=8, BLOCK_M=128),
        tuning.LaunchConfig.of(num_warps=4, BLOCK_M=64),
    ]
    calls = fake_bench(monkeypatch, [2.0, 1.0])
    first = tuning.Tuner("flash").pick(("d128",), cands, lambda cfg: None, on_gpu=True)
    assert first == cands[1] and len(calls) == 2
    # A new process (a fresh Tuner) reuses the stored pick without timing anything.
    again = tuning.Tuner("flash").pick(("d128",), cands, lambda cfg: None, on_gpu=True)
    assert again == cands[1] and len(calls) == 2
    # Another key is tuned afresh.
    fake_bench(monkeypatch, [1.0, 1.0])
    assert tuning.Tuner("flash").pick(("d64",), cands, lambda cfg: None, on_gpu=True) == cands[0]


def test_cache_off_and_stale_entries(tuning, monkeypatch):
    cands = [tuning.LaunchConfig.of(BLOCK_M=128), tuning.LaunchConfig.of(BLOCK_M=64)]
    fake_bench(monkeypatch, [2.0, 1.0])
    tuning.Tuner("paged").pick("k", cands, lambda cfg: None, on_gpu=True)
    # A stored pick that is no longer a candidate is ignored (retuned).
    calls = fake_bench(monkeypatch, [1.0])
    assert tuning.Tuner("paged").pick("k", cands[:1], lambda cfg: None, on_gpu=True) == cands[0]
    assert len(calls) == 1
    monkeypatch.setenv(tuning.TUNING_CACHE_ENV, "off")
    calls = fake_bench(monkeypatch, [3.0, 1.0])
    tuning.Tuner("paged").pick("k", cands, lambda cfg: None, on_gpu=True)
    assert len(calls) == 2


def test_kernels_do_not_import_attnbench():
    for path in (kernels_dir()).rglob("*.py"):
        text = path.read_text()
        assert "import attnbench" not in text and "from attnbench" not in text, path
