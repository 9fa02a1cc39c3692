"""One run from several: `attnbench merge RUN... --out DIR` (shards of one sweep, or repeated runs).

Refused unless --force: runs of another config (config_hash), another GPU model (gpu_name),
another attnbench version (attnbench_version), and shards cut differently (shard count or
partition digest, see attnbench.runner.shard). With --force the merge goes on and the manifest lists what
differed under `merge_forced`.

A point, (case_id, backend), measured more than once keeps one row, by this rule (RULE):
  1. a row with status ok beats one with any other status;
  2. then the row with more timing samples (n_samples, 0 when absent);
  3. then the row of the later run (manifest ended_at, else started_at), and between runs that
     tie, the one named later on the command line (in one run: the later line).
Every dropped row is reported.

The merged manifest lists its sources (`merged_from`: path, run id, shard, host, status, rows) and
its `coverage`: the points the config plans (re-planned from the config text the runs carry) against
the points present, which shards of 1..N are missing, and `complete`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench.runner.results import MANIFEST, RunDir, bad_lines_note, load_run, now_iso, point_key, read_rows

RULE = ("status ok beats any other status; then more samples (n_samples); then the later run "
        "(ended_at, else started_at; ties: later on the command line; in one run: the later line)")
CHECKED = (("config_hash", "config"), ("gpu_name", "GPU model"), ("attnbench_version", "attnbench version"))


class MergeError(ValueError):
    """Runs that cannot be merged (without --force), or bad paths; str() is the one-line message."""


@dataclass
class Source:
    path: Path
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]
    order: int  # position on the command line

    @property
    def name(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def shard(self) -> str | None:
        return self.manifest.get("shard")

    @property
    def when(self) -> str:
        return str(self.manifest.get("ended_at") or self.manifest.get("started_at") or "")


@dataclass
class Dropped:
    key: tuple[str, str]
    dropped: str  # source name
    dropped_status: str
    kept: str
    kept_status: str
    why: str

    def line(self) -> str:
        return (f"dropped {self.key[1]} {self.key[0]}: {self.dropped_status} from {self.dropped}; "
                f"kept {self.kept_status} from {self.kept} ({self.why})")


@dataclass
class Merged:
    manifest: dict[str, Any]
    rows: list[dict[str, Any]]
    dropped: list[Dropped] = field(default_factory=list)
    forced: list[str] = field(default_factory=list)


def load_sources(paths: list[Path]) -> list[Source]:
    if not paths:
        raise MergeError("no runs to merge; give one or more run directories")
    sources = []
    seen: set[Path] = set()
    for i, p in enumerate(paths):
        if p.resolve() in seen:
            raise MergeError(f"{p}: named twice")
        seen.add(p.resolve())
        try:
            manifest, rows = load_run(p)
        except FileNotFoundError as err:
            raise MergeError(str(err)) from None
        except json.JSONDecodeError as err:
            raise MergeError(f"{p}/{MANIFEST}: not valid JSON ({err})") from None
        unreadable = bad_lines_note(RunDir(p).rows_path, read_rows(RunDir(p).rows_path)[1])
        if unreadable:
            from attnbench.console import warn

            warn(unreadable)
        sources.append(Source(p, manifest, rows, i))
    return sources


def mismatches(sources: list[Source]) -> list[str]:
    """Why these runs should not be merged; empty when they can be."""
    out = []
    for key, label in CHECKED:
        values = {s.name: s.manifest.get(key) for s in sources}
        if len(set(map(str, values.values()))) > 1:
            out.append(f"{label} differs ({key}: " + ", ".join(f"{n}={v!r}" for n, v in values.items()) + ")")
    plans = {s.name: s.manifest.get("shard_plan") or {} for s in sources if s.shard}
    counts = {n: p.get("count") for n, p in plans.items()}
    if len(set(counts.values())) > 1:
        out.append("shard counts differ (" + ", ".join(f"{n}: {s}" for n, s in counts.items()) + ")")
    elif len({p.get("partition") for p in plans.values()}) > 1:
        out.append("shards were cut from different plans (partition digests differ: another backend list "
                   "or attnbench?)")
    return out


def _rank(row: dict[str, Any], src: Source, line: int) -> tuple:
    return (row.get("status") == "ok", row.get("n_samples") or 0, src.when, src.order, line)


def _why(win: tuple, lose: tuple) -> str:
    if win[0] != lose[0]:
        return "status ok beats the other"
    if win[1] != lose[1]:
        return f"more samples ({win[1]} > {lose[1]})"
    if win[2:4] != lose[2:4]:
        return "later run"
    return "later line of the same run"


def merge_rows(sources: list[Source]) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """One row per point by RULE, in the order points first appear; and the rows dropped."""
    best: dict[tuple[str, str], tuple[tuple, dict[str, Any], Source]] = {}
    order: list[tuple[str, str]] = []
    dropped: list[Dropped] = []
    for src in sources:
        for line, row in enumerate(src.rows):
            key = point_key(row)
            rank = _rank(row, src, line)
            if key not in best:
                best[key] = (rank, row, src)
                order.append(key)
                continue
            old_rank, old_row, old_src = best[key]
            win, lose = ((rank, row, src), (old_rank, old_row, old_src)) if rank > old_rank else \
                ((old_rank, old_row, old_src), (rank, row, src))
            best[key] = win
            dropped.append(Dropped(key, lose[2].name, str(lose[1].get("status")), win[2].name,
                                   str(win[1].get("status")), _why(win[0], lose[0])))
    rows = [{**best[k][1], "source_run": best[k][2].name} for k in order]
    return rows, dropped


def planned_keys(manifest: dict[str, Any], rows: Sequence[dict[str, Any]] = (),
                 plan_points: int | None = None) -> set[tuple[str, str]] | None:
    """Every point the run's plan holds; None where it cannot be known here.

    Runs that recorded their plan's points (`planned_keys`, written by `sweep`) are read as they
    are. Older runs are rebuilt from their config text and rows without loading any backend
    (merge_plan.rebuilt_keys: re-planning would import torch), checked against `plan_points`.
    """
    recorded = manifest.get("planned_keys")
    if isinstance(recorded, list) and all(isinstance(k, list) and len(k) == 2 for k in recorded):
        return {(str(c), str(b)) for c, b in recorded}
    from attnbench.runner.merge_plan import rebuilt_keys

    return rebuilt_keys(manifest, list(rows), plan_points)


def coverage(sources: list[Source], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Which of the plan's points and shards the merged rows cover."""
    have = {point_key(r) for r in rows}
    first = sources[0].manifest
    shard_plans = [s.manifest.get("shard_plan") or {} for s in sources if s.shard]
    whole = any(not s.shard for s in sources)
    count = shard_plans[0].get("count") if shard_plans else None
    present = sorted({p["index"] for p in shard_plans if p.get("index") is not None})
    missing_shards = [] if whole or count is None else [k for k in range(1, count + 1) if k not in present]
    plan_points = shard_plans[0].get("plan_points") if shard_plans else first.get("planned_points")
    keys = planned_keys(first, rows, plan_points)
    out: dict[str, Any] = {
        "plan_points": len(keys) if keys is not None else plan_points,
        "points": len(have),
        "shard_count": count,
        "shards_present": present,
        "missing_shards": [f"{k}/{count}" for k in missing_shards],
        "whole_plan_run_included": whole,
    }
    if keys is not None:
        missing = sorted(keys - have)
        out["missing_points"] = len(missing)
        out["missing_examples"] = [f"{b} {c}" for c, b in missing[:10]]
        out["points_outside_plan"] = len(have - keys)
        out["complete"] = not missing and not missing_shards
    else:
        out["missing_points"] = None if plan_points is None else max(0, plan_points - len(have))
        out["complete"] = not missing_shards and plan_points is not None and len(have) >= plan_points
        out["note"] = "the plan could not be rebuilt here; coverage is by shard and point counts"
    return out


