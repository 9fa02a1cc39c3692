"""The gate's A/B mode: did this change slow my kernel? Two versions measured in one process.

`attnbench gate ab --a SPEC --b SPEC --config configs/ci-gate.yaml` loads two versions of the
backends side by side (versions.py: worktree, git:REV, path:DIR, plugin:MODULE), builds each
case's inputs once, and for every point (case, backend present in both) times A and B alternately,
sample by sample, on the same inputs and the same GPU: pair i is A then B for even i, B then A for
odd i (ABBA order, so a linear drift within two pairs cancels). Each sample is one call between
CUDA events, the L2 flushed before it (host perf counter on a CPU).

Why: run-to-run drift (power caps, clocks, process start) moves both versions alike when they
alternate within milliseconds. Interleaved copies of one kernel gave ratios spread 0.17% across
processes against 2.1% for absolute medians (issue 19), so a paired ratio can gate 3% on points
(power-capped prefill) whose separate runs differ by 20-30%.

The verdict is on r_i = log(b_i / a_i) of the n pairs: ratio = exp(median r), with the sign-test
interval at confidence 1 - alpha/m (Bonferroni over the m points compared; gate_stats.
paired_ratio_interval, distribution-free). SLOW when the whole interval lies above 1 + threshold,
FAST below 1 / (1 + threshold), NOISY when its half-width (log scale) exceeds the cap (it cannot
gate at that threshold), SAME otherwise. Default threshold 1%: about 6 between-process sds of the
ratio measured on an H100. Correctness before timing, by the harness's rule (attnbench.reference:
per sequence and query head, against the error of a plain in-dtype implementation): B is BROKEN
when its first output is incorrect or it raises, the point UNKNOWN when A's is; a backend in A that B
lacks or no longer supports is VANISHED. Samples are the harness's (L2 flushed by a write then a
read, the stream held until a sample is queued); a pair with an exposed sample is dropped. Exit
codes as in the run gate: 1 on SLOW, BROKEN or VANISHED, 2 not comparable.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from attnbench.gate import stats as gate_stats
from attnbench.gate.ab_timing import alternate
from attnbench.gate.judge import PointResult
from attnbench.gate.runs import COMPARED, FAILING, GateError
from attnbench.gate.versions import Version, VersionError, load_version

DEFAULT_THRESHOLD = 0.01
DEFAULT_CAP = 0.05


@dataclass
class Measured:
    """One point's raw result, before the verdict (kept whole in the --json output)."""

    case_id: str
    backend: str
    a_ms: list[float] = field(default_factory=list)
    b_ms: list[float] = field(default_factory=list)
    a_err: float | None = None
    b_err: float | None = None
    a_info: dict[str, Any] = field(default_factory=dict)
    b_info: dict[str, Any] = field(default_factory=dict)
    fixed_verdict: str = ""  # BROKEN / VANISHED / UNKNOWN decided before timing
    note: str = ""


