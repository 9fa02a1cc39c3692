"""The results row: every column of results.jsonl, its JSON type, unit, meaning and who writes it.

One row per point (case, backend) of a run. The code that builds rows (attnbench.point, the runner's
worker and sweep, attnbench.profile) writes only the columns listed here; the readers
(attnbench.runner.results, attnbench.report.load, attnbench.export) take their names, order and
units from here, and configs/row-schema.json is the JSON Schema generated from this table
(`attnbench config row-schema`; a test keeps the committed copy equal).

Each column says how much it can vary (`varies`), which is what a comparison of two runs of one
config needs (scripts/compare_rows.py, tests/test_row.py):
- "config": a function of the config, the code and the backends the host has: case columns, the
  backend, status and reason, the FLOP and byte models, the paged pool's counts. Equal in any two
  runs of one config with the same backends available.
- "host": depends on the machine or its software as well (the kernels' floating-point errors, a
  thread count, a GPU's name or SM count, a library version): equal between runs on one machine.
- "run": measured, different in every run: times, samples, telemetry, stamps, run ids, commits.

`presence` says where a column is found in rows this code writes: "every" row, every "ok" row of a
sweep (on any device), or "some" (a device, a backend, a paged case, a profile...). Rows of older
runs may lack columns added since (window, softcap, alibi and pattern arrived with the pattern
axes; run_id, gpu_name and git_commit with row identity; kv_dtype and kv_scale are written only
for a quantised KV cache, so a row without them has K/V in its dtype) and may hold `retired` ones:
readers accept both. A plugin backend's Prepared.info may add columns of its own (docs/plugins.md); only
the shipped backends are held to this table.

The row is three modules: attnbench.row_field (what a column is: Field and its type check),
attnbench.row_columns (the table itself) and this one, the public face: it re-exports both, looks
columns up, checks rows and generates the JSON Schema. Everyone imports attnbench.row. Torch-free:
the report, the gate and export import it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from attnbench.row_columns import (
    ACHIEVED,
    BACKEND_INFO,
    BY_NAME,
    CASE,
    CHECK,
    FIELDS,
    IDENTITY,
    IDENTITY_FIELDS,
    MEMORY,
    NAMES,
    POINT,
    POINT_KEY,
    POOL,
    PROFILE,
    RETIRED,
    RUN_COMMAND,
    STATUSES,
    TELEMETRY,
    THERMAL,
    TIMING,
    WORKER,
)
from attnbench.row_field import JSON_TYPES, PRESENCE, VARIES, Field

__all__ = [
    # the column type (row_field) and the table (row_columns)
    "Field", "JSON_TYPES", "PRESENCE", "VARIES", "STATUSES",
    "IDENTITY", "CASE", "POINT", "MEMORY", "CHECK", "POOL", "BACKEND_INFO", "TIMING", "THERMAL",
    "ACHIEVED", "TELEMETRY", "WORKER", "PROFILE", "RUN_COMMAND", "RETIRED",
    "FIELDS", "BY_NAME", "NAMES", "IDENTITY_FIELDS", "POINT_KEY",
    # defined here: look-ups, checking, the schema
    "field", "names", "unit", "fixed", "column_order",
    "STRICT_ENV", "RowError", "undefined", "mistyped", "missing", "problems", "strict", "check",
    "schema", "schema_text",
]

# Set to 1 (the test suite does) and the writers raise RowError for a column this module does not
# define or a value of another type than it declares; unset, rows are written as they come.
STRICT_ENV = "ATTNBENCH_STRICT_ROWS"


def field(name: str) -> Field:
    return BY_NAME[name]


def names(varies: str | None = None, presence: str | None = None) -> tuple[str, ...]:
    """Column names, in table order, filtered by how they vary and where they are found."""
    return tuple(f.name for f in FIELDS
                 if (varies is None or f.varies == varies) and (presence is None or f.presence == presence))


def unit(name: str) -> str:
    return BY_NAME[name].unit


def fixed(row: dict[str, Any], varies: tuple[str, ...] = ("config",)) -> dict[str, Any]:
    """The row's columns of these classes (by default those a config fixes on any host): what two
    runs of one config must agree on (scripts/compare_rows.py, the golden rows of tests/test_row.py)."""
    return {k: v for k, v in row.items() if k in BY_NAME and BY_NAME[k].varies in varies}


def column_order(columns: list[str]) -> list[str]:
    """columns in table order: the defined ones as listed here, then any others as they came."""
    known = set(columns) & BY_NAME.keys()
    return [n for n in NAMES if n in known] + [c for c in columns if c not in BY_NAME]


# ---- checking a row ----------------------------------------------------------------------------


class RowError(ValueError):
    """A row with a column this module does not define or a value of another type; str() lists them."""


def undefined(row: dict[str, Any]) -> list[str]:
    """The row's columns this module does not define."""
    return [k for k in row if k not in BY_NAME]


def mistyped(row: dict[str, Any]) -> list[str]:
    """'name: value' for each defined column whose value is not of its declared type."""
    return [f"{k}: {v!r:.60} is not {BY_NAME[k].type}{' or null' if BY_NAME[k].nullable else ''}"
            for k, v in row.items() if k in BY_NAME and not BY_NAME[k].accepts(v)]


def missing(row: dict[str, Any]) -> list[str]:
    """The columns every written row has (and every ok sweep row) that this one lacks."""
    wanted = ("every", "ok") if row.get("status") == "ok" else ("every",)
    return [f.name for f in FIELDS if f.presence in wanted and f.name not in row]


def problems(row: dict[str, Any], extra_ok: bool = False) -> list[str]:
    """What is wrong with a row as written: undefined columns (unless extra_ok: a plugin backend's
    own) and mistyped values."""
    out = [] if extra_ok else [f"{k}: not a column of the results row" for k in undefined(row)]
    return out + mistyped(row)


def strict() -> bool:
    return os.environ.get(STRICT_ENV) == "1"


def check(row: dict[str, Any], extra_ok: bool = False) -> dict[str, Any]:
    """The row, after raising RowError for its problems when strict() (the test suite)."""
    if strict():
        found = problems(row, extra_ok)
        if found:
            where = f"{row.get('backend')} {row.get('case_id')}"
            raise RowError(f"results row of {where}: " + "; ".join(found))
    return row


# ---- the JSON Schema ----------------------------------------------------------------------------


def schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of one line of results.jsonl as this code writes it."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "attnbench results row",
        "description": "one line of a run's results.jsonl: one point (case_id, backend); generated "
                       "from attnbench/row.py. Rows of older runs may lack columns; a plugin backend "
                       "may add its own. x-unit: the column's unit; x-varies: config (equal in two runs "
                       "of one config), host (equal on one machine) or run (measured); x-presence: in "
                       "every row, every ok row of a sweep, or some.",
        "type": "object",
        "required": [f.name for f in FIELDS if f.presence == "every"],
        "properties": {f.name: f.schema() for f in FIELDS},
        "additionalProperties": True,
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"
