"""Split a sweep's plan into N shards that any scheduler can run: `attnbench sweep CONFIG --shard K/N`.

The partition is a pure function of the plan's cases and backends, the timing policy and N: every
machine that plans the same config with the same attnbench computes the same shards, so shards
1..N cover every planned point exactly once, whatever each machine finds installed.

Unit of assignment: an input group, i.e. a contiguous-KV case and its paged variants, which share
inputs and reference (the worker builds them once). Groups are balanced by an estimated cost with
greedy longest-processing-time: groups by decreasing cost (ties by case_id), each to the shard with
the least estimated load so far (ties to the lowest index). Inside a shard the plan order is kept.

The cost is an estimate in seconds from the FLOP/byte model (attnbench.metrics) at nominal
ceilings, not a measurement: it only has to rank points roughly. It counts the points a machine
with every backend installed would measure (those the plan runs, and those skipped as unavailable
that the backend supports), because which backends are available differs between machines while
the partition must not. Backends' supports() depends on the case alone, so this is the same
everywhere; points skipped as unsupported cost nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from typing import Any

from attnbench import metrics
from attnbench.backends.base import Backend
from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.runner.plan import Plan, PlannedCase


class ShardError(ValueError):
    """A --shard value that cannot be used; str() is the one-line message."""


@dataclass(frozen=True)
class Nominal:
    """Round ceilings for the cost estimate (assumptions for ranking points, not measured numbers)."""

    copy_gbps: float  # HBM / host memory bandwidth, 1e9 B/s
    matmul_tflops: float  # kernel FLOP rate, 1e12 FLOP/s
    reference_tflops: float  # the float32 reference the worker computes per case
    launch_s: float  # floor of one call
    flush_s: float  # L2 flush before each sample (GPU)
    point_overhead_s: float  # prepare, correctness call, memory probe, row hand-off
    case_overhead_s: float  # building a case's inputs


NOMINAL = {
    "cuda": Nominal(copy_gbps=3000.0, matmul_tflops=600.0, reference_tflops=50.0, launch_s=10e-6,
                    flush_s=30e-6, point_overhead_s=0.5, case_overhead_s=0.5),
    "cpu": Nominal(copy_gbps=10.0, matmul_tflops=0.05, reference_tflops=0.05, launch_s=20e-6,
                   flush_s=0.0, point_overhead_s=0.05, case_overhead_s=0.05),
}
ROUND = 10  # samples per round of attnbench.measure (sampling stops only between rounds)


def parse_spec(spec: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N (shards are numbered from 1)."""
    parts = spec.strip().split("/")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        k, n = int(parts[0]), int(parts[1])
        if n >= 1 and 1 <= k <= n:
            return k, n
    raise ShardError(f"--shard {spec!r}: expected K/N with whole numbers 1 <= K <= N (shards count from 1), "
                     "e.g. 2/4")


# ---- cost --------------------------------------------------------------------------------------


def kernel_s(case: Case, family: str, nominal: Nominal) -> float:
    """One call's estimated time: the roofline floor at nominal ceilings, plus a launch floor.

    A naive backend also writes and reads the full score and probability matrices in float32:
    about 4 passes over Hq * sum(q_len * kv_len) elements of 4 bytes.
    """
    nbytes = metrics.min_hbm_bytes(case)
    if family == "naive":
        scores = sum(q * k for q, k in zip(case.q_lens, case.kv_lens, strict=True))
        nbytes += 4 * 4 * case.num_q_heads * scores
    t_bytes = nbytes / (nominal.copy_gbps * 1e9)
    t_flops = metrics.flops(case) / (nominal.matmul_tflops * 1e12)
    return max(t_bytes, t_flops) + nominal.launch_s


def point_s(case: Case, family: str, policy: TimingPolicy, nominal: Nominal) -> float:
    """A point's estimated wall time under the timing policy (see attnbench.measure).

    Warm-up: at least warmup_ms and min_warmup_calls calls. Sampling: assumed to stop at the first
    check past min_samples (whole rounds), never much past max_time_s.
    """
    t = kernel_s(case, family, nominal)
    t_sample = t + (nominal.flush_s if policy.l2_flush else 0.0)
    warm = max(policy.warmup_ms * 1e-3, policy.min_warmup_calls * t)
    n = math.ceil(policy.min_samples / ROUND) * ROUND if policy.min_samples >= ROUND else policy.min_samples
    sampling = min(max(n, 1) * t_sample, policy.max_time_s + ROUND * t_sample)
    return nominal.point_overhead_s + 2 * t + warm + sampling


