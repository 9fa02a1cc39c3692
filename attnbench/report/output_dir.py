"""Where `attnbench report` writes when --out is not given.

A report beside its run (<run>/report/) is the default, except for committed reference runs
(results/baselines/...): regenerating a report there would rewrite tracked files, so it goes to
results/reports/<baseline path>/ unless --in-place asks for the baseline's own folder.
"""

from __future__ import annotations

from pathlib import Path

BASELINES = "baselines"
REPORTS_DIR = Path("results") / "reports"


def baseline_part(run: Path) -> Path | None:
    """The run's path below a `baselines` folder (h100, multi-gpu-h200x2/ci-gate, ...), else None."""
    parts = run.resolve().parts
    if BASELINES not in parts:
        return None
    below = parts[len(parts) - parts[::-1].index(BASELINES):]
    return Path(*below) if below else None


def default_out(run: Path, in_place: bool, reports_dir: Path = REPORTS_DIR) -> Path:
    part = None if in_place else baseline_part(run)
    return run / "report" if part is None else reports_dir / part