def merge(sources: list[Source], out: Path, force: bool = False) -> Merged:
    """Merge the sources; raises MergeError on mismatches (unless force) or a bad --out."""
    problems = mismatches(sources)
    if problems and not force:
        raise MergeError("runs cannot be merged: " + "; ".join(problems) + " (--force merges anyway)")
    target = RunDir(out)
    if target.manifest_path.exists() or target.rows_path.exists():
        raise MergeError(f"{out} already holds a run; choose another --out")
    if any(out.resolve() == s.path.resolve() for s in sources):
        raise MergeError(f"--out {out} is one of the runs being merged")
    rows, dropped = merge_rows(sources)
    cov = coverage(sources, rows)
    base = dict(min(sources, key=lambda s: (_shard_index(s), s.order)).manifest)
    for key in ("shard", "shard_plan", "resumed_at", "rows_written", "wall_s", "worker_errors"):
        base.pop(key, None)
    all_complete = all(s.manifest.get("status") == "complete" for s in sources)
    hosts = sorted({str(s.manifest.get("host")) for s in sources})
    manifest = {
        **base,
        "run_id": out.name,
        "host": hosts[0] if len(hosts) == 1 else ",".join(hosts),
        "hosts": hosts,
        "dtypes": sorted({d for s in sources for d in s.manifest.get("dtypes") or []}),
        "planned_points": cov["plan_points"],
        "started_at": min((s.manifest.get("started_at") or "" for s in sources), default=None),
        "ended_at": max((s.manifest.get("ended_at") or "" for s in sources), default=None),
        "merged_at": now_iso(),
        "status": "complete" if cov["complete"] and all_complete else "incomplete",
        "merged_from": [_source_entry(s) for s in sources],
        "calibration_by_source": {s.name: s.manifest.get("calibration") for s in sources},
        "coverage": cov,
        "merge_rule": RULE,
        "duplicates_dropped": len(dropped),
        "merge_forced": problems,
    }
    target.create()
    tmp = target.rows_path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, allow_nan=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target.rows_path)
    target.write_manifest(manifest)
    return Merged(manifest, rows, dropped, problems)


