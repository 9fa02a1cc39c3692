"""Run directories: manifest.json plus results.jsonl, one JSON row per (case, backend).

Rows are appended and flushed (and fsynced) as each point finishes, so an interrupted sweep loses
nothing and --resume continues it. A row holds the case columns (Case.describe()), the backend
columns, `status` (ok | skipped | failed | incorrect) with its `reason`, and measures with units in
their names: latency_ms_p50, latency_ms_p10, latency_ms_p90, latency_ms_mean, samples_ms, tflops,
hbm_gbps, bw_util, flop_util, flops, min_hbm_bytes, peak_mem_bytes, working_mem_bytes, rel_err,
kv_bytes_allocated, kv_bytes_used, padding_waste, stop_reason, telemetry fields (sm_clock_mhz_*,
power_w_*, temp_c_max, throttled, throttle_reasons).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

STATUSES = ("ok", "skipped", "failed", "incorrect")
MANIFEST = "manifest.json"
ROWS = "results.jsonl"


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def new_run_id(config_name: str, device_tag: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{config_name}-{device_tag}")
    return f"{stamp}-{safe}"


def point_key(row: dict[str, Any]) -> tuple[str, str]:
    """The identity of a point: (case_id, backend). The gate and --resume match on it."""
    return row["case_id"], row["backend"]


# Which run a row came from, stamped on every row written so that rows of several runs concatenated
# (pandas, a dashboard) keep it; `attnbench export` fills them from the manifest for older runs.
IDENTITY_FIELDS = ("run_id", "gpu_name", "git_commit")


def run_identity(manifest: dict[str, Any], fallback_run_id: str = "") -> dict[str, Any]:
    """The identity columns of a run's rows, from its manifest (gpu_name None on a CPU)."""
    return {
        "run_id": manifest.get("run_id") or fallback_run_id,
        "gpu_name": manifest.get("gpu_name"),
        "git_commit": manifest.get("git_commit"),
    }


@dataclass
class RunDir:
    path: Path
    identity: dict[str, Any] | None = None  # set when the manifest is written; stamped on rows

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def rows_path(self) -> Path:
        return self.path / ROWS

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.manifest_path)
        self.identity = run_identity(manifest, self.path.name)

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text())

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.read_manifest() if self.manifest_path.exists() else {}
        manifest.update(fields)
        self.write_manifest(manifest)

    def append_row(self, row: dict[str, Any]) -> None:
        """Append one row as a single write, flushed to disk before returning."""
        if self.identity is None and self.manifest_path.exists():
            self.identity = run_identity(self.read_manifest(), self.path.name)
        row = {**(self.identity or {}), **row}  # a row's own fields win (a merged run keeps its sources')
        line = json.dumps(row, default=_json_default, allow_nan=False) + "\n"
        with open(self.rows_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[dict[str, Any]]:
        return load_rows(self.rows_path)

    def done_keys(self) -> set[tuple[str, str]]:
        return {point_key(r) for r in self.rows()}


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.jsonl; a torn last line (a crash mid-write) is skipped, not fatal."""
    rows: list[dict[str, Any]] = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def load_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, rows) of a run directory; raises FileNotFoundError naming what is missing."""
    run = RunDir(Path(path))
    if not run.manifest_path.exists():
        raise FileNotFoundError(f"{run.path}: no {MANIFEST} (not a run directory)")
    return run.read_manifest(), run.rows()


def rows_frame(rows: list[dict[str, Any]]):
    """The rows as a pandas DataFrame (pandas imported lazily: the runner does not need it)."""
    import pandas as pd

    return pd.DataFrame(rows)


def latest_run(results_dir: Path) -> Path | None:
    """The newest run directory under results_dir (by manifest start time, then name)."""
    runs = [p for p in results_dir.iterdir() if (p / MANIFEST).exists()] if results_dir.exists() else []
    if not runs:
        return None

    def started(p: Path) -> str:
        try:
            return json.loads((p / MANIFEST).read_text()).get("started_at", "")
        except (OSError, json.JSONDecodeError):
            return ""

    return max(runs, key=lambda p: (started(p), p.name))


def host_name() -> str:
    return socket.gethostname()
