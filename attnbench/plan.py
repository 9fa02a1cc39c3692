"""The plan of a sweep: which (case, backend) points run, which are skipped and why.

Planning needs no GPU work: availability and support are asked of each backend, exclusions are
applied, and each case's points are kept together so its inputs and reference are built once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attnbench.backends import all_backends
from attnbench.backends.base import Backend
from attnbench.case import Case
from attnbench.config import SweepConfig, excluded, expand_workload, validate_exclusions


@dataclass
class PlannedCase:
    case: Case
    run: list[str] = field(default_factory=list)  # backends to measure
    skip: dict[str, str] = field(default_factory=dict)  # backend -> reason


@dataclass
class Plan:
    cases: list[PlannedCase]
    backends: list[str]
    unavailable: dict[str, str]
    excluded_points: int = 0

    @property
    def n_run(self) -> int:
        return sum(len(pc.run) for pc in self.cases)

    @property
    def n_skip(self) -> int:
        return sum(len(pc.skip) for pc in self.cases)

    @property
    def n_points(self) -> int:
        return self.n_run + self.n_skip


def select_backends(cfg: SweepConfig | None, override: list[str] | None) -> dict[str, Backend]:
    """The backends a sweep considers: --backends, else the config's list, else all registered."""
    every = all_backends()
    names = override or (list(cfg.backends) if cfg and cfg.backends else list(every))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise KeyError(f"unknown backend {unknown[0]!r}; known: {', '.join(every)}")
    return {n: every[n] for n in names}


def build_plan(cfg: SweepConfig, device: str, override_backends: list[str] | None = None) -> Plan:
    backends = select_backends(cfg, override_backends)
    unavailable = {}
    for name, b in backends.items():
        ok, why = b.available(device)
        if not ok:
            unavailable[name] = why
    sample = Case("w", "prefill", (1,), (1,), 1, 1, 16, "bf16", True)
    validate_exclusions(cfg, set(sample.describe()) | {"backend", "family", "impl"})
    planned: list[PlannedCase] = []
    n_excluded = 0
    for wl in cfg.workloads:
        wl_backends = [n for n in backends if not wl.backends or n in wl.backends]
        for case in expand_workload(wl, cfg.seed):
            pc = PlannedCase(case)
            columns = case.describe()
            for name in wl_backends:
                b = backends[name]
                if not b.wants(case):
                    continue
                if excluded(cfg.exclude, {**columns, "backend": name, "family": b.family, "impl": b.impl}):
                    n_excluded += 1
                    continue
                if name in unavailable:
                    pc.skip[name] = f"unavailable: {unavailable[name]}"
                    continue
                ok, why = b.supports(case)
                if ok:
                    pc.run.append(name)
                else:
                    pc.skip[name] = f"unsupported: {why}"
            if pc.run or pc.skip:
                planned.append(pc)
    # expand_workload emits each contiguous case right before its paged variants, so the worker
    # builds the shared tensors and reference once per group.
    return Plan(planned, list(backends), unavailable, n_excluded)
