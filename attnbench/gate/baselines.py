"""Named baselines: reference runs committed under results/baselines/NAME/ for the gate to compare with.

A baseline is K runs of one config on one GPU (K = 5 by default: the gate's tolerance per point
comes from the spread between them, see gate.py). Its folder holds:
  runs/<run>/manifest.json, results.jsonl   each of the K runs (only when K > 1),
  manifest.json, results.jsonl, report/     the first run, so that every tool that reads a run
                                            directory (report, baseline slug, list) reads a baseline,
  baseline.json                             where and when it was saved, K and the runs' ids.
A baseline saved before multi-run baselines is a single run directory (no runs/): the gate judges
it by the single-run rule. `baseline save` takes a run directory, or a folder of run directories
(what `attnbench sweep --repeat K --out DIR` writes), plus more runs with --add. The
gate takes a baseline's name wherever it takes a run directory. CI picks the baseline for its GPU
as `ci-gate-<slug>`, the slug naming the GPU model (gpu_slug: "NVIDIA H100 80GB HBM3" -> "h100");
the gate still checks the full GPU name, so another variant of the model is refused, not compared.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from attnbench.runner.results import MANIFEST, ROWS, latest_run, load_rows, now_iso

DEFAULT_BASELINES_DIR = Path("results") / "baselines"
DEFAULT_RESULTS_DIR = Path("results")
INFO = "baseline.json"
REPORT_DIR = "report"
RUNS_DIR = "runs"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Words of marketing names that do not name the model.
_BRAND_WORDS = {"nvidia", "geforce", "tesla", "quadro"}


class BaselineError(Exception):
    """A one-line message naming what is wrong (the command exits 2)."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BaselineError(
            f"baseline name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
            "(at most 100, not starting with '.', '_' or '-')"
        )
    return name


def resolve_source(run: str, results_dir: Path = DEFAULT_RESULTS_DIR) -> Path:
    """A run directory from a path, or `latest` for the newest run under results_dir."""
    path = latest_run(results_dir) if run == "latest" else Path(run)
    if path is None:
        raise BaselineError(f"'latest': no run directory under {results_dir}")
    if not path.is_dir():
        raise BaselineError(f"run {run!r}: no such directory")
    for name in (MANIFEST, ROWS):
        if not (path / name).is_file():
            raise BaselineError(f"run {path}: no {name} (a run directory holds {MANIFEST} and {ROWS})")
    return path


def is_run_dir(path: Path) -> bool:
    return (path / MANIFEST).is_file() and (path / ROWS).is_file()


def run_dirs(path: Path) -> list[Path]:
    """The runs a baseline (or a folder given to `baseline save`) holds: runs/* when present, else
    the folder itself when it is a run directory, else its subfolders that are run directories
    (sorted by name). Empty when there is none."""
    if (path / RUNS_DIR).is_dir():
        found = sorted(p for p in (path / RUNS_DIR).iterdir() if p.is_dir() and is_run_dir(p))
        if found:
            return found
    if is_run_dir(path):
        return [path]
    if path.is_dir():
        return sorted(
            p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and is_run_dir(p)
        )
    return []


def _source_runs(run: str, extra: list[str], results_dir: Path) -> list[Path]:
    runs: list[Path] = []
    for spec in [run, *extra]:
        path = latest_run(results_dir) if spec == "latest" else Path(spec)
        if path is None:
            raise BaselineError(f"'latest': no run directory under {results_dir}")
        if not path.is_dir():
            raise BaselineError(f"run {spec!r}: no such directory")
        found = run_dirs(path)
        if not found:
            resolve_source(str(path), results_dir)  # names the missing file
        runs += found
    return runs


def _manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise BaselineError(f"run {path}: {MANIFEST} cannot be read ({e})") from None
    if not isinstance(manifest, dict):
        raise BaselineError(f"run {path}: {MANIFEST} is not a JSON object")
    return manifest