@dataclass
class ABResult:
    a: Version
    b: Version
    config: str
    device: str
    threshold: float
    cap: float
    family_alpha: float
    point_alpha: float
    points: list[PointResult]
    measured: list[Measured]
    new: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    forced: bool = False
    mismatches: list[str] = field(default_factory=list)

    def count(self, verdict: str) -> int:
        return sum(1 for p in self.points if p.verdict == verdict)

    @property
    def problem(self) -> str:
        if not any(p.verdict in (*COMPARED, *FAILING) for p in self.points):
            return "0 points compared: no point was measured in both versions"
        return ""

    @property
    def exit_code(self) -> int:
        if any(self.count(v) for v in FAILING):
            return 1
        return 2 if self.problem else 0

    def side_lines(self) -> list[str]:
        return [
            f"A: {self.a.spec} ({self.a.describe})",
            f"B: {self.b.spec} ({self.b.describe})",
            f"config {self.config}, device {self.device}; baseline ms = A, current ms = B",
        ]

    def method_text(self) -> str:
        return (
            f"A/B: A and B alternate sample by sample (ABBA) in one process on the same inputs; "
            f"ratio = median of the pairs' B/A ratios, interval the {(1 - self.point_alpha) * 100:.6g}% "
            f"sign-test interval (Bonferroni over {sum(p.verdict in COMPARED for p in self.points)} points, "
            f"family-wise alpha {self.family_alpha:g}). SLOW when it lies above {1 + self.threshold:.3f}, "
            f"FAST below {1 / (1 + self.threshold):.3f}, NOISY when its half-width exceeds {self.cap:.0%}. "
            "BROKEN: B's output incorrect by the harness's per-(sequence, head) rule, or B "
            "fails; VANISHED: in A, not run in B. Exit 1 on SLOW, BROKEN or VANISHED."
        )

    def properties(self) -> list[tuple[str, str]]:
        return [
            ("mode", "ab"), ("a", self.a.spec), ("b", self.b.spec), ("config", self.config),
            ("threshold", f"{self.threshold:g}"), ("cap", f"{self.cap:g}"),
            ("family_alpha", f"{self.family_alpha:g}"), ("point_confidence", f"{1 - self.point_alpha:.6f}"),
        ]  # fmt: skip


# ---- correctness ---------------------------------------------------------------------------
def worst_sequence_error(out: Any, inputs: Any) -> float:
    """The harness's verdict as a number: the worst (sequence, head) cell's error over what
    attnbench.reference allows there (> 1 is incorrect; inf when out is not finite)."""
    from attnbench.reference import check_output

    check = check_output(out, inputs)
    return math.inf if check.ratio is None else check.ratio


def _prepare(version: Version, name: str, case: Any, inputs: Any) -> tuple[Any, float | None, str]:
    """(prepared, worst error, '') or (None, None, why)."""
    backend = version.backends[name]
    try:
        with version.active():
            ok, why = backend.supports(case)
            if not ok:
                return None, None, f"unsupported: {why}"
            prepared = backend.prepare(case, inputs)
            out = prepared.run()
            err = worst_sequence_error(prepared.to_packed(out), inputs)
    except Exception as e:  # noqa: BLE001 - a failing version is a verdict, never a crash
        return None, None, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return prepared, err, ""


# ---- the points ----------------------------------------------------------------------------
def _cases(cfg: Any, workloads: list[str] | None) -> list[tuple[Any, tuple[str, ...]]]:
    from attnbench.config.sweep_config import expand_workload

    known = [wl.name for wl in cfg.workloads]
    for w in workloads or []:
        if w not in known:
            raise GateError(f"--workloads {w!r}: not a workload of the config (it has {', '.join(known)})")
    return [
        (case, tuple(wl.backends))
        for wl in cfg.workloads
        if not workloads or wl.name in workloads
        for case in expand_workload(wl, cfg.seed)
    ]


def measure_all(
    cfg: Any,
    a: Version,
    b: Version,
    device_name: str,
    backends: list[str] | None,
    workloads: list[str] | None,
    pairs: int,
    max_time_s: float,
    progress: Callable[[str], None] = lambda s: None,
) -> tuple[list[Measured], list[tuple[str, str]]]:
    """Every point of the config in A (and B): measured pairs, or why not; and B-only points."""
    import torch

    from attnbench.config.sweep_config import excluded
    from attnbench.inputs import build_inputs

    device = torch.device(device_name)
    names = backends or list(cfg.backends) or list(a.backends)
    for n in names:
        if n not in a.backends and n not in b.backends:
            raise GateError(f"backend {n!r} is in neither version (A has {', '.join(a.backends)})")
    measured: list[Measured] = []
    new: list[tuple[str, str]] = []
    inputs = None  # a paged case reuses the tensors of its contiguous twin, built just before it
    for case, wl_backends in _cases(cfg, workloads):
        for name in names:
            if wl_backends and name not in wl_backends:
                continue
            owner = a.backends.get(name) or b.backends[name]
            if not owner.wants(case):
                continue
            columns = {**case.describe(), "backend": name, "family": owner.family, "impl": owner.impl}
            if excluded(cfg.exclude, columns):
                continue
            if name not in a.backends:
                if b.backends[name].available(device.type)[0]:
                    new.append((case.case_id, name))
                continue
            m = Measured(case.case_id, name)
            # a row with its reason: nothing the config names is silently dropped
            m.fixed_verdict, m.note = _unavailable(a, b, name, device.type)
            if not m.fixed_verdict:
                if inputs is None or inputs.case != case:
                    base = inputs if inputs is not None and inputs.case == case.without_paging() else None
                    inputs = build_inputs(case, device, base)
                progress(f"{case.case_id} [{name}]")
                _check_and_time(m, a, b, case, inputs, device, pairs, max_time_s)
            measured.append(m)
    return measured, new


