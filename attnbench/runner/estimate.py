"""How long a planned sweep will take and how much device memory its largest case needs, estimated
from a reference run's rows before any GPU work (to size a config such as configs/h200.yaml).

Time (seconds of wall clock):
- a planned point whose (case_id, backend) the reference run measured costs that row's point_wall_s
  (a skipped reference row costs nothing: the sweep skips it again);
- any other point is priced by its kernel shape (backend, phase, heads, head dim, dtype, block size:
  what JIT backends compile once for): the first point of a shape neither the reference nor an
  earlier planned point ran costs the median wall of the reference's first points of a shape for
  that backend and phase ("cold", the compile included), a later one the median of its non-first
  points ("warm"; within-shape recompiles such as a new split count are in that median); without
  rows of the backend and phase, the median of the phase's ok rows (else of all ok rows);
- each case costs its inputs and reference once (case_inputs_s: the reference's value, else the
  median over the reference's cases of that phase);
- the run's fixed cost (worker start, calibration, the study) is the reference's wall_s minus what
  its rows account for.
Points the planning machine skips as "unavailable" (GPU backends on a CPU) are counted as run when
the reference run had that backend available (its manifest's `backends`), or it is named in
`assume_available` (a backend the reference run predates): on the GPU they would run, so the
estimate errs long. A CPU-only backend stays skipped.

Memory (bytes) is an upper bound per case, not a measurement: Q, K, V and O in the case's dtype, a
paged copy of K and V where the case is paged, the same again for the fp32 reference, and for the
naive-family backends the scores, softmax and its copy (3 fp32 N x N per head, as configs/h100.yaml's
exclusion comment counts them).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.runner.plan import Plan

FP32_BYTES = 4
NAIVE_SCORE_COPIES = 3  # scores, softmax, and the copy a matmul makes of it


@dataclass
class Estimate:
    points: int = 0
    matched: int = 0  # points the reference run measured
    seconds: float = 0.0
    fixed_seconds: float = 0.0
    per_workload: dict[str, float] = field(default_factory=dict)
    points_per_workload: dict[str, int] = field(default_factory=dict)
    peak_case_bytes: int = 0
    peak_case_id: str = ""


def read_reference(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and rows of a run directory (results.jsonl)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]
    return manifest, rows


def case_bytes_bound(case: Case, naive: bool) -> int:
    """Upper bound of the device bytes one point of this case holds (see the module doc)."""
    heads_q, heads_kv, d = case.num_q_heads, case.num_kv_heads, case.head_dim
    q_o = 2 * case.total_q * heads_q * d * case.elem_bytes
    kv = 2 * case.total_kv * heads_kv * d * case.elem_bytes
    inputs = q_o + kv * (2 if case.paged else 1)
    reference = (q_o + kv) * FP32_BYTES // case.elem_bytes
    scores = 0
    if naive:  # padded batch x heads x max_q x max_kv scores in fp32
        scores = NAIVE_SCORE_COPIES * case.batch * heads_q * case.max_q * case.max_kv * FP32_BYTES
    return inputs + reference + scores


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def shape_key(backend: str, phase: str, heads_q: int, heads_kv: int, head_dim: int, dtype: str,
              block_size: int | None) -> tuple:
    """What a JIT backend compiles once for (see the module doc)."""
    return (backend, phase, heads_q, heads_kv, head_dim, dtype, block_size)


def _row_shape(r: dict[str, Any]) -> tuple:
    return shape_key(r["backend"], r["phase"], r["num_q_heads"], r["num_kv_heads"], r["head_dim"],
                     r["dtype"], r.get("block_size"))


def estimate(plan: Plan, manifest: dict[str, Any], rows: list[dict[str, Any]],
             naive_backends: set[str], assume_available: frozenset[str] = frozenset()) -> Estimate:
    on_gpu = set(manifest.get("backends") or []) | set(assume_available)
    by_point = {(r["case_id"], r["backend"]): r for r in rows}
    cold: dict[tuple[str, str], list[float]] = defaultdict(list)  # (backend, phase) -> first-of-shape walls
    warm: dict[tuple[str, str], list[float]] = defaultdict(list)
    phase_walls: dict[str, list[float]] = defaultdict(list)
    seen_shapes: set[tuple] = set()
    inputs_by_case: dict[str, float] = {}
    ok_rows = [r for r in rows if r.get("status") == "ok" and r.get("point_wall_s") is not None]
    for r in sorted(ok_rows, key=lambda r: str(r.get("finished_at", ""))):
        shape = _row_shape(r)
        (warm if shape in seen_shapes else cold)[(r["backend"], r["phase"])].append(float(r["point_wall_s"]))
        seen_shapes.add(shape)
        phase_walls[r["phase"]].append(float(r["point_wall_s"]))
    for r in rows:
        if r.get("case_inputs_s"):
            prev = inputs_by_case.get(r["case_id"], 0.0)
            inputs_by_case[r["case_id"]] = max(prev, float(r["case_inputs_s"]))
    all_walls = [w for ws in phase_walls.values() for w in ws]
    phase_inputs: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["case_id"] in inputs_by_case:
            phase_inputs[r["phase"]].append(inputs_by_case[r["case_id"]])
    accounted = sum(float(r.get("point_wall_s") or 0) for r in rows) + sum(inputs_by_case.values())
    est = Estimate(fixed_seconds=max(0.0, float(manifest.get("wall_s") or 0) - accounted))
    est.seconds = est.fixed_seconds

    def fallback(phase: str) -> float:
        return _median(phase_walls.get(phase, [])) or _median(all_walls) or 0.0

    for pc in plan.cases:
        case = pc.case
        names = list(pc.run) + [n for n, why in pc.skip.items()
                                if why.startswith("unavailable") and n in on_gpu]
        if not names:
            continue
        cost = inputs_by_case.get(case.case_id)
        if cost is None:
            cost = _median(phase_inputs.get(case.phase, [])) or 0.0
        for name in names:
            est.points += 1
            ref = by_point.get((case.case_id, name))
            shape = shape_key(name, case.phase, case.num_q_heads, case.num_kv_heads, case.head_dim,
                              case.dtype, case.block_size)
            if ref is not None:
                est.matched += 1
                wall = float(ref.get("point_wall_s") or 0.0)
            elif shape in seen_shapes:
                wall = _median(warm.get((name, case.phase), [])) or fallback(case.phase)
            else:
                wall = _median(cold.get((name, case.phase), [])) or fallback(case.phase)
            seen_shapes.add(shape)
            cost += wall
            need = case_bytes_bound(case, name in naive_backends)
            if need > est.peak_case_bytes:
                est.peak_case_bytes, est.peak_case_id = need, f"{case.case_id} ({name})"
        est.seconds += cost
        est.per_workload[case.workload] = est.per_workload.get(case.workload, 0.0) + cost
        est.points_per_workload[case.workload] = est.points_per_workload.get(case.workload, 0) + len(names)
    return est
