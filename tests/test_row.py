"""The results row (attnbench.row): the committed schema is the generated one, every committed run's
rows fit the table, a CPU sweep writes exactly the defined columns with their types, writers refuse a
column the table lacks, and the sweep's fixed columns equal the golden rows of the base commit."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from attnbench import row as columns
from attnbench.config.sweep_config import parse_config
from attnbench.export import frame
from attnbench.paths import configs_dir
from attnbench.report.load import EXPECTED, NUMERIC
from attnbench.runner.plan import build_plan
from attnbench.runner.results import RunDir, load_run
from attnbench.runner.sweep import run_sweep
from attnbench.sysinfo import environment

ROOT = Path(__file__).resolve().parent.parent
ROWS = ROOT / "tests" / "fixtures" / "rows"
_spec = importlib.util.spec_from_file_location("compare_rows", ROOT / "scripts" / "compare_rows.py")
compare_rows = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_rows)


def test_committed_row_schema_matches_the_code():
    committed = (configs_dir() / "row-schema.json").read_text()
    regenerate = "regenerate: attnbench config row-schema --out configs/row-schema.json"
    assert committed == columns.schema_text(), regenerate


def test_every_column_is_described_once_with_known_kinds():
    assert len(columns.BY_NAME) == len(columns.FIELDS)
    assert all(f.meaning and f.group for f in columns.FIELDS)
    with pytest.raises(ValueError, match="allowed"):
        columns.Field("x", "text", "", "config", "every", "g", "m")
    with pytest.raises(ValueError, match="items"):
        columns.Field("x", "array", "", "config", "every", "g", "m")
    schema = columns.schema()
    assert list(schema["properties"]) == list(columns.NAMES)
    assert set(schema["required"]) == set(columns.names(presence="every"))


def test_the_reports_columns_are_defined_and_its_numbers_are_the_number_columns():
    assert all(c in columns.BY_NAME for c in EXPECTED)
    numbers = tuple(c for c in EXPECTED if columns.BY_NAME[c].type in ("integer", "number"))
    assert numbers == NUMERIC
    assert "throttled" not in NUMERIC and "samples_ms" not in NUMERIC and "latency_ms_p50" in NUMERIC


def _committed_runs() -> list[Path]:
    return sorted(p.parent for p in (ROOT / "results" / "baselines").rglob("results.jsonl"))


def test_every_committed_runs_rows_load_and_fit_the_table():
    runs = _committed_runs()
    assert len(runs) > 10
    for run in runs:
        _, rows = load_run(run)
        assert rows, run
        for r in rows:
            assert columns.problems(r) == [], (run, r["backend"], r["case_id"])


# ---- a CPU sweep ----------------------------------------------------------------------------------

GOLDEN_BACKENDS = compare_rows.GOLDEN_BACKENDS.split(",")
# The host's ceilings only enter measured columns (bw_util, flop_util, compute_bound): given, not
# measured, they save seconds of a busy CPU per sweep.
CEILINGS = {"copy_gbps": 10.0, "matmul_tflops": 0.1}


@pytest.fixture(scope="module")
def tiny_rows(tmp_path_factory) -> list[dict]:
    """The rows of tests/fixtures/rows/tiny.yaml on the golden backends, in this process."""
    if shutil.which("g++") is None:
        pytest.skip("needs g++ (the cpu-paged backend)")
    cfg = parse_config((ROWS / "tiny.yaml").read_text(), "tiny.yaml")
    plan = build_plan(cfg, "cpu", GOLDEN_BACKENDS)
    run = RunDir(tmp_path_factory.mktemp("tiny") / "run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("attnbench.calibrate.calibrate", lambda device: CEILINGS)
        outcome = run_sweep(cfg, plan, run, "cpu", environment("cpu"), isolate=False)
    assert not outcome.interrupted
    return run.rows()


def test_a_cpu_sweeps_rows_hold_exactly_the_defined_columns_with_their_types(tiny_rows):
    statuses = {r["status"] for r in tiny_rows}
    assert statuses == {"ok", "skipped"}
    for r in tiny_rows:
        assert columns.undefined(r) == [], r["backend"]
        assert columns.mistyped(r) == [], r["backend"]
        assert columns.missing(r) == [], (r["backend"], r["status"])
    ok = [r for r in tiny_rows if r["status"] == "ok"]
    paged = [r for r in ok if r["block_size"] is not None]
    assert paged and all(r["kv_blocks_allocated"] > 0 for r in paged)
    # GPU-only columns stay out of CPU rows
    assert not any("sm_clock_mhz_mean" in r or "cuda_graph" in r for r in tiny_rows)


def test_a_cpu_sweep_gives_the_golden_rows_of_the_base_commit(tiny_rows):
    """tests/fixtures/rows/golden.json: the same sweep at 1ac65ae (python scripts/compare_rows.py
    1ac65ae --golden tests/fixtures/rows/golden.json). A change to a row's columns or to a value
    the config fixes fails here; regenerate it only for a change meant to alter rows."""
    golden = json.loads((ROWS / "golden.json").read_text())
    now = compare_rows.golden({(r["case_id"], r["backend"]): r for r in tiny_rows})
    assert [g["point"] for g in now] == [g["point"] for g in golden]
    for g, n in zip(golden, now, strict=True):
        assert n["columns"] == g["columns"], g["point"]
        assert n["values"] == g["values"], g["point"]


def test_export_orders_columns_as_the_row_module_lists_them(tiny_rows):
    rows = [dict(r, plugin_colour="red") for r in tiny_rows]
    cols = list(pd.read_csv(io.StringIO(frame(rows).to_csv(index=False))).columns)
    assert cols[:3] == list(columns.IDENTITY_FIELDS) and cols[-1] == "plugin_colour"
    order = [columns.NAMES.index(c) for c in cols[:-1]]
    assert order == sorted(order)


# ---- writers refuse what the table lacks -----------------------------------------------------------

CONFIG = """
name: t
timing: {max_time_s: 0.01, min_samples: 3, max_samples: 3}
workloads:
  - {name: p, phase: prefill, batch: [1], lengths: ["fixed:8"], q_heads: [1], kv_heads: [1], head_dim: [8],
     dtype: [fp32]}