def _unavailable(a: Version, b: Version, name: str, device_type: str) -> tuple[str, str]:
    """(verdict, why) when the backend cannot run here in A (UNKNOWN) or in B (VANISHED); ('', '') else."""
    ok_a, why_a = a.backends[name].available(device_type)
    if not ok_a:
        return "UNKNOWN", f"unavailable in A: {why_a}"
    if name not in b.backends:
        return "VANISHED", "in A, not in B"
    ok, why = b.backends[name].available(device_type)
    if not ok:
        return "VANISHED", f"unavailable in B: {why}"
    return "", ""


def _check_and_time(m: Measured, a: Version, b: Version, case: Any, inputs: Any, device: Any, pairs: int,
                    max_time_s: float) -> None:
    """Correctness before timing: A's output must be correct (else UNKNOWN), B's too (else BROKEN, or
    VANISHED when B no longer supports the case); then the pairs, into m."""
    name = m.backend
    pa, m.a_err, why_a = _prepare(a, name, case, inputs)
    if pa is None:
        m.fixed_verdict, m.note = "UNKNOWN", f"A: {why_a}"
        return
    assert m.a_err is not None, "_prepare measures the error of every backend it prepares"
    if not math.isfinite(m.a_err) or m.a_err > 1.0:
        why = "output has NaN or Inf" if not math.isfinite(m.a_err) else \
            f"incorrect ({m.a_err:.3g}x the allowed error)"
        m.fixed_verdict, m.note, m.a_err = "UNKNOWN", f"A: {why}", None
        return
    pb, m.b_err, why_b = _prepare(b, name, case, inputs)
    if m.b_err is not None and not math.isfinite(m.b_err):
        pb, m.b_err, why_b = None, None, "output has NaN or Inf"
    m.a_info, m.b_info = dict(pa.info), dict(pb.info) if pb is not None else {}
    if pb is None:
        verdict = "VANISHED" if why_b.startswith("unsupported") else "BROKEN"
        m.fixed_verdict, m.note = verdict, f"B: {why_b}"
        return
    assert m.b_err is not None, "_prepare measures the error of every backend it prepares"
    if m.b_err > 1.0:
        m.fixed_verdict = "BROKEN"
        m.note = f"B incorrect: its worst cell's error is {m.b_err:.3g}x what the check allows"
    else:
        m.a_ms, m.b_ms = alternate(pa.run, pb.run, a, b, device, pairs, max_time_s)


class _PointKey(TypedDict):
    """The PointResult fields that every verdict of judge() shares (passed as **kwargs)."""

    case_id: str
    backend: str
    n_baseline: int
    n_current: int
    rule: str


