"""The regression gate: match a current run with a baseline point by point and give each a verdict.

A point is (case_id, backend) (results.point_key). A baseline is K runs of one config on one GPU
(a baseline folder's runs/, see baselines.py; an old single-run baseline is K = 1).

Why K runs: a GPU's runs differ from each other by more than their own samples say (power caps,
clocks, which process ran first). On committed H100/H200 ci-gate runs the between-run spread of a
point's median was a median 2.9-6.5x the standard error the run's own interval implies, 20-33x on
power-capped prefill points, so a gate built on within-run intervals raised false alarms on 44 of
184 A/A pairs (issue 19). The spread between runs has to be measured, and only repeats measure it.

The spread rule (K >= 3 baseline runs with samples for the point). l_1..l_K are the runs' log
medians, sd their sample sd, c the current run's log median (or, for a current side of M runs, that
of its median run; sd is then pooled over the baseline's and the current runs' own spreads, with
K + M - 2 degrees of freedom, so that a baseline whose five runs happened to agree does not gate
runs that disagree among themselves). With
    tolerance = max(log(1 + floor), multiplier * sd * sqrt(1 + 1/K))        (natural-log units)
the point is SLOW when c - mean(l) > tolerance, FAST when c - mean(l) < -tolerance, SAME otherwise,
and NOISY (reported with its spread, never failed) when exp(tolerance) - 1 exceeds the cap.
Defaults: multiplier 6, floor 2%, cap 10%, K = 5.
What the rule claims, and why. If the runs' log medians are independent draws N(mu, sigma^2),
(c - mean(l)) / (sd * sqrt(1 + 1/K)) is Student-t with K - 1 degrees of freedom (the prediction
interval of one new run; sqrt(1 + 1/K) counts the error of the mean). Without the floor, the chance
of a false SLOW on one point is P(T_{K-1} > 6): 0.19% for K = 5, 1.3% for K = 3, 0.01% for K = 10
(gate_stats.t_sf); the floor only lowers it. Over the 14 gated ci-gate points the family rate is
at most 14 x 0.19% = 2.7% under that model. 6 rather than the t quantile because real run-to-run
noise has heavier tails than a normal (a slow first run of a process); on the committed H100 runs
this rule gave 0 false alarms over 2,772 leave-out A/A combinations, where K = 3 gave 4-6%.
With the baseline's sd alone, 13 of the 27,720 leave-out combinations (5 baseline + 3 current of
12 runs on one H200) failed on triton-flash causal prefill, whose process-to-process spread is 2%
while some five runs agree within 0.4%; pooling the current runs' spread removed all 13 and kept
the planted-5% catch rate on the stable decode points at 93% (from 96%).
A compute-bound point settles at the clock its power cap allows, and processes of one card can settle
in different states (sdpa-cudnn causal prefill on an H200: 1965 MHz and 0.94 ms, or 1815-1830 MHz
and 0.97-0.99 ms): sides whose median settled clocks differ by more than CLOCK_STATE_TOL (3%) are
NOISY, the clocks named; the A/B mode compares two versions at one power state.
Power: gate_stats.catch_probability(slowdown, sigma, K) integrates the chance of SLOW over the
sd's chi distribution. With K = 5, a point of between-run sd sigma catches a 5% slowdown with
probability 0.99 at sigma = 0.4%, 0.79 at 0.6% and 0.32 at 1%; a 3% one at 0.999, 0.69, 0.32,
0.09 for sigma = 0.2, 0.4, 0.6, 1%. Points noisier than that cannot gate small slowdowns from
separate runs at all; the A/B mode (ab.py) is the tool for them.
Beside the verdict the table shows the current run's own ~95% interval for its median, divided by
the baseline's centre: how well the run measured itself, not what decides.

The single-run rule (K = 1 or 2: old baselines such as results/baselines/ci-gate-h100, K = 1).
No spread can be estimated, so the within-run rule applies against each baseline run: gate_stats
gives a Hodges-Lehmann interval for the current/baseline ratio from the raw samples, at confidence
1 - alpha/m (Bonferroni over the m points so judged); SLOW when the whole interval lies above
1 + threshold against every baseline run, FAST below 1 / (1 + threshold) against every one, SAME
otherwise. This rule does not see between-run noise: the gate warns that such a baseline raises
false alarms and should be re-saved from K runs.

Statuses and missing points come first (judge.py): VANISHED (ok in the baseline, absent or
skipped now), BROKEN (ok in the baseline, incorrect or failed now), UNKNOWN (nothing to compare).
Launch-bound points (rows with launch_bound true) are gated on their device time (samples_ms), their
host time per call is only reported. Rows without timing fields (older runs) are read as they are.

Runs are comparable when their manifests name the same GPU model and config hash and their rows
the same dtypes; otherwise the gate refuses (exit 2) unless forced. It also refuses a baseline
with no point that has samples (nothing to compare with). Exit codes: 0 pass, 1 a point SLOW,
BROKEN or VANISHED (or every current point failed or incorrect), 2 the runs cannot be compared,
nothing was compared, or a run cannot be read (--force cannot help there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attnbench.gate import stats as gate_stats
from attnbench.gate.judge import BAD_STATUSES, PointResult, Rules, judge_point, samples_of
from attnbench.gate.sides import (
    DEFAULT_BASELINES_DIR,
    BaselineSet,
    GateError,
    Key,
    RunSide,
    combine_runs,
    mismatches,
    read_baseline,
    read_current,
    read_run,
    read_side,
    resolve_run,
)

VERDICTS = ("SLOW", "BROKEN", "VANISHED", "FAST", "SAME", "NOISY", "UNKNOWN")
FAILING = ("SLOW", "BROKEN", "VANISHED")
COMPARED = ("SLOW", "FAST", "SAME", "NOISY")
EXIT_OK, EXIT_SLOW, EXIT_INCOMPARABLE = 0, 1, 2

__all__ = ["PointResult", "GateResult", "GateError", "compare", "VERDICTS",
           # the two sides, read in sides.py, where callers of this module have found them
           "DEFAULT_BASELINES_DIR", "Key", "RunSide", "BaselineSet", "resolve_run", "read_run", "read_side",
           "read_current", "combine_runs", "read_baseline", "mismatches"]


@dataclass
class GateResult:
    baseline: BaselineSet
    current: RunSide
    rules: Rules
    family_alpha: float
    points: list[PointResult]
    new: list[Key]
    mismatches: list[str] = field(default_factory=list)
    forced: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def threshold(self) -> float:
        return self.rules.threshold

    @property
    def point_alpha(self) -> float:
        return self.rules.point_alpha

    @property
    def slow_limit(self) -> float:
        return 1.0 + self.rules.threshold

    @property
    def fast_limit(self) -> float:
        return 1.0 / (1.0 + self.rules.threshold)

    @property
    def vanished(self) -> list[Key]:
        return [p.key for p in self.points if p.verdict == "VANISHED"]

    def count(self, verdict: str) -> int:
        return sum(1 for p in self.points if p.verdict == verdict)

    @property
    def problem(self) -> str:
        """A whole-run failure that no single verdict shows, or ''."""
        statuses = [r.get("status") for r in self.current.rows.values()]
        if statuses and all(s in BAD_STATUSES for s in statuses):
            return f"every current point is failed or incorrect ({len(statuses)} points)"
        if not any(p.verdict in (*COMPARED, "BROKEN", "VANISHED") for p in self.points):
            return "0 points compared: no point has samples in both the baseline and the current run"
        return ""

    @property
    def exit_code(self) -> int:
        if any(self.count(v) for v in FAILING):
            return EXIT_SLOW
        problem = self.problem
        if problem.startswith("every"):
            return EXIT_SLOW
        return EXIT_INCOMPARABLE if problem else EXIT_OK


# ---- the whole gate --------------------------------------------------------------------------
def check_parameters(threshold: float, alpha: float, multiplier: float, floor: float, cap: float) -> None:
    if not 0.0 <= threshold < 10.0:
        raise GateError(f"--threshold {threshold} must lie in [0, 10) (a fraction: 0.05 means 5%)")
    if not 0.0 < alpha < 1.0:
        raise GateError(f"--alpha {alpha} must lie in (0, 1)")
    if not 0.0 < multiplier <= 100.0:
        raise GateError(f"--multiplier {multiplier} must lie in (0, 100] (sds of the between-run spread)")
    if not 0.0 <= floor < 10.0:
        raise GateError(f"--floor {floor} must lie in [0, 10) (a fraction: 0.02 means 2%)")
    if not floor <= cap < 10.0:
        raise GateError(f"--cap {cap} must lie in [--floor, 10) (a fraction: 0.10 means 10%)")


def compare(
    baseline: str,
    current: str,
    threshold: float = 0.05,
    alpha: float = 0.05,
    force: bool = False,
    baselines_dir: Path = DEFAULT_BASELINES_DIR,
    multiplier: float = gate_stats.DEFAULT_MULTIPLIER,
    floor: float = gate_stats.DEFAULT_FLOOR,
    cap: float = gate_stats.DEFAULT_CAP,
) -> GateResult:
    """Gate `current` against `baseline`; raises GateError when they cannot be compared (unless forced)."""
    check_parameters(threshold, alpha, multiplier, floor, cap)
    b = read_baseline(baseline, baselines_dir)
    c = read_current(current, baselines_dir)
    return compare_sides(b, c, threshold, alpha, force, multiplier, floor, cap)


def compare_sides(
    b: BaselineSet,
    c: RunSide,
    threshold: float = 0.05,
    alpha: float = 0.05,
    force: bool = False,
    multiplier: float = gate_stats.DEFAULT_MULTIPLIER,
    floor: float = gate_stats.DEFAULT_FLOOR,
    cap: float = gate_stats.DEFAULT_CAP,
) -> GateResult:
    """compare() on runs already read (the evidence scripts gate many combinations of the same runs)."""
    keys = b.keys()
    with_samples = {k: sum(1 for r in b.runs if samples_of(r.rows.get(k))[0].size) for k in keys}
    if not any(with_samples.values()):
        raise GateError(
            f"baseline {b.label} ({b.path}) has no point with samples: nothing to compare with "
            "(a baseline must be a finished run whose points are ok)"
        )
    problems = mismatches(b, c)
    if problems and not force:
        raise GateError("runs cannot be compared: " + "; ".join(problems) + " (--force gates anyway)")
    # the single-run rule's Bonferroni count: points it will judge with samples on both sides
    n_single = sum(
        1 for k, n in with_samples.items()
        if 0 < n < gate_stats.MIN_RUNS_FOR_SPREAD and samples_of(c.rows.get(k))[0].size
    )  # fmt: skip
    rules = Rules(threshold, gate_stats.bonferroni_alpha(alpha, n_single), multiplier, floor, cap)
    points = [judge_point(k, [r.rows.get(k) for r in b.runs], c.rows.get(k), rules) for k in keys]
    warnings = []
    for side, role in [*((r, "baseline") for r in b.runs), (c, "current")]:
        status = side.manifest.get("status")
        if status not in (None, "complete"):
            warnings.append(f"{role} run {side.path} is {status!r}, not complete")
        if side.duplicates:
            warnings.append(f"{role} run {side.path}: {side.duplicates} repeated point(s); the last row wins")
    cards = {uuid for r in b.runs if (uuid := r.manifest.get("gpu_uuid")) is not None}
    current_cards = {uuid for uuid in [c.manifest.get("gpu_uuid")] if uuid is not None}
    if cards and current_cards and not current_cards <= cards:
        warnings.append(
            f"the current run is on another card ({', '.join(sorted(current_cards))}) than the baseline's "
            f"runs ({', '.join(sorted(cards))}): the spread between cards is not in the baseline's "
            "tolerance (two H200s differed by 2-3% on bandwidth-bound decode); save a baseline on this "
            "card or one whose runs span the runner pool's cards"
        )
    if any(p.rule == "single-run" for p in points):
        warnings.append(
            f"baseline {b.label} has {b.k} run(s): points with fewer than {gate_stats.MIN_RUNS_FOR_SPREAD} "
            "runs are judged by the single-run rule, which does not see between-run noise and raises "
            "false alarms; save a baseline of 5 runs (attnbench sweep --repeat 5)"
        )
    return GateResult(
        baseline=b,
        current=c,
        rules=rules,
        family_alpha=alpha,
        points=points,
        new=sorted(k for k in c.rows if k not in set(keys)),
        mismatches=problems,
        forced=bool(problems) and force,
        warnings=warnings,
    )