"""


def _sweep_with_info(tmp_path, monkeypatch, backend: str, info: dict):
    from attnbench.backends import get_backend

    cls = type(get_backend(backend))
    prepare = cls.prepare

    def with_info(self, case, inputs):
        prepared = prepare(self, case, inputs)
        prepared.info.update(info)
        return prepared

    monkeypatch.setattr(cls, "prepare", with_info)
    monkeypatch.setattr("attnbench.calibrate.calibrate", lambda device: CEILINGS)
    cfg = parse_config(CONFIG, "t.yaml")
    run = RunDir(tmp_path / "run")
    run_sweep(cfg, build_plan(cfg, "cpu", [backend]), run, "cpu", environment("cpu"), isolate=False)
    return run.rows()


def test_a_shipped_backends_undefined_column_fails_loudly(tmp_path, monkeypatch):
    assert columns.strict()  # tests/conftest.py
    with pytest.raises(columns.RowError, match="colour: not a column"):
        _sweep_with_info(tmp_path, monkeypatch, "naive", {"colour": "red"})


def test_a_mistyped_value_fails_loudly(tmp_path, monkeypatch):
    with pytest.raises(columns.RowError, match="variant: 3 is not string"):
        _sweep_with_info(tmp_path, monkeypatch, "naive", {"variant": 3})


def test_a_plugin_backend_may_add_its_own_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNBENCH_PLUGINS", "tests.fake_backends")
    import attnbench.backends as b

    monkeypatch.setattr(b, "_loaded", False)
    rows = _sweep_with_info(tmp_path, monkeypatch, "test-good", {"colour": "red"})
    assert rows[0]["status"] == "ok" and rows[0]["colour"] == "red"


def test_without_strict_mode_rows_are_written_as_they_come(monkeypatch):
    monkeypatch.delenv(columns.STRICT_ENV)
    row = {"backend": "naive", "case_id": "c", "colour": "red"}
    assert columns.check(row) is row
    assert columns.problems(row) == ["colour: not a column of the results row"]


# ---- scripts/compare_rows.py ------------------------------------------------------------------------


def test_compare_rows_tells_fixed_columns_from_measured_ones():
    a = {"case_id": "c", "backend": "b", "status": "ok", "flops": 10, "rel_err": 1e-7, "latency_ms_p50": 1.0,
         "samples_ms": [1.0], "plugin": 1}
    assert compare_rows.compare_row(a, dict(a, latency_ms_p50=2.0, samples_ms=[2.0, 2.1], plugin=2)) == []
    assert compare_rows.compare_row(a, dict(a, flops=11)) == ["flops: 10 != 11"]
    assert compare_rows.compare_row(a, dict(a, rel_err=2e-7)) == ["rel_err: 1e-07 != 2e-07"]
    wrong = compare_rows.compare_row(a, dict(a, latency_ms_p50="fast"))
    assert wrong == ["latency_ms_p50: B's 'fast' is not number"]
    b = dict(a)
    del b["samples_ms"]
    assert compare_rows.compare_row(a, b) == ["samples_ms: only in A"]
    diffs, counts = compare_rows.compare({("c", "b"): a, ("d", "b"): a}, {("c", "b"): a})
    assert diffs == ["b d: only in A"] and counts["points"] == 1
