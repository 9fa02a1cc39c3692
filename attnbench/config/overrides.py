"""Changing a sweep from the command line: `--set key=value` overrides and `--workload` filters.

Both edit the config's YAML mapping before it is validated, so an override is checked exactly like
the same key written in the file (one-line ConfigError naming the key and what is allowed), and the
run's manifest records the config text that actually ran (its hash changes with it: a run with
overrides is not the plain config's run, and the gate says so).

Keys are dotted paths into the YAML:
    --set seed=3                      --set timing.cuda_graph=true
    --set backends=[naive,sdpa-math]  --set workloads.decode-main.batch=[1,8]
    --set 'workloads.*.dtype=fp16'    (every workload)
Values are YAML scalars or flow lists (true, 16, 0.5, fixed:4096, [1, 8]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from attnbench.config.sweep_config import ConfigError, SweepConfig, parse_config, read_config_text


def parse_set(item: str) -> tuple[list[str], Any]:
    """'a.b=value' -> (['a', 'b'], value parsed as YAML)."""
    key, sep, text = item.partition("=")
    path = key.strip().split(".")
    if not sep or not key.strip() or any(not part for part in path):
        raise ConfigError(
            f"--set {item!r}: expected KEY=VALUE with a dotted KEY, e.g. timing.cuda_graph=true"
        )
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {item!r}: the value {text!r} is not a YAML scalar or [list]") from None
    if value is None:
        raise ConfigError(f"--set {item!r}: give a value after '='")
    return path, value


def _workloads(raw: dict[str, Any], name: str, item: str) -> list[dict[str, Any]]:
    workloads = [w for w in raw.get("workloads") or [] if isinstance(w, dict)]
    chosen = workloads if name == "*" else [w for w in workloads if w.get("name") == name]
    if not chosen:
        names = ", ".join(str(w.get("name")) for w in workloads)
        raise ConfigError(f"--set {item!r}: no workload named {name!r}; the config has: {names} (or *)")
    return chosen


def apply_set(raw: dict[str, Any], item: str) -> None:
    path, value = parse_set(item)
    if path[0] == "workloads":
        if len(path) != 3:
            raise ConfigError(f"--set {item!r}: workload keys are workloads.NAME.KEY (NAME may be *)")
        for wl in _workloads(raw, path[1], item):
            wl[path[2]] = value
        return
    target = raw
    for part in path[:-1]:
        nested = target.get(part)
        if nested is None:
            nested = target[part] = {}
        if not isinstance(nested, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a mapping in this config")
        target = nested
    target[path[-1]] = value


def filter_workloads(raw: dict[str, Any], names: list[str], source: str) -> None:
    have = [w.get("name") for w in raw.get("workloads") or [] if isinstance(w, dict)]
    unknown = [n for n in names if n not in have]
    if unknown:
        listed = ", ".join(map(str, have))
        raise ConfigError(f"{source}: --workload {unknown[0]!r}: no such workload; the config has: {listed}")
    raw["workloads"] = [w for w in raw["workloads"] if isinstance(w, dict) and w.get("name") in names]


def edited_text(text: str, source: str, sets: list[str], workloads: list[str]) -> str:
    """The config text with the overrides and filter applied (unchanged when there are none)."""
    if not sets and not workloads:
        return text
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # parse_config reports the malformed YAML with its line
    if not isinstance(raw, dict):
        return text
    if workloads:
        filter_workloads(raw, workloads, source)
    for item in sets:
        apply_set(raw, item)
    return yaml.safe_dump(raw, sort_keys=False, default_flow_style=None)


def load_sweep_config(
    path: Path, sets: list[str] | None = None, workloads: list[str] | None = None,
    known_backends: list[str] | None = None,
) -> SweepConfig:
    """Load a config file with --set overrides and a --workload filter, validated as one config."""
    raw = read_config_text(path)
    text = edited_text(raw, str(path), list(sets or []), list(workloads or []))
    source = str(path) + (" (with --set/--workload)" if sets or workloads else "")
    return parse_config(text, source, known_backends)