def _shard_index(s: Source) -> int:
    return (s.manifest.get("shard_plan") or {}).get("index") or 0


def _source_entry(s: Source) -> dict[str, Any]:
    return {
        "path": str(s.path),
        "run_id": s.name,
        "shard": s.shard,
        "host": s.manifest.get("host"),
        "gpu_name": s.manifest.get("gpu_name"),
        "gpu_uuid": s.manifest.get("gpu_uuid"),
        "devices": s.manifest.get("devices"),
        "git_commit": s.manifest.get("git_commit"),
        "status": s.manifest.get("status"),
        "rows": len(s.rows),
        "started_at": s.manifest.get("started_at"),
        "ended_at": s.manifest.get("ended_at"),
    }


def run_command(paths: list[Path], out: Path, force: bool, require_complete: bool) -> int:
    """The CLI: 0 merged, 1 merged but incomplete under --require-complete, 2 refused or bad input."""
    from attnbench.console import err, plain
    from attnbench.console import out as con

    try:
        merged = merge(load_sources(paths), out, force)
    except MergeError as e:
        err.print(f"[bold red]error:[/] {plain(e)}", highlight=False, soft_wrap=True)
        return 2
    except OSError as e:  # --out a file, under a file, read-only, a full disk
        err.print(f"[bold red]error:[/] {plain(_os_problem(out, e))}", highlight=False, soft_wrap=True)
        return 2
    for problem in merged.forced:
        err.print(f"[yellow]forced:[/] {plain(problem)}", highlight=False, soft_wrap=True)
    for d in merged.dropped:
        con.print(plain(d.line()), highlight=False, soft_wrap=True)
    cov = merged.manifest["coverage"]
    con.print(plain(f"merged {len(paths)} run(s) into {out}: {cov['points']} points "
                    f"({merged.manifest['duplicates_dropped']} duplicate row(s) dropped by the rule: "
                    f"{RULE})"),
              highlight=False, soft_wrap=True)
    if cov["complete"]:
        con.print(f"[green]complete:[/] every one of the plan's {cov['plan_points']} points is present")
    else:
        parts = []
        if cov["missing_shards"]:
            parts.append("missing shards " + ", ".join(cov["missing_shards"]))
        if cov.get("missing_points"):
            parts.append(f"{cov['missing_points']} of {cov['plan_points']} planned points missing")
        err.print("[yellow]incomplete:[/] " + plain("; ".join(parts) or "the plan could not be checked"),
                  highlight=False, soft_wrap=True)
        if require_complete:
            return 1
    return 0


def _os_problem(out: Path, e: OSError) -> str:
    from attnbench.runio import describe_os_error

    return describe_os_error(e, out, "--out")
