"""Run directories: manifest.json plus results.jsonl, one JSON row per (case, backend).

Rows are appended and flushed (and fsynced) as each point finishes, so an interrupted sweep loses
nothing and --resume continues it. What a row holds, column by column (names, JSON types, units,
meanings, which columns are measured), is attnbench.row; its JSON Schema is configs/row-schema.json.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from attnbench.row import POINT_KEY, field

MANIFEST = "manifest.json"
ROWS = "results.jsonl"
TORN = "results.torn.jsonl"  # torn last lines moved aside by --resume (kept, never deleted)


def now_iso(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def new_run_id(config_name: str, device_tag: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in f"{config_name}-{device_tag}")
    return f"{stamp}-{safe}"


class RunError(ValueError):
    """A run directory whose manifest.json cannot be read; str() names the file and the problem."""


def point_key(row: dict[str, Any]) -> tuple[str, str]:
    """The identity of a point: (case_id, backend). The gate and --resume match on it."""
    case_id, backend = POINT_KEY
    return row[case_id], row[backend]


def run_identity(manifest: dict[str, Any], fallback_run_id: str = "") -> dict[str, Any]:
    """The identity columns of a run's rows (attnbench.row.IDENTITY_FIELDS), from its manifest
    (gpu_name None on a CPU): stamped on every row written so that rows of several runs
    concatenated (pandas, a dashboard) keep them; `attnbench export` fills them in for older runs."""
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
        # strict JSON (a NaN or inf becomes null): every reader, not only Python's, must parse it
        text = json.dumps(finite(manifest), indent=2, sort_keys=True, default=str, allow_nan=False)
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.manifest_path)
        self.identity = run_identity(manifest, self.path.name)

    def read_manifest(self) -> dict[str, Any]:
        """The manifest; RunError naming manifest.json when it is unreadable, not JSON or not an
        object."""
        try:
            text = self.manifest_path.read_bytes().decode("utf-8")
            manifest = json.loads(text)
        except FileNotFoundError:
            raise RunError(f"{self.path}: no {MANIFEST} (not a run directory)") from None
        except OSError as err:
            raise RunError(f"{self.manifest_path}: cannot read: {err.strerror}") from None
        except UnicodeDecodeError as err:
            raise RunError(f"{self.manifest_path}: corrupt (not UTF-8 at byte {err.start})") from None
        except json.JSONDecodeError as err:
            raise RunError(
                f"{self.manifest_path}: corrupt (not JSON: {err.msg} at line {err.lineno})"
            ) from None
        if not isinstance(manifest, dict):
            raise RunError(f"{self.manifest_path}: corrupt (a JSON {type(manifest).__name__}, not an object)")
        return manifest

    def update_manifest(self, **fields: Any) -> None:
        manifest = self.read_manifest() if self.manifest_path.exists() else {}
        manifest.update(fields)
        self.write_manifest(manifest)

    def append_row(self, row: dict[str, Any]) -> None:
        """Append one row as a single write, flushed to disk before returning. A file that does not
        end in a newline (a torn last line: a crash or a full disk mid-write) gets one first, so
        the new row stands on a line of its own and stays readable. Rows carry the run's identity
        (run_id, gpu_name, git_commit); a row's own fields win (a merged run keeps its sources')."""
        if self.identity is None and self.manifest_path.exists():
            self.identity = run_identity(self.read_manifest(), self.path.name)
        row = {**(self.identity or {}), **row}
        line = (json.dumps(row, default=_json_default, allow_nan=False) + "\n").encode("utf-8")
        with open(self.rows_path, "ab+") as f:
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = b"\n" + line
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def rows(self) -> list[dict[str, Any]]:
        return load_rows(self.rows_path)

    def repair_tail(self) -> str | None:
        """Before appending to an existing results.jsonl (--resume): move a torn last line (no
        newline, or not a JSON row) out of the file into results.torn.jsonl, so nothing is written
        onto a fragment. Returns a note saying what was moved, or None."""
        if not self.rows_path.exists():
            return None
        data = self.rows_path.read_bytes()
        if not data or data.endswith(b"\n"):
            return None
        cut = data.rfind(b"\n") + 1
        fragment = data[cut:]
        if _row_or_none(fragment) is not None:
            with open(self.rows_path, "ab") as f:  # a whole row that only lacks its newline
                f.write(b"\n")
                f.flush()
                os.fsync(f.fileno())
            return None
        with open(self.path / TORN, "ab") as f:
            f.write(fragment + b"\n")
        with open(self.rows_path, "rb+") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        return (f"{self.rows_path}: a torn last line ({len(fragment)} bytes, an interrupted write) "
                f"was moved to {TORN}; its point is measured again")

    def done_keys(self) -> set[tuple[str, str]]:
        return {point_key(r) for r in self.rows()}


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def finite(value: Any) -> Any:
    """value with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _row_or_none(line: bytes) -> dict[str, Any] | None:
    """A row from one line of results.jsonl, or None when the line is not one: not UTF-8, not
    JSON, not an object, or without the point's identity (case_id and backend, both strings)."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(row, dict):
        return None
    if not all(k in row and field(k).accepts(row[k]) for k in POINT_KEY):
        return None
    return row


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """(rows, numbers of the lines that are not rows) of a results.jsonl. A torn last line (a
    crash mid-write), a line of other bytes or JSON that is not a row is skipped and counted, never
    fatal: every reader (resume, report, merge, gate) gets the readable rows and can say how many
    lines it could not read."""
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    if not path.exists():
        return rows, bad
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            row = _row_or_none(line)
            if row is None:
                bad.append(number)
            else:
                rows.append(row)
    return rows, bad


def bad_lines_note(path: Path, bad: list[int]) -> str | None:
    """One line naming the unreadable lines of a results.jsonl, or None."""
    if not bad:
        return None
    shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return (f"{path}: skipped {len(bad)} line(s) that are not result rows (line {shown}: torn, "
            "not UTF-8 JSON, or without case_id and backend)")


def load_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results.jsonl; lines that are not rows are skipped (see read_rows)."""
    return read_rows(path)[0]


def load_run(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(manifest, rows) of a run directory; raises FileNotFoundError naming what is missing."""
    run = RunDir(Path(path))
    if not run.manifest_path.exists():
        raise FileNotFoundError(f"{run.path}: no {MANIFEST} (not a run directory)")
    try:
        manifest = run.read_manifest()
    except RunError as err:
        raise FileNotFoundError(str(err)) from None
    return manifest, run.rows()


def latest_run(results_dir: Path) -> Path | None:
    """The newest run directory under results_dir (by manifest start time, then name)."""
    runs = [p for p in results_dir.iterdir() if (p / MANIFEST).exists()] if results_dir.exists() else []
    if not runs:
        return None

    def started(p: Path) -> str:
        try:
            return str(RunDir(p).read_manifest().get("started_at", ""))
        except RunError:
            return ""

    return max(runs, key=lambda p: (started(p), p.name))
