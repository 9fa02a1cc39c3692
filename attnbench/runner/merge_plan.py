"""The planned points of a run that did not record them (runs written before `sweep` stored
`planned_keys`), rebuilt without loading any backend, so `merge` never imports torch.

A plan's point is a (case, backend) pair that the backend wants (its KV form, paged or contiguous,
matches the case) and the config does not exclude; unavailable and unsupported points are planned
too (they are written as skipped rows). Wanting depends only on a backend's `kv_inputs`, and
exclusion on its `family` and `impl`: those are read off the rows the backend wrote instead of off
its class. Reading them off rows can only miss points (a KV form with no row left), never invent
one, so the rebuilt set is accepted only when its size equals the plan's point count recorded in
the manifest; otherwise the caller falls back to counting.
"""

from __future__ import annotations

from typing import Any


def _backend_traits(rows: list[dict[str, Any]], paged_cases: dict[str, bool]) -> dict[str, dict[str, Any]]:
    """Per backend name: the KV forms it ran in (from its rows' cases), its family and impl."""
    traits: dict[str, dict[str, Any]] = {}
    for row in rows:
        name, case_id = row.get("backend"), row.get("case_id")
        if not isinstance(name, str) or case_id not in paged_cases:
            continue
        t = traits.setdefault(name, {"forms": set(), "family": row.get("family"), "impl": row.get("impl")})
        t["forms"].add("paged" if paged_cases[case_id] else "contiguous")
    return traits


def rebuilt_keys(manifest: dict[str, Any], rows: list[dict[str, Any]],
                 plan_points: int | None) -> set[tuple[str, str]] | None:
    """The run's planned (case_id, backend) points from its config text and rows; None when the
    config cannot be read here or the rebuilt set does not have the recorded `plan_points`."""
    from attnbench.config.sweep_config import excluded, expand_workload, parse_config

    if not isinstance(plan_points, int) or not isinstance(manifest.get("config_text"), str):
        return None
    try:
        cfg = parse_config(manifest["config_text"], manifest.get("config_path") or "<manifest>")
        cases = [(wl, case) for wl in cfg.workloads for case in expand_workload(wl, cfg.seed)]
    except Exception:  # noqa: BLE001 - a config this version cannot read: counts only
        return None
    traits = _backend_traits(rows, {case.case_id: case.paged for _, case in cases})
    names = manifest.get("backends") or list(cfg.backends) or sorted(traits)
    keys: set[tuple[str, str]] = set()
    for wl, case in cases:
        columns = case.describe()
        for name in names:
            t = traits.get(name)
            if t is None or (wl.backends and name not in wl.backends):
                continue
            if ("paged" if case.paged else "contiguous") not in t["forms"]:
                continue
            if excluded(cfg.exclude, {**columns, "backend": name, "family": t["family"], "impl": t["impl"]}):
                continue
            keys.add((case.case_id, name))
    return keys if len(keys) == plan_points else None