def case_s(case: Case, nominal: Nominal) -> float:
    """Building the case's inputs and its float32 reference."""
    return nominal.case_overhead_s + metrics.flops(case) / (nominal.reference_tflops * 1e12)


def planned_cost(pc: PlannedCase, backends: dict[str, Backend], policy: TimingPolicy,
                 nominal: Nominal) -> float:
    """Estimated seconds of a planned case as if every backend were installed (see module doc)."""
    names = set(pc.run)
    for name, reason in pc.skip.items():
        b = backends.get(name)
        if b is not None and reason.startswith("unavailable") and b.supports(pc.case)[0]:
            names.add(name)
    if not names:
        return 0.0
    # summed in name order: the same floating-point result on every machine
    points = sum(point_s(pc.case, backends[n].family, policy, nominal) for n in sorted(names))
    return case_s(pc.case, nominal) + points


# ---- partition ---------------------------------------------------------------------------------


@dataclass
class Group:
    key: str  # case_id of the contiguous-KV case the group's cases share inputs with
    indices: list[int]  # positions in plan.cases
    cost_s: float


def groups_of(plan: Plan, policy: TimingPolicy, device: str) -> list[Group]:
    """The plan's input groups with their estimated costs, in plan order."""
    from attnbench.backends import all_backends

    every = all_backends()
    backends = {n: every[n] for n in plan.backends if n in every}
    nominal = NOMINAL["cpu" if device == "cpu" else "cuda"]
    by_key: dict[str, Group] = {}
    for i, pc in enumerate(plan.cases):
        key = pc.case.without_paging().case_id
        g = by_key.setdefault(key, Group(key, [], 0.0))
        g.indices.append(i)
        g.cost_s += planned_cost(pc, backends, policy, nominal)
    return list(by_key.values())


def assign(groups: list[Group], n: int) -> list[int]:
    """Greedy LPT: the shard index (0-based) of each group, deterministic for equal inputs."""
    loads = [0.0] * n
    out = [0] * len(groups)
    order = sorted(range(len(groups)), key=lambda i: (-groups[i].cost_s, groups[i].key))
    for i in order:
        target = min(range(n), key=lambda s: (loads[s], s))
        out[i] = target
        loads[target] += groups[i].cost_s
    return out


@dataclass
class Sharding:
    index: int  # K, from 1
    count: int  # N
    plan: Plan  # the shard's part of the plan
    loads_s: list[float]  # estimated seconds of every shard, 1..N
    partition: str  # digest of the whole assignment: equal on every machine that cut the same shards
    plan_points: int  # points of the whole plan
    plan_cases: int

    @property
    def spec(self) -> str:
        return f"{self.index}/{self.count}"

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "shard": self.spec,
            "shard_plan": {
                "index": self.index,
                "count": self.count,
                "partition": self.partition,
                "plan_points": self.plan_points,
                "plan_cases": self.plan_cases,
                "shard_points": self.plan.n_points,
                "shard_cases": len(self.plan.cases),
                "est_seconds": [round(x, 3) for x in self.loads_s],
            },
        }


def shard_plan(plan: Plan, policy: TimingPolicy, device: str, index: int, count: int) -> Sharding:
    """Shard `index` (1..count) of the plan."""
    if not 1 <= index <= count:
        raise ShardError(f"shard {index}/{count}: K must be between 1 and N")
    groups = groups_of(plan, policy, device)
    owner = assign(groups, count)
    loads = [0.0] * count
    mine: set[int] = set()
    for g, s in zip(groups, owner, strict=True):
        loads[s] += g.cost_s
        if s == index - 1:
            mine.update(g.indices)
    layout = [[*(plan.cases[i].case.case_id for i in g.indices), s]
              for g, s in zip(groups, owner, strict=True)]
    digest = hashlib.sha256(json.dumps([count, layout]).encode()).hexdigest()[:16]
    part = replace(plan, cases=[pc for i, pc in enumerate(plan.cases) if i in mine])
    return Sharding(index, count, part, loads, digest, plan.n_points, len(plan.cases))


def check_resume(manifest: dict[str, Any], spec: str | None) -> str | None:
    """Why --resume of this run with this --shard is wrong, or None."""
    had = manifest.get("shard")
    if had != spec:
        return (f"the run in {manifest.get('run_id')!r} was shard {had or 'none (the whole plan)'}, "
                f"not {spec or 'the whole plan'}; resume it with the same --shard")
    return None
