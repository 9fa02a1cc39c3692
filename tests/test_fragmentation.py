"""The memory study: allocators, hand-checked serving traces for each policy, determinism, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attnbench.cli import app
from attnbench.memory.contiguous import BuddyAllocator, next_pow2, requested_slots
from attnbench.memory.length_dists import alpaca_lengths, expected_means, sharegpt_lengths
from attnbench.memory.serving_sim import ServingSetup, simulate
from attnbench.memory.study import load_config, run_study

ROOT = Path(__file__).resolve().parent.parent


def unit_setup(capacity: int, max_len: int) -> ServingSetup:
    """Every iteration lasts exactly 1 s, so time averages are plain averages over iterations."""
    return ServingSetup(
        kv_capacity_tokens=capacity,
        bytes_per_token=0,
        max_seq_len=max_len,
        weight_bytes=1.0,
        hbm_bytes_per_s=1.0,
        flops_per_s=1.0,
        flops_per_prompt_token=0.0,
    )


def run(policy, reqs, capacity, max_len, block_size=None):
    inputs = np.array([r[0] for r in reqs])
    outputs = np.array([r[1] for r in reqs])
    return simulate(policy, inputs, outputs, unit_setup(capacity, max_len), block_size, warmup_fraction=0.0)


def close(res, **expected):
    for key, val in expected.items():
        assert res[key] == pytest.approx(val, abs=1e-12), key


# ---- allocators --------------------------------------------------------------------------
def test_reservations_follow_the_paper():
    assert requested_slots("orca-max", 10, 25, 2048) == 2048
    assert requested_slots("orca-pow2", 10, 25, 2048) == 10 + 32  # "output 25 reserves 32"
    assert requested_slots("orca-pow2", 1500, 600, 2048) == 2048  # capped at the maximum length
    assert requested_slots("orca-oracle", 10, 25, 2048) == 35
    assert [next_pow2(n) for n in (1, 2, 3, 25, 32, 33)] == [1, 2, 4, 32, 32, 64]


def test_buddy_fits_seven_max_requests_in_the_paper_capacity():
    buddy = BuddyAllocator(15_728)  # 12 GiB / 800 KiB per token
    addrs = [buddy.alloc(2048) for _ in range(8)]
    assert None not in addrs[:7] and addrs[7] is None  # Fig. 13: Orca (Max) batches 7.00
    assert buddy.free_slots == 15_728 - 7 * 2048 and buddy.largest_free() == 1024
    for a in addrs[:7]:
        buddy.free(a)
    assert buddy.largest_free() == 8192 and buddy.free_slots == 15_728


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300), st.lists(st.tuples(st.booleans(), st.integers(1, 70)), max_size=60))
def test_buddy_blocks_never_overlap_and_merge_back(capacity, ops):
    buddy = BuddyAllocator(capacity)
    live: list[int] = []
    for is_alloc, size in ops:
        if is_alloc or not live:
            addr = buddy.alloc(size)
            if addr is not None:
                assert addr % buddy.chunk_size(size) == 0 or capacity & (
                    capacity - 1
                )  # aligned in its region
                live.append(addr)
        else:
            buddy.free(live.pop(size % len(live)))
        spans = sorted((a, a + (1 << buddy.allocated[a])) for a in live)
        assert all(e <= s for (_, e), (s, _) in zip(spans, spans[1:], strict=False)) and (
            not spans or spans[-1][1] <= capacity
        )
        assert buddy.free_slots == capacity - sum(e - s for s, e in spans)
    for a in live:
        buddy.free(a)
    assert buddy.free_slots == capacity and buddy.largest_free() == 1 << (capacity.bit_length() - 1)


# ---- hand-checked traces (worked out in the comments) ------------------------------------
def test_orca_max_trace():
    # capacity 8, max length 4: two 4-slot reservations at a time. Requests (input, output).
    # it 0: A(1,2) and B(2,1) admitted, C refused. tokens A2 B3=5, reserved A1=1, internal 1+1=2. B leaves.
    # it 1: C(1,1) admitted, D refused. tokens A3 C2=5, reserved 0, internal A1 + C2=3. A, C leave.
    # it 2: D admitted, nobody waits: the measured window ends.
    res = run("orca-max", [(1, 2), (2, 1), (1, 1), (1, 1)], capacity=8, max_len=4)
    close(
        res,
        token_states=10 / 16,
        reserved=1 / 16,
        internal=5 / 16,
        external=0,
        other=0,
        mean_batched_requests=2,
    )


def test_orca_pow2_trace():
    # capacity 16, max length 8. A(1,3) and B(1,3) each reserve 1 + 4 = 5 slots, rounded to 8 by the
    # buddy allocator (3 slots of external fragmentation each); C and D wait three iterations.
    # tokens 4, 6, 8; reserved 4, 2, 0; internal 2 each iteration; external 6 each iteration.
    res = run("orca-pow2", [(1, 3), (1, 3), (1, 3), (1, 3)], capacity=16, max_len=8)
    close(res, token_states=18 / 48, reserved=6 / 48, internal=6 / 48, external=18 / 48, other=0)


def test_orca_oracle_trace():
    # capacity 8. A(1,2) and B(2,1) reserve exactly 3 slots, rounded to 4 (1 external each).
    # it 0: tokens 2 + 3, reserved 1, internal 0, external 2; C(1,1) is refused. B leaves.
    # it 1: C and D reserve 2 each in B's freed 4 slots; nobody waits: the window ends.
    res = run("orca-oracle", [(1, 2), (2, 1), (1, 1), (1, 1)], capacity=8, max_len=4)
    close(res, token_states=5 / 8, reserved=1 / 8, internal=0, external=2 / 8, other=0)


def test_oracle_free_memory_too_small_for_the_next_request_is_other():
    res = run("orca-oracle", [(1, 3), (1, 1), (3, 1), (1, 1)], capacity=8, max_len=8)
    # it 0: A [0,4), B [4,6), C(3,1) needs 4, only [6,8) free (2 < 4): other = 2. B leaves.
    # it 1: [4,8) merges back; C admitted there; D(1,1) needs 2, nothing free.
    #       tokens A3 + C4 = 7, reserved A1, other 0. C leaves. it 2: D admitted, window ends.
    close(res, token_states=(2 + 2 + 7) / 16, reserved=(2 + 1) / 16, internal=0, external=0, other=2 / 16)


def test_paged_trace_with_preemption():
    # capacity 8 slots, block size 2 (4 blocks).
    # it 0: A(1,3) 1 block, B(3,1) 2 blocks, C(1,1) 1 block; D(3,2) refused. 8 slots of tokens. B, C leave.
    # it 1: A grows to 3 tokens (2nd block); D takes 2 blocks (4 tokens); E refused.
    #       tokens 7, reserved 1 (A's last block, filled next iteration).
    # it 2: D needs a 3rd block, none is free: D (the latest arrival) is preempted and re-queued with
    #       its generated token as prompt (4 + 1 tokens = 3 blocks, only 2 free): refused.
    #       tokens A 4, free 4 slots -> other. A leaves. it 3: D and E admitted; the window ends.
    res = run("paged", [(1, 3), (3, 1), (1, 1), (3, 2), (1, 1)], capacity=8, max_len=8, block_size=2)
    close(
        res,
        token_states=19 / 24,
        reserved=1 / 24,
        internal=0,
        external=0,
        other=4 / 24,
        mean_batched_requests=2,
    )
    assert res["preemptions"] == 1 and res["completed_requests"] == 5


def test_paged_internal_fragmentation_and_pool_remainder():
    # capacity 10 slots, block size 4: 2 blocks + 2 slots no block can use (external).
    # it 0: A(1,1) takes 1 block (2 tokens, final 2: 2 slots internal); B(5,1) needs 2 blocks, refused.
    res = run("paged", [(1, 1), (5, 1), (1, 1)], capacity=10, max_len=8, block_size=4)
    # it 1: B admitted (2 blocks), C refused: tokens 6, internal 2 (final 6 in 8 slots).
    close(
        res, token_states=(2 + 6) / 20, reserved=0, internal=(2 + 2) / 20, external=(2 + 2) / 20, other=4 / 20
    )


# ---- the study -----------------------------------------------------------------------------
SMALL = """
name: tiny
setup: {num_layers: 40, hidden_size: 5120, dtype_bytes: 2, kv_memory_gib: 12, max_seq_len: 2048,
        weights_gb: 26, hbm_gbps: 1555, peak_tflops: 312}
