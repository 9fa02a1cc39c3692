"""--shard K/N: shards are disjoint, complete, balanced by estimated cost and the same on every machine."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attnbench.backends import all_backends
from attnbench.cli import app
from attnbench.config.sweep_config import load_config, parse_config
from attnbench.paths import configs_dir
from attnbench.runner.plan import Plan, build_plan
from attnbench.runner.shard import ShardError, assign, groups_of, parse_spec, shard_plan

SYNTHETIC = [
    # many small prefill cases of different sizes, two dtypes
    """
name: syn-prefill
workloads:
  - name: p
    phase: prefill
    batch: [1, 2, 8]
    lengths: ["fixed:64", "fixed:512", "uniform:10-3000"]
    q_heads: [8, 16]
    kv_heads: [8, 2]
    head_dim: [64, 128]
    dtype: [bf16, fp32]
    causal: [true, false]
""",
    # decode with several block sizes and layouts: groups of one contiguous case and its paged variants
    """
name: syn-decode
workloads:
  - name: d
    phase: decode
    batch: [4, 64]
    lengths: ["fixed:4096", "uniform:1-20000"]
    q_heads: [32]
    kv_heads: [8]
    head_dim: [128]
    dtype: [bf16]
    block_size: [8, 16, 32]
    kv_layout: [shuffled, contiguous]
  - name: m
    phase: mixed
    batch: [2]
    lengths: ["fixed:1000"]
    chunk: [64, 256]
    q_heads: [8]
    kv_heads: [8]
    head_dim: [64]
    dtype: [fp16]
    block_size: [16]
""",
    # one huge case among tiny ones: balance cannot beat the largest group
    """
name: syn-skewed
workloads:
  - name: big
    phase: prefill
    batch: [16]
    lengths: ["fixed:16384"]
    q_heads: [64]
    kv_heads: [64]
    head_dim: [128]
    dtype: [bf16]
  - name: small
    phase: decode
    batch: [1, 2, 3, 4, 5, 6]
    lengths: ["fixed:128"]
    q_heads: [4]
    kv_heads: [4]
    head_dim: [64]
    dtype: [bf16]
