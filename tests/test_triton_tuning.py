"""The Triton tuner's picks: ties go to the earlier candidate, and picks persist on disk."""

from __future__ import annotations

import pytest

from attnbench.paths import kernels_dir


@pytest.fixture()
def tuning(monkeypatch, tmp_path):
    # in its package, so that its relative import of device_timer resolves; each test makes its
    # own Tuner, so no state carries between tests
    import attnbench_kernels.triton.tuning as module

    monkeypatch.setenv(module.TUNING_CACHE_ENV, str(tmp_path / "tuning.json"))
    return module


def fake_bench(monkeypatch, times):
    """The tuner's device timer replaced by a list of medians (ms), one per timed candidate."""
    import attnbench_kernels.triton.tuning as tuning_module

    calls = []

    def held_device_ms(fn):
        calls.append(fn)
        return times[len(calls) - 1]

    monkeypatch.setattr(tuning_module, "held_device_ms", held_device_ms)
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


def test_each_pick_says_where_it_came_from(tuning, monkeypatch):
    cands = [tuning.LaunchConfig.of(BLOCK_M=128), tuning.LaunchConfig.of(BLOCK_M=64)]
    calls = fake_bench(monkeypatch, [2.0, 1.0])
    t = tuning.Tuner("paged")
    assert t.pick("k", cands, lambda cfg: None, on_gpu=True) == cands[1] and t.last_origin == "timed"
    assert t.pick("k", cands, lambda cfg: None, on_gpu=True) == cands[1] and t.last_origin == "timed"
    assert len(calls) == 2  # the second answer is this process's
    fresh = tuning.Tuner("paged")  # another process: the machine's memo answers
    assert fresh.pick("k", cands, lambda cfg: None, on_gpu=True) == cands[1] and fresh.last_origin == "memo"
    assert fresh.origin == {"k": "memo"} and len(calls) == 2
    assert fresh.pick("cpu", cands, lambda cfg: None, on_gpu=False) == cands[0]
    assert fresh.last_origin == "first fit"


def test_picks_are_keyed_by_the_kernel_sources_not_the_tuner(tuning, tmp_path):
    for name in ("flash_fwd.py", "tuning.py"):
        (tmp_path / name).write_text(f"# {name}\n")
    before = tuning.kernel_sources_digest(tmp_path)
    (tmp_path / "tuning.py").write_text("# the tuner's docstring edited\n")
    assert tuning.kernel_sources_digest(tmp_path) == before
    (tmp_path / "flash_fwd.py").write_text("# a kernel edited\n")
    assert tuning.kernel_sources_digest(tmp_path) != before


def test_kernels_do_not_import_attnbench():
    for path in (kernels_dir()).rglob("*.py"):
        text = path.read_text()
        assert "import attnbench" not in text and "from attnbench" not in text, path


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
def test_the_tuners_timer_reads_device_time_not_the_host_launch():
    """A call that spends 300 us on the host before queueing a ~20 us kernel: held, it reads the
    kernel (do_bench's back-to-back events would read the host's 300 us)."""
    import time

    import torch
    from attnbench_kernels.triton import device_timer

    cycles = int(20 * device_timer._spin_cycles_per_us(torch.cuda.current_device()))

    def slow_host_call() -> None:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 300e-6:
            pass
        torch.cuda._sleep(cycles)

    ms = device_timer.held_device_ms(slow_host_call)
    assert 0.015 < ms < 0.06, ms


def test_precompile_builds_every_candidate_and_leaves_errors_to_the_timing(tuning, monkeypatch):
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 4)
    cands = [tuning.LaunchConfig.of(BLOCK_M=m) for m in (128, 64, 32)]
    built = []

    def warm(cfg):
        built.append(cfg)
        if cfg["BLOCK_M"] == 64:
            raise RuntimeError("does not fit")  # reported by the timing loop, not here

    assert tuning.precompile(cands, warm) == 3
    assert built == cands


def test_precompile_off_or_single_candidate_builds_nothing(tuning, monkeypatch):
    cands = [tuning.LaunchConfig.of(BLOCK_M=m) for m in (128, 64)]
    built = []
    monkeypatch.setenv(tuning.PARALLEL_COMPILE_ENV, "0")
    assert tuning.precompile(cands, built.append) == 0
    monkeypatch.delenv(tuning.PARALLEL_COMPILE_ENV)
    assert tuning.precompile(cands[:1], built.append) == 0
    assert built == []


def test_pick_precompiles_then_times_each_candidate(tuning, monkeypatch):
    calls = fake_bench(monkeypatch, [2.0, 1.0])
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 2)
    cands = [tuning.LaunchConfig.of(BLOCK_M=m) for m in (128, 64)]
    order = []
    t = tuning.Tuner("t")
    best = t.pick("k", cands, lambda c: order.append(("launch", c["BLOCK_M"])), True,
                  warm=lambda c: order.append(("warm", c["BLOCK_M"])))
    assert best == cands[1] and len(calls) == 2
    assert order[:2] == [("warm", 128), ("warm", 64)]  # both built before the first is timed
