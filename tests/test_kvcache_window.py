"""A windowed KV cache frees the blocks that fall out of the window; the memory study's window variant."""

from __future__ import annotations

import pytest

from attnbench.kvcache import DROPPED_BLOCK, KVCacheManager
from attnbench.memory.window import replay, window_study


def test_free_out_of_window_releases_only_dead_blocks():
    mgr = KVCacheManager(10, 4, enable_prefix_caching=False)
    mgr.add_request("a", num_tokens=20)  # blocks 0..4 hold tokens 0..19
    table = mgr.block_table("a")
    # the latest query (position 19) sees keys >= 13: blocks 0, 1, 2 (tokens 0..11) are dead
    freed = mgr.free_out_of_window("a", 6)
    assert freed == table[:3] and mgr.num_free_blocks == 10 - 2
    assert mgr.block_table("a") == [DROPPED_BLOCK] * 3 + table[3:]
    assert mgr.free_out_of_window("a", 6) == []  # nothing new fell out
    mgr.append_tokens("a", 1)  # 21 tokens: keys >= 14 still start in block 3
    assert mgr.free_out_of_window("a", 6) == []
    mgr.append_tokens("a", 3)  # 24 tokens: keys >= 17 start in block 4; block 3 is dead
    assert mgr.free_out_of_window("a", 6) == [table[3]]
    mgr.append_tokens("a", 1)  # a new block at the boundary: tokens 24.. need logical block 6
    assert len(mgr.block_table("a")) == 7
    mgr.check_invariants()
    mgr.free("a")
    assert mgr.num_free_blocks == 10
    mgr.check_invariants()
    with pytest.raises(ValueError):
        mgr.free_out_of_window("x", -1)


def test_window_study_by_hand():
    # full: ceil(150/16) + ceil(90/16) = 10 + 6 blocks at the end
    full = replay([100, 40], [50, 50], 16, None)
    assert full["peak_blocks"] == 16
    # windowed (32): a request holds keys n-33 .. n-1, at most 3 blocks of 16
    study = window_study([100, 40], [50, 50], 16, 32)
    assert study["full"]["peak_blocks"] == 16
    assert study["windowed"]["peak_blocks"] <= 6
    assert study["peak_saved"] >= 1 - 6 / 16
    assert study["requests_per_pool"]["windowed"] >= 2 * 16 / 6 - 1e-9


def test_window_larger_than_every_context_frees_nothing():
    full = replay([30, 10], [5, 5], 16, None)
    assert replay([30, 10], [5, 5], 16, 1000)["peak_blocks"] == full["peak_blocks"]


# ---- the memory study's window key, JSON section and rendering ----------------------------------
import json  # noqa: E402
from pathlib import Path  # noqa: E402

from attnbench.memory import study as frag  # noqa: E402
from attnbench.memory.window import study_section  # noqa: E402
from attnbench.memory.window_render import markdown_lines, plot_window  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "configs" / "fragmentation-demo.yaml"


def _with(tmp_path: Path, line: str) -> Path:
    text = "\n".join(x for x in DEMO.read_text().splitlines() if not x.startswith("window:"))
    path = tmp_path / "study.yaml"
    path.write_text(text + "\n" + line + "\n")
    return path


@pytest.mark.parametrize("bad", ["window: 0", "window: -5", "window: 1.5", "window: true", "window: big"])
def test_study_window_key_rejects_bad_values_in_one_line(tmp_path, bad):
    with pytest.raises(frag.ConfigError) as err:
        frag.load_config(_with(tmp_path, bad))
    msg = str(err.value)
    assert "window:" in msg and "allowed: an integer >= 1" in msg and "\n" not in msg


def test_study_window_key_accepted_and_optional(tmp_path):
    assert frag.load_config(_with(tmp_path, "window: 4096")).window == 4096
    assert frag.load_config(_with(tmp_path, "window: null")).window is None
    assert frag.load_config(_with(tmp_path, "")).window is None


def test_study_section_by_hand():
    # the hand case above: full peak 16 blocks for 2 requests (8 per request), windowed at most 6 (3);
    # a pool of 64 tokens / 16 = 4 blocks
    sec = study_section({"toy": ([100, 40], [50, 50])}, 16, 32, kv_capacity_tokens=64, bytes_per_token=10)
    d = sec["datasets"]["toy"]
    assert sec["pool_blocks"] == 4 and d["longest_request_tokens"] == 150
    assert d["peak_blocks_per_request"]["full"] == 8.0
    assert d["peak_blocks_per_request"]["windowed"] <= 3.0
    assert d["requests_per_pool"]["full"] == 4 * 2 / 16
    # own peaks: ceil(150/16) = 10 and ceil(90/16) = 6 blocks full; windowed a request holds the block of
    # its newest token and those reaching 32 back: at most 3 (e.g. 48 tokens: keys 15..47, blocks 0..2)
    assert d["own_peak_blocks_per_request"] == {"full": 8.0, "windowed": 3.0}
    saved = d["full"]["peak_blocks"] - d["windowed"]["peak_blocks"]
    assert saved >= 10 and d["peak_bytes_saved_per_request"] == saved / 2 * 16 * 10


