"""merge_plan.rebuilt_keys: an old run's planned points rebuilt without backends match the planner's."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.config.sweep_config import parse_config
from attnbench.runner.merge_plan import rebuilt_keys
from attnbench.runner.plan import build_plan
from attnbench.runner.results import load_run

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"


def _planner_keys(manifest: dict) -> set[tuple[str, str]]:
    cfg = parse_config(manifest["config_text"], manifest.get("config_path") or "<manifest>")
    plan = build_plan(cfg, "cpu", manifest.get("backends") or None)
    return {(pc.case.case_id, b) for pc in plan.cases for b in [*pc.run, *pc.skip]}


@pytest.mark.parametrize("run", ["h100", "ci-gate-h100"])
def test_rebuilt_keys_equal_the_planners_on_committed_runs(run):
    manifest, rows = load_run(BASELINES / run)
    assert "planned_keys" not in manifest  # a run from before the keys were recorded
    keys = rebuilt_keys(manifest, rows, manifest["planned_points"])
    assert keys == _planner_keys(manifest)


def test_a_kv_form_without_rows_gives_up_instead_of_shrinking_the_plan():
    manifest, rows = load_run(BASELINES / "h100")
    # flash-attn runs contiguous and paged cases: lose all its paged rows
    kept = [r for r in rows if not (r.get("backend") == "flash-attn" and r.get("block_size") is not None)]
    assert len(kept) < len(rows)
    assert rebuilt_keys(manifest, kept, manifest["planned_points"]) is None


def test_no_recorded_count_or_config_gives_none():
    manifest, rows = load_run(BASELINES / "ci-gate-h100")
    assert rebuilt_keys(manifest, rows, None) is None
    assert rebuilt_keys({**manifest, "config_text": "workloads: [oops"}, rows, 16) is None