""",
]


def configs():
    out = [(load_config(configs_dir() / f"{n}.yaml"), "cuda" if n != "smoke" else "cpu")
           for n in ("smoke", "h100", "ci-gate", "a100")]
    out += [(parse_config(text, f"syn{i}.yaml"), "cuda") for i, text in enumerate(SYNTHETIC)]
    return out


def keys(plan: Plan) -> list[tuple[str, str]]:
    return [(pc.case.case_id, b) for pc in plan.cases for b in [*pc.run, *pc.skip]]


def test_spec_parsing():
    assert parse_spec("1/1") == (1, 1)
    assert parse_spec(" 3/4 ") == (3, 4)
    for bad in ("0/4", "5/4", "1/0", "a/b", "3", "1/2/3", "-1/2", ""):
        with pytest.raises(ShardError, match="K/N"):
            parse_spec(bad)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 64])
def test_shards_are_disjoint_and_cover_every_planned_point(n):
    for cfg, cost_device in configs():
        plan = build_plan(cfg, "cpu")  # planning needs no GPU: unavailable backends are skipped points
        everything = keys(plan)
        assert len(everything) == len(set(everything)) == plan.n_points > 0
        policy = cfg.timing_policy(cost_device)
        seen: list[tuple[str, str]] = []
        digests = set()
        for k in range(1, n + 1):
            s = shard_plan(plan, policy, cost_device, k, n)
            seen += keys(s.plan)
            digests.add(s.partition)
            assert s.plan_points == plan.n_points and s.spec == f"{k}/{n}"
        assert len(seen) == len(set(seen)), f"{cfg.name} N={n}: a point is in two shards"
        assert set(seen) == set(everything), f"{cfg.name} N={n}: a point is in no shard"
        assert len(digests) == 1  # every shard reports the same partition


def test_a_case_and_its_paged_variants_stay_in_one_shard_in_plan_order():
    cfg = parse_config(SYNTHETIC[1], "syn.yaml")
    plan = build_plan(cfg, "cpu")
    n = 3
    owner: dict[str, int] = {}
    for k in range(1, n + 1):
        part = shard_plan(plan, cfg.timing_policy("cuda"), "cuda", k, n).plan
        positions = [plan.cases.index(pc) for pc in part.cases]
        assert positions == sorted(positions)  # the plan's order is kept inside a shard
        for pc in part.cases:
            group = pc.case.without_paging().case_id
            assert owner.setdefault(group, k) == k, "a paged variant left its contiguous case's shard"
    assert any(pc.case.paged for pc in plan.cases)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_balance_by_estimated_cost(n):
    for cfg, cost_device in configs():
        plan = build_plan(cfg, "cpu")
        policy = cfg.timing_policy(cost_device)
        groups = groups_of(plan, policy, cost_device)
        loads = shard_plan(plan, policy, cost_device, 1, n).loads_s
        total = sum(g.cost_s for g in groups)
        assert sum(loads) == pytest.approx(total)
        biggest = max(g.cost_s for g in groups)
        # greedy LPT: no shard exceeds the mean by more than one group
        assert max(loads) <= total / n + biggest + 1e-9, (cfg.name, loads)
    # on the real study, within 25% of the mean
    cfg = load_config(configs_dir() / "h100.yaml")
    loads = shard_plan(build_plan(cfg, "cpu"), cfg.timing_policy("cuda"), "cuda", 1, n).loads_s
    assert max(loads) <= 1.25 * sum(loads) / n, loads


def test_cost_model_ranks_big_cases_above_small_ones():
    cfg = parse_config(SYNTHETIC[2], "syn.yaml")
    plan = build_plan(cfg, "cpu")
    groups = groups_of(plan, cfg.timing_policy("cuda"), "cuda")
    big = [g.cost_s for g in groups if g.key.startswith("big/")]
    small = [g.cost_s for g in groups if g.key.startswith("small/")]
    assert len(big) == 1 and min(big) > max(small)
    # the huge case gets a shard of its own
    parts = [shard_plan(plan, cfg.timing_policy("cuda"), "cuda", k, 3).plan for k in (1, 2, 3)]
    alone = [p for p in parts if any(pc.case.workload == "big" for pc in p.cases)]
    assert len(alone) == 1 and {pc.case.workload for pc in alone[0].cases} == {"big"}


def test_ties_are_broken_by_case_id_not_by_input_order():
    from attnbench.runner.shard import Group

    groups = [Group(f"g{i}", [i], 1.0) for i in range(7)]
    owners = dict(zip([g.key for g in groups], assign(groups, 3), strict=True))
    shuffled = list(reversed(groups))
    owners2 = dict(zip([g.key for g in shuffled], assign(shuffled, 3), strict=True))
    assert owners == owners2
    assert sorted(owners.values()) == [0, 0, 0, 1, 1, 2, 2]


def test_same_partition_whatever_this_machine_has_installed(monkeypatch):
    """Machine A has no GPU backends, machine B has them all: both cut the same shards."""
    cfg = load_config(configs_dir() / "h100.yaml")
    policy = cfg.timing_policy("cuda")
    plan_a = build_plan(cfg, "cpu")
    for backend in all_backends().values():
        monkeypatch.setattr(type(backend), "available", lambda self, device: (True, ""))
    plan_b = build_plan(cfg, "cuda")
    assert plan_b.n_run > plan_a.n_run  # B would measure more points
    for k in range(1, 5):
        a = shard_plan(plan_a, policy, "cuda", k, 4)
        b = shard_plan(plan_b, policy, "cuda", k, 4)
        assert set(keys(a.plan)) == set(keys(b.plan))
        assert a.partition == b.partition
        assert a.loads_s == pytest.approx(b.loads_s)


# ---- the CLI -------------------------------------------------------------------------------------

runner = CliRunner()
TINY = """
name: tiny
timing: {max_time_s: 0.02, min_samples: 3, max_samples: 5, warmup_ms: 1}
workloads:
  - name: p
    phase: prefill
    batch: [1, 2]
    lengths: ["fixed:16", "fixed:32"]
    q_heads: [2]
    kv_heads: [1]
    head_dim: [16]
    dtype: [fp32]
"""


def test_cli_dry_run_shows_the_shard_and_bad_specs_exit_2(tmp_path):
    smoke = str(configs_dir() / "smoke.yaml")
    result = runner.invoke(app, ["sweep", smoke, "--device", "cpu", "--shard", "2/3", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "shard 2/3:" in result.output and "estimated seconds per shard" in result.output
    result = runner.invoke(app, ["sweep", smoke, "--device", "cpu", "--shard", "4/3", "--dry-run"])
    assert result.exit_code == 2 and "--shard '4/3'" in result.output and "Traceback" not in result.output


def test_cli_shard_run_records_its_shard_and_resume_checks_it(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY)
    out = tmp_path / "s2"
    args = ["sweep", str(cfg), "--device", "cpu", "--backends", "naive", "--no-isolate", "--out", str(out)]
    result = runner.invoke(app, [*args, "--shard", "2/2"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shard"] == "2/2"
    assert manifest["shard_plan"]["index"] == 2 and manifest["shard_plan"]["count"] == 2
    assert manifest["shard_plan"]["plan_points"] == 4
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == manifest["planned_points"] == manifest["shard_plan"]["shard_points"] > 0
    # resuming with another shard (or none) is refused; with the same shard it is fine
    for other in (["--shard", "1/2"], []):
        result = runner.invoke(app, [*args, "--resume", *other])
        assert result.exit_code == 2 and "same --shard" in result.output, result.output
    result = runner.invoke(app, [*args, "--resume", "--shard", "2/2"])
    assert result.exit_code == 0, result.output
    assert len((out / "results.jsonl").read_text().splitlines()) == len(rows)