def judge(
    measured: list[Measured], threshold: float, cap: float, alpha: float
) -> tuple[list[PointResult], float]:
    n_timed = sum(1 for m in measured if not m.fixed_verdict and m.a_ms)
    point_alpha = gate_stats.bonferroni_alpha(alpha, n_timed)
    points = []
    for m in measured:
        base = _PointKey(
            case_id=m.case_id, backend=m.backend, n_baseline=len(m.a_ms), n_current=len(m.b_ms), rule="paired"
        )
        if m.fixed_verdict or not m.a_ms:
            points.append(PointResult(verdict=m.fixed_verdict or "UNKNOWN", baseline_ms=None, current_ms=None,
                                      ratio=None, low=None, high=None, note=m.note, **base))  # fmt: skip
            continue
        iv = gate_stats.paired_ratio_interval(np.array(m.a_ms), np.array(m.b_ms), point_alpha)
        notes = [m.note] if m.note else []
        if iv.low is None or iv.high is None:
            verdict = "UNKNOWN"
            notes.append(f"{iv.n_pairs} pairs cannot bound the ratio at {iv.confidence:.6g}")
        elif iv.low > 1 + threshold:
            verdict = "SLOW"
        elif iv.high < 1 / (1 + threshold):
            verdict = "FAST"
        elif math.log(iv.high / iv.low) / 2 > math.log1p(cap):
            verdict = "NOISY"
            notes.append(f"interval half-width over {cap:.0%}: not gated")
        else:
            verdict = "SAME"
        planted = m.b_info.get("planted_fraction")
        if planted is not None:
            notes.append(f"B planted +{planted:.1%}")
        points.append(
            PointResult(
                verdict=verdict, baseline_ms=float(np.median(m.a_ms)), current_ms=float(np.median(m.b_ms)),
                ratio=iv.ratio, low=iv.low, high=iv.high, note="; ".join(notes), tolerance=threshold, **base,
            )
        )  # fmt: skip
    return points, point_alpha


def run_ab(
    a_spec: str,
    b_spec: str,
    config: Path,
    device: str = "auto",
    backends: list[str] | None = None,
    workloads: list[str] | None = None,
    pairs: int = 200,
    max_time_s: float = 5.0,
    threshold: float = DEFAULT_THRESHOLD,
    cap: float = DEFAULT_CAP,
    alpha: float = 0.05,
    json_out: Path | None = None,
    progress: Callable[[str], None] = lambda s: None,
) -> ABResult:
    """Load both versions, measure every point alternately, judge; raises GateError (exit 2)."""
    from attnbench.config.sweep_config import ConfigError, load_config
    from attnbench.sysinfo import resolve_device

    if pairs < 1 or not 0 < max_time_s <= 3600:
        raise GateError(f"--pairs {pairs} must be >= 1 and --max-time-s {max_time_s} in (0, 3600]")
    if not 0 <= threshold < 10 or not 0 < cap < 10 or not 0 < alpha < 1:
        raise GateError("--threshold must lie in [0, 10), --cap in (0, 10), --alpha in (0, 1)")
    try:
        va, vb = load_version(a_spec), load_version(b_spec)
    except VersionError as e:
        raise GateError(str(e)) from None
    try:
        cfg = load_config(config, sorted(set(va.backends) | set(vb.backends)))
        dev = resolve_device(device if device != "auto" else cfg.device)
    except (ConfigError, ValueError) as e:
        raise GateError(str(e)) from None
    started = time.perf_counter()
    measured, new = measure_all(cfg, va, vb, dev, backends, workloads, pairs, max_time_s, progress)
    points, point_alpha = judge(measured, threshold, cap, alpha)
    result = ABResult(va, vb, str(config), dev, threshold, cap, alpha, point_alpha, points, measured, new)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "a": a_spec, "b": b_spec, "config": str(config), "device": dev, "threshold": threshold,
            "cap": cap, "alpha": alpha, "point_alpha": point_alpha, "exit_code": result.exit_code,
            "wall_s": time.perf_counter() - started,
            "points": [asdict(p) for p in points], "measured": [asdict(m) for m in measured],
        }  # fmt: skip
        json_out.write_text(json.dumps(doc, default=str) + "\n")
    return result
