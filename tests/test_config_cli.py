"""Config surface of the CLI: the JSON Schema, block_order and its alias, --set, --workload,
configs by name, and `sweep --backend`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from attnbench import paths
from attnbench.cli import app
from attnbench.config.overrides import edited_text, load_sweep_config
from attnbench.config.schema import schema, schema_text, workload_keys
from attnbench.config.sweep_config import ConfigError, parse_config
from attnbench.paths import configs_dir

runner = CliRunner()
SMOKE = configs_dir() / "smoke.yaml"


def _errors(value: Any, s: dict[str, Any], where: str = "$") -> list[str]:
    """A small JSON Schema checker for the keywords our schema uses (no jsonschema dependency)."""
    errs: list[str] = []
    if "oneOf" in s:
        matches = [sub for sub in s["oneOf"] if not _errors(value, sub, where)]
        return [] if len(matches) == 1 else [f"{where}: matches {len(matches)} of oneOf"]
    kind = s.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int,
             "number": (int, float)}
    if kind and (not isinstance(value, types[kind]) or (kind in ("integer", "number") and
                                                           isinstance(value, bool))):
        return [f"{where}: not {kind}"]
    if "enum" in s and value not in s["enum"]:
        errs.append(f"{where}: {value!r} not in enum")
    if "minimum" in s and value < s["minimum"]:
        errs.append(f"{where}: below minimum")
    if "exclusiveMinimum" in s and value <= s["exclusiveMinimum"]:
        errs.append(f"{where}: not above exclusiveMinimum")
    if "minLength" in s and len(value) < s["minLength"]:
        errs.append(f"{where}: too short")
    if "pattern" in s and not re.search(s["pattern"], value):
        errs.append(f"{where}: pattern")
    if kind == "array":
        if len(value) < s.get("minItems", 0):
            errs.append(f"{where}: too few items")
        for i, item in enumerate(value):
            errs += _errors(item, s.get("items", {}), f"{where}[{i}]")
    if kind == "object":
        errs += [f"{where}: missing {k}" for k in s.get("required", []) if k not in value]
        if len(value) < s.get("minProperties", 0):
            errs.append(f"{where}: too few properties")
        for k, v in value.items():
            if k in s.get("properties", {}):
                errs += _errors(v, s["properties"][k], f"{where}.{k}")
            elif s.get("additionalProperties") is False:
                errs.append(f"{where}: unknown key {k}")
    return errs


def test_committed_schema_matches_the_code():
    committed = (configs_dir() / "schema.json").read_text()
    assert committed == schema_text(), "regenerate: attnbench config schema --out configs/schema.json"


def test_schema_lists_exactly_the_keys_the_loader_takes():
    from attnbench.config.sweep_config import _TIMING_KEYS, _TOP_KEYS

    assert set(schema()["properties"]) == _TOP_KEYS
    assert set(schema()["properties"]["timing"]["properties"]) == set(_TIMING_KEYS)
    wl = schema()["properties"]["workloads"]["items"]["properties"]
    assert set(wl) == workload_keys() | {"lengths"}
    assert wl["kv_layout"]["deprecated"] is True


@pytest.mark.parametrize("name", paths.shipped_configs())
def test_every_shipped_config_satisfies_the_schema(name):
    raw = yaml.safe_load((configs_dir() / f"{name}.yaml").read_text())
    assert _errors(raw, schema()) == []


@pytest.mark.parametrize("edit", [
    lambda r: r["workloads"][0].update(head_dim="sixteen"),
    lambda r: r["workloads"][0].update(colour="red"),
    lambda r: r.update(timing={"cuda_graph": "yes"}),
    lambda r: r["workloads"][0].update(block_order=["diagonal"]),
    lambda r: r.pop("name"),
])
def test_schema_rejects_what_the_loader_rejects(edit):
    raw = yaml.safe_load(SMOKE.read_text())
    edit(raw)
    assert _errors(raw, schema())
    with pytest.raises(ConfigError):
        parse_config(yaml.safe_dump(raw))


def test_config_schema_command_prints_json():
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0 and json.loads(result.stdout)["title"] == "attnbench sweep config"


WL = ("name: t\nworkloads:\n  - name: w\n    phase: decode\n    lengths: fixed:64\n    q_heads: 4\n"
      "    kv_heads: 4\n    head_dim: 16\n    block_size: [16]\n")


def test_block_order_and_its_deprecated_alias_give_the_same_cases():
    new = parse_config(WL + "    block_order: [shuffled, contiguous]\n")
    old = parse_config(WL + "    kv_layout: [shuffled, contiguous]\n")
    assert new.workloads[0].block_order == old.workloads[0].block_order == ("shuffled", "contiguous")
    from attnbench.config.sweep_config import expand_workload

    ids = lambda cfg: [c.case_id for c in expand_workload(cfg.workloads[0], 0)]  # noqa: E731
    assert ids(new) == ids(old) and any(i.endswith("bs16-contiguous") for i in ids(new))
    with pytest.raises(ConfigError, match="only one of block_order"):
        parse_config(WL + "    block_order: [shuffled]\n    kv_layout: [shuffled]\n")


def test_committed_baseline_case_ids_unchanged_by_the_rename():
    root = Path(__file__).resolve().parent.parent / "results" / "baselines" / "h100"
    manifest = json.loads((root / "manifest.json").read_text())
    cfg = parse_config(manifest["config_text"])
    assert cfg.hash == manifest["config_hash"]
    from attnbench.config.sweep_config import expand_workload

    planned = {c.case_id for w in cfg.workloads for c in expand_workload(w, cfg.seed)}
    rows = {json.loads(line)["case_id"] for line in (root / "results.jsonl").read_text().splitlines()}
    assert rows <= planned


def test_set_overrides_are_validated_like_the_yaml(tmp_path):
    cfg = load_sweep_config(SMOKE, ["timing.cuda_graph=true", "workloads.decode.batch=[1,5]", "seed=7"])
    assert cfg.timing["cuda_graph"] is True and cfg.seed == 7
    assert next(w for w in cfg.workloads if w.name == "decode").batch == (1, 5)
    assert cfg.hash != load_sweep_config(SMOKE).hash  # another config, and the gate will say so
    assert load_sweep_config(SMOKE).text == SMOKE.read_text()  # no overrides: the file as it is
    with pytest.raises(ConfigError, match="timing.min_samples: bad value 0"):
        load_sweep_config(SMOKE, ["timing.min_samples=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_sweep_config(SMOKE, ["cuda_graph"])
    cfg = load_sweep_config(SMOKE, ["workloads.*.dtype=fp16"])
    assert {w.dtype for w in cfg.workloads} == {("fp16",)}


def test_workload_filter(tmp_path):
    cfg = load_sweep_config(SMOKE, workloads=["decode"])
    assert [w.name for w in cfg.workloads] == ["decode"]
    with pytest.raises(ConfigError, match="no such workload; the config has: prefill"):
        edited_text(SMOKE.read_text(), "smoke", [], ["nope"])


def test_sweep_cli_set_workload_backend_and_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `smoke` is no file here: found among the shipped configs
    result = runner.invoke(app, ["sweep", "smoke", "--dry-run", "--device", "cpu", "--workload", "decode",
                                 "--backend", "naive", "--set", "workloads.decode.batch=[3]"])
    assert result.exit_code == 0, result.output
    assert "sdpa-math" not in result.output and "│ decode   │ decode │ 3 " in result.output
    bad = runner.invoke(app, ["sweep", "smoke", "--dry-run", "--device", "cpu", "--set",
                              "workloads.decode.batch=[0]"])
    assert bad.exit_code == 2 and "batch: bad value 0" in bad.output and len(bad.output.splitlines()) == 1
    missing = runner.invoke(app, ["sweep", "h1000", "--dry-run"])
    shipped = "shipped configs: a100, ci-gate, h100, h200, h200-fp8, smoke"
    assert missing.exit_code == 2 and shipped in missing.output


def test_find_config_from_an_installed_wheel_layout(tmp_path, monkeypatch):
    shipped = tmp_path / "site" / "attnbench_configs"
    shipped.mkdir(parents=True)
    (shipped / "h100.yaml").write_text("name: h100\nworkloads: []\n")
    monkeypatch.setattr(paths, "configs_dir", lambda: shipped)
    monkeypatch.chdir(tmp_path)
    assert paths.find_config("h100") == shipped / "h100.yaml"
    assert paths.find_config("h100.yaml") == shipped / "h100.yaml"
    assert paths.find_config("other/h100.yaml") == Path("other/h100.yaml")
    assert paths.shipped_configs() == ["h100"]
