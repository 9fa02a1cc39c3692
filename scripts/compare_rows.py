"""The same rows from the same config at two revisions: a CPU sweep at each, compared column by column.

    python scripts/compare_rows.py REV_A REV_B [--config C] [--workload W ...] [--backends a,b]
    python scripts/compare_rows.py REV --golden FILE [--config C] [--backends a,b]

Each revision is exported with `git archive REV | tar -x` into a temporary folder and runs
`python -m attnbench sweep CONFIG --out DIR --device cpu` there (PYTHONPATH = that folder), with
this interpreter. The config is read from this tree (default tests/fixtures/rows/tiny.yaml, a few
seconds of points), so both revisions run the same one. The rows are then matched by point
(case_id, backend) and compared by attnbench.row's classification of the columns:
- varies "config" or "host" (case columns, backend, status and reason, the FLOP and byte models,
  the paged pool's counts, the correctness check's errors on the seeded inputs, the allocator's
  bytes): equal values;
- varies "run" (times, samples, telemetry, run ids, commits, stamps): present in both rows or in
  neither, each of its declared type;
- a column attnbench.row does not define (a plugin's): present in both or in neither.
Exit 0 when every point matches, 1 with the differences listed otherwise, 2 when a sweep could
not run. --keep DIR keeps the two exported trees and runs there.

With --golden FILE, one revision's rows are written as golden rows instead: per point its columns
and its "config" values (those equal on any host), what tests/test_row.py compares a fresh sweep of
tests/fixtures/rows/tiny.yaml with (generated at the base commit 1ac65ae on GOLDEN_BACKENDS:
`python scripts/compare_rows.py 1ac65ae --golden tests/fixtures/rows/golden.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnbench import row as columns  # noqa: E402 - after the path: this tree's row module

DEFAULT_CONFIG = ROOT / "tests" / "fixtures" / "rows" / "tiny.yaml"
# Backends whose rows are the same on every host with a C++ compiler: the CPU ones, and two that run
# on CUDA only (their skip rows); not flash-attn or flashinfer, whose reasons depend on what is installed.
GOLDEN_BACKENDS = "naive,sdpa-math,sdpa-flash-cpu,cpu-paged,sdpa-flash,cuda-paged"
Row = dict[str, Any]


def export_tree(rev: str, dest: Path) -> str:
    """The revision's files under dest; returns its full commit hash."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit


def sweep_at(tree: Path, config: Path, out: Path, extra: list[str]) -> tuple[int, str]:
    """Run the tree's own sweep on CPU; (exit code, its output's tail)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("ATTNBENCH_PLUGINS", None)
    cmd = [sys.executable, "-m", "attnbench", "sweep", str(config), "--out", str(out), "--device", "cpu",
           "--allow-failures", *extra]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    return done.returncode, (done.stdout + done.stderr)[-2000:]


def load(run: Path) -> dict[tuple[str, str], Row]:
    rows: dict[tuple[str, str], Row] = {}
    for line in (run / "results.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[tuple(r[k] for k in columns.POINT_KEY)] = r  # type: ignore[index]
    return rows


def golden(rows: dict[tuple[str, str], Row]) -> list[Row]:
    """Per point, in point order: its key, its columns and its config values."""
    return [{"point": list(key), "columns": sorted(r), "values": columns.fixed(r)}
            for key, r in sorted(rows.items())]


def golden_text(rows: dict[tuple[str, str], Row]) -> str:
    """A JSON list, one point a line (a change shows as the lines of the points it changed)."""
    return "[\n" + ",\n".join(json.dumps(g, sort_keys=True) for g in golden(rows)) + "\n]\n"


def compare_row(a: Row, b: Row) -> list[str]:
    """The differences between two rows of one point, by the columns' classification."""
    out = []
    for name in columns.column_order(list(dict.fromkeys([*a, *b]))):
        if (name in a) != (name in b):
            out.append(f"{name}: only in {'A' if name in a else 'B'}")
            continue
        f = columns.BY_NAME.get(name)
        if f is None:
            continue  # a column attnbench.row does not define: presence only
        if f.varies == "run":
            out += [f"{name}: {side}'s {r[name]!r:.60} is not {f.type}" for side, r in (("A", a), ("B", b))
                    if not f.accepts(r[name])]
        elif a[name] != b[name]:
            out.append(f"{name}: {a[name]!r:.80} != {b[name]!r:.80}")
    return out


def compare(rows_a: dict[tuple[str, str], Row], rows_b: dict[tuple[str, str], Row]) -> tuple[list[str], dict]:
    """(differences, counts) of two runs' rows."""
    diffs = [f"{k[1]} {k[0]}: only in A" for k in rows_a if k not in rows_b]
    diffs += [f"{k[1]} {k[0]}: only in B" for k in rows_b if k not in rows_a]
    equal = measured = 0
    for key in (k for k in rows_a if k in rows_b):
        a, b = rows_a[key], rows_b[key]
        diffs += [f"{key[1]} {key[0]}: {d}" for d in compare_row(a, b)]
        for name in set(a) & set(b):
            f = columns.BY_NAME.get(name)
            if f is not None and f.varies == "run":
                measured += 1
            elif f is not None:
                equal += 1
    statuses: dict[str, int] = {}
    for r in rows_a.values():
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    counts = {"points": len(set(rows_a) & set(rows_b)), "statuses": statuses, "values_compared": equal,
              "measured_checked": measured}
    return diffs, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("revs", nargs="+", metavar="REV", help="two revisions (one with --golden)")
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="sweep YAML (read from this tree)")
    ap.add_argument("--workload", "-w", action="append", default=[], help="only this workload (repeatable)")
    ap.add_argument("--backends", help="comma-separated backends (default: the config's; with --golden "
                    "GOLDEN_BACKENDS)")
    ap.add_argument("--golden", type=Path, help="write REV's golden rows to this file")
    ap.add_argument("--keep", type=Path, help="keep the exported trees and runs in this new folder")
    a = ap.parse_args(argv)
    if len(a.revs) != (1 if a.golden else 2):
        ap.error("give two revisions, or one with --golden")
    config = a.config.resolve()
    extra = [x for w in a.workload for x in ("--workload", w)]
    backends = a.backends or (GOLDEN_BACKENDS if a.golden else None)
    extra += ["--backends", backends] if backends else []
    work = a.keep.resolve() if a.keep else Path(tempfile.mkdtemp(prefix="compare-rows-"))
    runs = []
    try:
        for side, rev in zip("AB", a.revs, strict=False):
            tree, run = work / f"{side.lower()}-tree", work / f"{side.lower()}-run"
            commit = export_tree(rev, tree)
            code, tail = sweep_at(tree, config, run, extra)
            if not (run / "results.jsonl").exists():
                print(f"{side} = {rev} ({commit[:9]}): the sweep wrote no rows (exit {code}):\n{tail}")
                return 2
            print(f"{side} = {rev} ({commit[:9]}): sweep exit {code}, rows in {run}/results.jsonl")
            runs.append(load(run))
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.golden:
        a.golden.write_text(golden_text(runs[0]))
        print(f"wrote {len(runs[0])} golden rows to {a.golden}")
        return 0
    diffs, counts = compare(*runs)
    shown = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    print(f"config {shown}: {counts['points']} points in both, statuses {counts['statuses']}")
    print(f"{counts['values_compared']} config/host values compared, "
          f"{counts['measured_checked']} measured values checked for presence and type")
    if diffs:
        print(f"DIFFERENT: {len(diffs)} difference(s)")
        for d in diffs:
            print("  " + d)
        return 1
    print("SAME: every point has the same rows (config and host columns equal, measured ones present)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
