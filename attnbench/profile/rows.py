"""Profile rows beside sweep rows: a sweep says how long, a profile says why; one row holds both.

A profile row is matched to a sweep row by its point (case_id, backend), and by the backend's
variant where a backend wrote several variants of one case. The merged row is the sweep row
(status, latencies, samples: what the gate compares) plus the profile's fields: the ncu_* and
torch_* columns, the DRAM byte counts and their ratios to the model's minimum, and the profile's
own status and reason as profile_status / profile_reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnbench.runner.results import RunDir, load_run, now_iso, point_key

PROFILE_PREFIXES = ("ncu_", "torch_")
PROFILE_KEYS = ("dram_read_bytes", "dram_write_bytes", "min_read_bytes", "dram_read_ratio",
                "dram_total_ratio", "profile_tool")

Row = dict[str, Any]


def profile_fields(row: Row) -> Row:
    """The columns a profile adds to a sweep row."""
    out = {k: v for k, v in row.items() if k.startswith(PROFILE_PREFIXES) or k in PROFILE_KEYS}
    out["profile_status"] = row.get("status")
    out["profile_reason"] = row.get("reason", "")
    return out


def _variant_key(row: Row) -> tuple[str, str, Any]:
    return (*point_key(row), row.get("variant"))


class Index:
    """Rows by point, to find the row matching another run's row of the same point."""

    def __init__(self, rows: list[Row]) -> None:
        self.by_variant: dict[tuple, Row] = {}
        self.by_point: dict[tuple, list[Row]] = {}
        for r in rows:  # a resumed run's duplicate point: the last row wins, as in the report
            self.by_variant[_variant_key(r)] = r
            self.by_point.setdefault(point_key(r), []).append(r)

    def find(self, row: Row) -> Row | None:
        hit = self.by_variant.get(_variant_key(row))
        if hit is not None:
            return hit
        candidates = self.by_point.get(point_key(row), [])
        # Without the same variant, only an unambiguous row of the point is taken.
        return candidates[-1] if len({c.get("variant") for c in candidates}) == 1 else None


def with_sweep(profile_row: Row, sweep: Index) -> Row:
    """The sweep's row of this point with the profile's fields, or the profile row if none."""
    s = sweep.find(profile_row)
    return {**s, **profile_fields(profile_row)} if s is not None else profile_row


def merge_rows(sweep_rows: list[Row], profile_rows: list[Row], keep_unmatched: bool = False) -> list[Row]:
    """Sweep rows with their profiles' fields. Profile rows no sweep row matches are appended as they
    are only when keep_unmatched (their latencies come from the profiler, not the sweep's timer)."""
    profiles = Index(profile_rows)
    used: set[int] = set()
    merged: list[Row] = []
    for s in sweep_rows:
        p = profiles.find(s)
        if p is None:
            merged.append(dict(s))
            continue
        used.add(id(p))
        merged.append({**s, **profile_fields(p)})
    if keep_unmatched:
        merged += [dict(r) for r in profile_rows if id(r) not in used]
    return merged


def merge_runs(sweep_dir: Path, profile_dir: Path, out_dir: Path) -> RunDir:
    """A new run directory: the sweep's manifest (noting the profile) and the merged rows."""
    s_manifest, s_rows = load_run(sweep_dir)
    p_manifest, p_rows = load_run(profile_dir)
    run = RunDir(out_dir)
    if run.manifest_path.exists():
        raise FileExistsError(f"{out_dir} already holds a run")
    run.create()
    manifest = dict(s_manifest)
    manifest.update(
        run_id=out_dir.name,
        merged_from={"sweep": str(sweep_dir), "profile": str(profile_dir)},
        profile_tool=p_manifest.get("tool"),
        profile_run_id=p_manifest.get("run_id"),
        merged_at=now_iso(),
    )
    run.write_manifest(manifest)
    merged = merge_rows(s_rows, p_rows)
    matched = sum(1 for r in merged if "profile_status" in r)
    run.update_manifest(profile_rows_matched=matched, profile_rows_unmatched=len(p_rows) - matched)
    for row in merged:
        run.append_row(row)
    return run