def _result(window: dict | None) -> dict:
    return {"window": window, "setup": {"model": "OPT-13B"}, "rows": [], "notes": [],
            "config_name": "t"}


def test_markdown_and_report_notes_with_and_without_window(tmp_path):
    from attnbench.report.fragmentation_window import window_notes

    sec = study_section({"short": ([10, 12], [5, 5]), "long": ([300, 200], [40, 60])}, 16, 64,
                        kv_capacity_tokens=16 * 100, bytes_per_token=2)
    lines = "\n".join(markdown_lines(sec))
    assert "## Sliding window 64 tokens" in lines and "| long | 2 |" in lines
    assert "No request of short is longer than the window" in lines
    long = sec["datasets"]["long"]
    assert long["peak_saved"] > 0.5  # 500 and 300 tokens into a 64-token window
    note = window_notes({"window": json.loads(json.dumps(sec))})[0]
    assert "Sliding window 64 tokens" in note and "long:" in note and "requests per pool" in note
    assert markdown_lines(None) == [] and window_notes({"rows": []}) == []
    assert window_notes({"window": None}) == []
    plot_window(_result(sec), tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 1000


def test_run_study_writes_the_window_section_only_when_asked(tmp_path):
    from attnbench.memory import render

    base = "\n".join(x for x in DEMO.read_text().splitlines() if not x.startswith(("window:", "block_sizes")))
    text = "\n".join(x for x in base.splitlines() if not x.startswith("policies:")) + "\npolicies: [paged]"
    path = tmp_path / "s.yaml"
    path.write_text(text + "\nwindow: 128\n")
    windowed = frag.run_study(frag.load_config(path))
    sec = json.loads(json.dumps(windowed))["window"]
    assert sec["window"] == 128 and set(sec["datasets"]) == set(windowed["setup"]["datasets"])
    assert "## Sliding window 128 tokens" in render.render_markdown(windowed)
    path.write_text(text + "\n")
    full = frag.run_study(frag.load_config(path))
    assert full["window"] is None and "Sliding window" not in render.render_markdown(full)


def test_sweep_fragmentation_key_rejects_a_bad_window_before_any_point(tmp_path):
    from attnbench.config.sweep_config import ConfigError, parse_config
    from attnbench.memory.in_sweep import resolve_study

    _with(tmp_path, "window: 0")  # tmp_path/study.yaml
    workload = ("workloads:\n  - name: w\n    phase: prefill\n    lengths: ['fixed:8']\n    q_heads: [2]\n"
                "    kv_heads: [2]\n    head_dim: [16]\n    dtype: [fp32]\n")
    sweep = parse_config(f"name: x\nfragmentation: study.yaml\n{workload}", str(tmp_path / "sweep.yaml"))
    with pytest.raises(ConfigError, match=r"fragmentation: .*window: 0; allowed: an integer >= 1"):
        resolve_study(sweep)
    _with(tmp_path, "window: 4096")
    assert resolve_study(sweep) == tmp_path / "study.yaml"


def test_report_memory_section_with_and_without_window():
    import pandas as pd

    from attnbench.report import fragmentation as report_frag
    from attnbench.report.load import RunData

    row = {"dataset": "sharegpt", "policy": "paged", "block_size": 16, "token_states": 0.9, "reserved": 0.0,
           "internal": 0.05, "external": 0.05, "other": 0.0, "mean_batched_requests": 30.0}
    sec = study_section({"sharegpt": ([300, 200], [40, 60])}, 16, 64, kv_capacity_tokens=1600,
                        bytes_per_token=2)

    def notes(window: dict | None) -> list[str]:
        study = {"config_name": "t", "rows": [row], "notes": [], "window": window}
        run = RunData(Path("r"), {}, pd.DataFrame(), fragmentation=study, fragmentation_source="f.json")
        table = report_frag.build(run)
        assert table.rows  # the full-cache rows are there either way
        return [n for n in table.notes if "Sliding window" in n]

    assert notes(None) == []
    (note,) = notes(json.loads(json.dumps(sec)))
    own = sec["datasets"]["sharegpt"]["own_peak_blocks_per_request"]
    assert own["full"] == (22 + 17) / 2  # ceil(340/16), ceil(260/16)
    # windowed: the newest token's block and the ones reaching 64 keys back, at most 5 (80 tokens: keys
    # 15..79 in blocks 0..4), and both requests pass through such a length
    assert own["windowed"] == 5.0
    assert "Sliding window 64 tokens" in note and "pool 100 blocks" in note
    assert "19.5 -> 5.00 blocks per request at its own peak" in note