def save(
    run: str,
    name: str,
    force: bool = False,
    baselines_dir: Path = DEFAULT_BASELINES_DIR,
    results_dir: Path = DEFAULT_RESULTS_DIR,
    extra_runs: list[str] | None = None,
) -> Path:
    """Copy K runs to baselines_dir/name; refuse to replace a baseline, to save an unfinished run or
    to mix runs of different GPUs or configs (unless forced, except the mix). The copy is built
    beside the target and moved into place, so a failure leaves the old baseline whole."""
    check_name(name)
    sources = _source_runs(run, list(extra_runs or []), results_dir)
    dest = baselines_dir / name
    manifests = [_manifest(src) for src in sources]
    for src in sources:
        if dest.exists() and (dest.resolve() == src.resolve() or dest.resolve() in src.resolve().parents):
            raise BaselineError(f"run {src} is part of the baseline {name!r} itself")
    if dest.exists() and not force:
        raise BaselineError(f"baseline {name!r} exists at {dest} (--force replaces it)")
    for src, m in zip(sources, manifests, strict=True):
        status = m.get("status")
        if status not in (None, "complete") and not force:
            raise BaselineError(f"run {src} is {status!r}, not complete (--force saves it anyway)")
    for what in ("gpu_name", "config_hash"):
        values = {str(m.get(what)) for m in manifests}
        if len(values) > 1:
            raise BaselineError(
                f"the runs differ in {what} ({', '.join(sorted(values))}): one baseline, one GPU and config"
            )
    src, manifest = sources[0], manifests[0]
    rows = load_rows(src / ROWS)
    baselines_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=baselines_dir))
    try:
        shutil.copy2(src / MANIFEST, tmp / MANIFEST)
        shutil.copy2(src / ROWS, tmp / ROWS)
        if (src / REPORT_DIR).is_dir():
            shutil.copytree(src / REPORT_DIR, tmp / REPORT_DIR)
        run_names: list[str] = []
        if len(sources) > 1:
            for i, s in enumerate(sources, 1):
                target = tmp / RUNS_DIR / f"run-{i:02d}"
                target.mkdir(parents=True)
                shutil.copy2(s / MANIFEST, target / MANIFEST)
                shutil.copy2(s / ROWS, target / ROWS)
                run_names.append(target.name)
        info = {
            "name": name,
            "saved_at": now_iso(),
            "source": str(src),
            "sources": [str(s) for s in sources],
            "runs": len(sources),
            "run_ids": [m.get("run_id") for m in manifests],
            "run_id": manifest.get("run_id"),
            "gpu_name": manifest.get("gpu_name"),
            "config_name": manifest.get("config_name"),
            "config_hash": manifest.get("config_hash"),
            "git_commit": manifest.get("git_commit"),
            "points": len(rows),
            "points_with_samples": sum(1 for r in rows if r.get("status") == "ok" and r.get("samples_ms")),
        }
        (tmp / INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=baselines_dir))
            dest.rename(old / name)
            tmp.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def list_baselines(baselines_dir: Path = DEFAULT_BASELINES_DIR) -> list[dict[str, Any]]:
    """One dict per baseline folder (name, gpu_name, config, run_id, points, saved_at)."""
    out: list[dict[str, Any]] = []
    if not baselines_dir.is_dir():
        return out
    for path in sorted(p for p in baselines_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entry: dict[str, Any] = {"name": path.name, "path": str(path)}
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            entry["problem"] = f"no readable {MANIFEST}"
            out.append(entry)
            continue
        info: dict[str, Any] = {}
        if (path / INFO).is_file():
            try:
                info = json.loads((path / INFO).read_text())
            except ValueError:
                info = {}
        rows = load_rows(path / ROWS)
        entry.update(
            gpu_name=manifest.get("gpu_name") or manifest.get("device"),
            config_name=manifest.get("config_name"),
            config_hash=manifest.get("config_hash"),
            run_id=manifest.get("run_id"),
            runs=len(run_dirs(path)),
            points=len(rows),
            saved_at=info.get("saved_at"),
            report=(path / REPORT_DIR).is_dir(),
        )
        out.append(entry)
    return out


# ---- which baseline for this GPU -------------------------------------------------------------
def gpu_slug(gpu_name: str) -> str:
    """The model part of a GPU name, lower case: 'NVIDIA H100 80GB HBM3' -> 'h100',
    'NVIDIA A100-SXM4-80GB' -> 'a100', 'NVIDIA GeForce RTX 4090' -> 'rtx4090'."""
    words = [w for w in re.sub(r"[^a-z0-9]+", " ", gpu_name.lower()).split() if w not in _BRAND_WORDS]
    if not words:
        raise BaselineError(f"GPU name {gpu_name!r} names no model")
    if words[0] in ("rtx", "gtx", "titan") and len(words) > 1:
        return words[0] + words[1]
    return words[0]


def local_gpu_name() -> str:
    """The first GPU's name from nvidia-smi."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise BaselineError(f"nvidia-smi cannot name the GPU ({e}); pass a run or --gpu-name") from None
    names = [line.strip() for line in out.splitlines() if line.strip()]
    if not names:
        raise BaselineError("nvidia-smi lists no GPU; pass a run or --gpu-name")
    return names[0]


def slug_for(run: str | None, gpu_name: str | None) -> str:
    """The slug from --gpu-name, else from a run's manifest (gpu_name, or 'cpu'), else nvidia-smi."""
    if gpu_name:
        return gpu_slug(gpu_name)
    if run:
        found = run_dirs(Path(run)) if run != "latest" else []
        path = found[0] if found else resolve_source(run)  # a repeat folder: its first run
        manifest = json.loads((path / MANIFEST).read_text())
        name = manifest.get("gpu_name")
        if not name:
            if manifest.get("device") == "cpu":
                return "cpu"
            raise BaselineError(f"run {path}: the manifest names no GPU (gpu_name is empty)")
        return gpu_slug(str(name))
    return gpu_slug(local_gpu_name())


# ---- the `attnbench baseline` commands (gate/baseline_command.py calls these) ---------------------
def cli_save(
    run: str,
    name: str,
    force: bool,
    baselines_dir: Path,
    console,
    err_console,
    extra_runs: list[str] | None = None,
) -> int:
    try:
        dest = save(run, name, force, baselines_dir, extra_runs=extra_runs)
    except BaselineError as e:
        err_console.print(f"baseline save: {e}", markup=False, highlight=False, soft_wrap=True)
        return 2
    info = json.loads((dest / INFO).read_text())
    console.print(
        f"saved {info['runs']} run(s) from {info['source']} as baseline {name!r} at {dest} "
        f"({info['points']} points, "
        f"{info['points_with_samples']} with samples, GPU {info['gpu_name']})",
        markup=False, highlight=False,
    )  # fmt: skip
    return 0


def cli_list(baselines_dir: Path, console) -> int:
    from rich.markup import escape
    from rich.table import Table

    entries = list_baselines(baselines_dir)
    if not entries:
        console.print(f"no baselines under {baselines_dir}", markup=False, highlight=False)
        return 0
    table = Table(title=f"baselines under {baselines_dir}", title_justify="left")
    for col in ("name", "gpu", "config", "hash", "run", "runs", "points", "saved", "report"):
        table.add_column(col, overflow="fold")
    for e in entries:
        if "problem" in e:
            table.add_row(escape(e["name"]), escape(f"({e['problem']})"), *[""] * 7)
            continue
        table.add_row(*(escape(str(v)) for v in (
            e["name"], e["gpu_name"], e["config_name"], e["config_hash"], e["run_id"],
            e["runs"], e["points"], e["saved_at"] or "-", "yes" if e["report"] else "no",
        )))  # fmt: skip
    console.print(table)
    return 0


def cli_slug(run: str | None, gpu_name: str | None, console, err_console) -> int:
    try:
        slug = slug_for(run, gpu_name)
    except BaselineError as e:
        err_console.print(f"baseline slug: {e}", markup=False, highlight=False, soft_wrap=True)
        return 2
    console.print(slug, markup=False, highlight=False, soft_wrap=True)
    return 0
