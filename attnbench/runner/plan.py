"""The plan of a sweep: which (case, backend) points run, which are skipped and why.

Planning needs no GPU work: availability and support are asked of each backend, exclusions are
applied, and each case's points are kept together so its inputs and reference are built once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attnbench.backends import all_backends
from attnbench.backends.base import Backend
from attnbench.case import Case
from attnbench.config.sweep_config import (
    SweepConfig,
    excluded,
    expand_workload,
    validate_exclusions,
    workload_size,
)

# A plan above this many points is refused unless --max-points allows it: at a few seconds a
# point on a GPU this is already most of a day, and a typo in an axis (a list of 50 batch sizes
# times 50 lengths...) should not start a week-long sweep or spend minutes planning.
DEFAULT_MAX_POINTS = 50_000


class PlanSizeError(ValueError):
    """A config whose plan is larger than allowed; str() says how large and how to allow it."""


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


def ask(what: str, call) -> tuple[bool, str]:
    """A backend's available()/supports() answer; an exception in it is a `no` with its reason
    (that backend's points are skipped with it, the other backends are planned as usual)."""
    try:
        ok, why = call()
    except Exception as err:  # noqa: BLE001 - a broken backend must not stop the plan
        return False, f"{what} raised {type(err).__name__}: {' '.join(str(err).split())[:200]}"
    return bool(ok), str(why)


def check_size(cfg: SweepConfig, n_backends: int, max_points: int | None) -> None:
    """PlanSizeError when the config's upper bound of points exceeds max_points (default
    DEFAULT_MAX_POINTS), checked before expanding anything."""
    limit = DEFAULT_MAX_POINTS if max_points is None else max_points
    bound = sum(workload_size(wl) * (len(wl.backends) or n_backends) for wl in cfg.workloads)
    if bound > limit:
        sizes = ", ".join(f"{wl.name}: {workload_size(wl)} cases" for wl in cfg.workloads)
        raise PlanSizeError(
            f"{cfg.source}: up to {bound} points ({sizes}; x backends) is more than the limit of "
            f"{limit}; shrink the config's axes or exclude points, or allow it with --max-points {bound}"
        )


def build_plan(cfg: SweepConfig, device: str, override_backends: list[str] | None = None,
               max_points: int | None = None) -> Plan:
    """The plan; linear in the points (each case and backend is looked at once)."""
    backends = select_backends(cfg, override_backends)
    check_size(cfg, len(backends), max_points)
    unavailable = {}
    for name, b in backends.items():
        ok, why = ask("available()", lambda b=b: b.available(device))
        if not ok:
            unavailable[name] = why
    # a quantised-KV sample: its columns include kv_dtype and kv_scale, which unquantised rows leave out
    sample = Case("w", "prefill", (1,), (1,), 1, 1, 16, "bf16", True, kv_dtype="fp8_e4m3")
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
                wants, why = ask("wants()", lambda b=b, case=case: (b.wants(case), ""))
                if not wants and why:
                    pc.skip[name] = f"unsupported: {why}"
                    continue
                if not wants:
                    continue
                if excluded(cfg.exclude, {**columns, "backend": name, "family": b.family, "impl": b.impl}):
                    n_excluded += 1
                    continue
                if name in unavailable:
                    pc.skip[name] = f"unavailable: {unavailable[name]}"
                    continue
                ok, why = ask("supports()", lambda b=b, case=case: b.supports(case))
                if ok:
                    pc.run.append(name)
                else:
                    pc.skip[name] = f"unsupported: {why}"
            if pc.run or pc.skip:
                planned.append(pc)
    # expand_workload emits each contiguous case right before its paged variants, so the worker
    # builds the shared tensors and reference once per group.
    return Plan(planned, list(backends), unavailable, n_excluded)