loads: [saturated, paper-rate]
datasets:
  sharegpt: {num_requests: 150, request_rate: 2.0}
  alpaca: {num_requests: 1200, request_rate: 30.0}
policies: [orca-max, orca-pow2, orca-oracle, paged]
paged_block_size: 16
block_sizes: [8, 16, 64]
seed: SEED
"""


def small_config(tmp_path: Path, seed: int = 0) -> Path:
    path = tmp_path / f"tiny{seed}.yaml"
    path.write_text(SMALL.replace("SEED", str(seed)))
    return path


def test_study_is_deterministic_for_a_seed(tmp_path):
    a = run_study(load_config(small_config(tmp_path, 0)))
    b = run_study(load_config(small_config(tmp_path, 0)))
    c = run_study(load_config(small_config(tmp_path, 1)))
    assert a["rows"] == b["rows"] and a["rows_by_load"] == b["rows_by_load"]
    assert a["rows"] != c["rows"]
    for row in a["rows"] + a["rows_by_load"]["paper-rate"]:
        total = sum(row[k] for k in ("token_states", "reserved", "internal", "external", "other"))
        assert total == pytest.approx(1.0, abs=1e-9)
    keys = {(r["dataset"], r["policy"], r["block_size"]) for r in a["rows"]}
    assert len(keys) == len(a["rows"]) == 2 * (3 + 3)


def test_length_samplers_match_published_means():
    rng = np.random.default_rng(0)
    for f, (mi, mo) in ((sharegpt_lengths, (161.31, 337.99)), (alpaca_lengths, (19.31, 58.45))):
        i, o = f(100_000, rng)
        assert (i >= 1).all() and (o >= 1).all() and (i + o <= 2048).all()
        assert i.mean() == pytest.approx(mi, rel=0.03) and o.mean() == pytest.approx(mo, rel=0.03)
    assert expected_means("sharegpt") == pytest.approx((161.31, 337.99), rel=1e-6)
    a = sharegpt_lengths(50, np.random.default_rng(5))
    b = sharegpt_lengths(50, np.random.default_rng(5))
    assert all((x == y).all() for x, y in zip(a, b, strict=True))


# ---- command line -----------------------------------------------------------------------------
def test_cli_writes_json_markdown_and_figures(tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["fragmentation", str(small_config(tmp_path)), "--plot", "--json", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) >= {"config_name", "setup", "rows", "notes"}
    assert {"model", "gpu", "kv_capacity_tokens", "bytes_per_token"} <= set(data["setup"])
    row = next(r for r in data["rows"] if r["dataset"] == "sharegpt" and r["policy"] == "orca-max")
    assert row["paper_token_states"] == 0.204 and row["block_size"] is None
    assert (out / "fragmentation.json").exists() and (
        out / "figures" / "fragmentation_breakdown.png"
    ).exists()
    assert (out / "figures" / "fragmentation_block_size.png").exists()
    md = (out / "fragmentation.md").read_text()
    assert "Figure 2" in md and "96.3%" in md


@pytest.mark.parametrize(
    "edit, key",
    [
        ("policies: [orca-max, buddy]", "policies"),
        ("loads: [sometimes]", "loads"),
        ("paged_block_size: 0", "paged_block_size"),
        ("colour: blue", "colour"),
    ],
)
def test_cli_bad_config_is_one_line_exit_2(tmp_path, edit, key):
    text = SMALL.replace("SEED", "0")
    field = edit.split(":")[0]
    lines = [ln for ln in text.splitlines() if not ln.startswith(field + ":")] + [edit]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines))
    res = CliRunner().invoke(app, ["fragmentation", str(path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    msg = res.stderr.strip()
    assert str(path) in msg and key in msg and "allowed" in msg and "Traceback" not in res.output


def test_gpu_script_skips_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the script would run")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_allocator_churn.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "skipped: no CUDA GPU" in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_churn_replays_on_the_caching_allocator(tmp_path):
    from attnbench.memory.gpu_churn import allocator_churn

    result = allocator_churn(load_config(small_config(tmp_path)), dataset="alpaca")
    rows = {r["policy"]: r for r in result["rows"]}
    assert set(rows) == {"orca-max", "orca-pow2", "orca-oracle", "paged (one pool)"}
    assert all(r["mean_reserved_gib"] >= r["mean_allocated_gib"] for r in rows.values())


def test_oracle_refused_by_fragmentation_counts_free_memory_as_external():
    # capacity 16, Oracle. it 0: A(3,1) [0,4), B(1,3) [4,8), C(3,1) [8,12), D(1,3) [12,16); E(1,7) needs 8
    # slots, none free: other 0. tokens 4+2+4+2=12, reserved 2+2=4. A and C leave.
    # it 1 and 2: 8 slots are free, but as [0,4) and [8,12), whose buddies are busy: no 8-slot block,
    # so E is refused by fragmentation and the 8 free slots count as external.
    # tokens 6 then 8, reserved 2 then 0. B and D leave after it 2; it 3 admits E and the window ends.
    res = run("orca-oracle", [(3, 1), (1, 3), (3, 1), (1, 3), (1, 7)], capacity=16, max_len=8)
    close(res, token_states=26 / 48, reserved=6 / 48, internal=0, external=16 / 48, other=0)
    assert res["queue_blocked_fraction"] == 1.0


def test_study_in_worker_processes_gives_the_rows_of_one_process(monkeypatch):
    """The points are independent seeded simulations: spread over processes, the same JSON."""
    import attnbench.memory.study as study

    cfg = load_config(Path(__file__).resolve().parent.parent / "configs" / "fragmentation-demo.yaml")
    one = run_study(cfg)
    monkeypatch.setattr(study, "PARALLEL_MIN_POINTS", 2)
    monkeypatch.setattr(study.os, "cpu_count", lambda: 2)
    many = run_study(cfg)
    assert json.dumps(many, sort_keys=True, default=str) == json.dumps(one, sort_keys=True, default=str)
