"""Nsight Compute: the command lines, the metrics, and the parser of its CSV output.

Each point's timed call runs once under `ncu` in a child process (attnbench.profile.target), inside
a cudaProfilerStart/Stop range with `--profile-from-start off`, so warm-up, inputs and the reference
are not profiled. `--clock-control none` leaves the GPU's clocks as they are (as the sweep sees them);
`--cache-control all` flushes the caches before each profiled kernel (cold L2, as the sweep times).
The report (.ncu-rep) is then printed as CSV (`--page raw --print-units base`): one row per kernel,
one column per metric, durations in ns and sizes in bytes.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnbench import metrics as model
from attnbench.case import Case
from attnbench.profile.proc import run_group

# ncu metric -> field of a kernel record. Always asked for: these exist on every chip since Volta.
CORE_METRICS: dict[str, str] = {
    "gpu__time_duration.sum": "duration_ns",
    "dram__bytes_read.sum": "dram_read_bytes",
    "dram__bytes_write.sum": "dram_write_bytes",
    "lts__t_sector_hit_rate.pct": "l2_hit_pct",
    "sm__warps_active.avg.pct_of_peak_sustained_active": "occupancy_pct",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": "sm_throughput_pct",
    "launch__registers_per_thread": "registers_per_thread",
    "launch__shared_mem_per_block_static": "smem_static_bytes",
    "launch__shared_mem_per_block_dynamic": "smem_dynamic_bytes",
    "launch__grid_size": "grid_size",
    "launch__block_size": "block_size",
}
# Asked for only where `ncu --query-metrics` lists them for this GPU (names differ by chip). On the
# H100 (ncu 2025.3) the hmma counter covers HMMA, HFMA2.MMA, HGMMA and QGMMA: mma.sync and wgmma alike.
OPTIONAL_METRICS: dict[str, str] = {
    "dram__throughput.avg.pct_of_peak_sustained_elapsed": "dram_throughput_pct",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": "tensor_pipe_pct",
}
ALL_METRICS = {**CORE_METRICS, **OPTIONAL_METRICS}
TIME_FIELDS = {"duration_ns"}
BYTE_FIELDS = {"dram_read_bytes", "dram_write_bytes", "smem_static_bytes", "smem_dynamic_bytes"}
PCT_FIELDS = ("l2_hit_pct", "occupancy_pct", "sm_throughput_pct", "dram_throughput_pct", "tensor_pipe_pct")
# ncu prints scaled units unless --print-units base; both are understood.
_TO_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
          "second": 1e9, "s": 1e9}
_TO_BYTES = {"byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "Tbyte": 1e12,
             "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024.0, "MiB": 1024.0**2, "GiB": 1024.0**3}
# Errors that no retry fixes: every later point would fail the same way.
FATAL = ("ERR_NVGPUCTRPERM", "LibraryNotLoaded", "Failed to initialize the profiler", "not supported on this")


def find_ncu() -> str | None:
    """The ncu executable: $ATTNBENCH_NCU, else `ncu` on the PATH."""
    explicit = os.environ.get("ATTNBENCH_NCU")
    if explicit:
        return explicit if Path(explicit).exists() else None
    return shutil.which("ncu")


def version(ncu: str) -> str | None:
    try:
        out = subprocess.run([ncu, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Version\s+(\S+)", out)
    lines = out.strip().splitlines()
    return m.group(1) if m else (lines[-1] if lines else None)


def parse_metric_names(text: str) -> set[str]:
    """Base metric names of `ncu --query-metrics` output (first column, e.g. dram__bytes_read)."""
    names = set()
    for line in text.splitlines():
        m = re.match(r"\s*([a-z0-9]+__[a-z0-9_]+)\b", line)
        if m:
            names.add(m.group(1))
    return names


def query_metric_names(ncu: str) -> set[str]:
    """The metrics this GPU offers; an empty set when ncu cannot say."""
    try:
        res = subprocess.run([ncu, "--query-metrics"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return parse_metric_names(res.stdout) if res.returncode == 0 else set()


def choose_metrics(available: set[str]) -> list[str]:
    """Core metrics, plus the optional ones whose base name the GPU lists."""
    chosen = list(CORE_METRICS)
    chosen += [m for m in OPTIONAL_METRICS if m.split(".")[0] in available]
    return chosen


def profile_command(ncu: str, metrics: list[str], export_base: Path, argv: list[str]) -> list[str]:
    return [
        ncu, "--clock-control", "none", "--cache-control", "all", "--profile-from-start", "off",
        "--target-processes", "all", "--metrics", ",".join(metrics),
        "--export", str(export_base), "--force-overwrite", *argv,
    ]  # fmt: skip


def import_command(ncu: str, report: Path, base_units: bool = True) -> list[str]:
    cmd = [ncu, "--import", str(report), "--csv", "--page", "raw"]
    return cmd + (["--print-units", "base"] if base_units else [])


def messages(output: str, tag: str = "ERROR") -> list[str]:
    """ncu's own ==ERROR== (or ==WARNING==) lines, without the tag."""
    marker = f"=={tag}=="
    return [line.split(marker, 1)[1].strip() for line in output.splitlines() if marker in line]


def is_fatal(errors: list[str]) -> bool:
    return any(p in e for e in errors for p in FATAL)


def is_metric_error(errors: list[str]) -> bool:
    return any("metric" in e.lower() for e in errors)


# ---- CSV ---------------------------------------------------------------------------------------


def _number(text: str) -> float | None:
    text = text.strip().replace(",", "")
    if not text or text.lower() in ("n/a", "nan", "-"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _convert(field_name: str, value: float | None, unit: str) -> float | None:
    if value is None:
        return None
    unit = unit.strip()
    if field_name in TIME_FIELDS and unit in _TO_NS:
        return value * _TO_NS[unit]
    if field_name in BYTE_FIELDS and unit in _TO_BYTES:
        return value * _TO_BYTES[unit]
    return value


def short_name(full: str) -> str:
    """The kernel's function name without return type, namespaces, template arguments or parameters
    (profilers may truncate long names, so brackets need not balance)."""
    text = full.strip()
    text = text[5:] if text.startswith("void ") else text
    for anon in ("(anonymous namespace)::", "<unnamed>::", "{anonymous}::"):
        text = text.replace(anon, "")
    cut = min((i for i in (text.find("<"), text.find("(")) if i > 0), default=len(text))
    return text[:cut].strip().rsplit("::", 1)[-1] or full[:80]


def _kernel(kid: Any, name: str, values: dict[str, float | None]) -> dict[str, Any]:
    k: dict[str, Any] = {"id": kid, "name": short_name(name), "full_name": name[:400]}
    for f in ALL_METRICS.values():
        k[f] = values.get(f)
    return k


def _name_column(header: list[str]) -> int:
    for col in ("Kernel Name", "Function Name", "Demangled Name", "Name"):
        if col in header:
            return header.index(col)
    raise ValueError(f"ncu CSV has no kernel name column (columns: {', '.join(header[:12])} ...)")


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Kernel records from ncu's CSV: the raw page (a row per kernel) or the details page (a row
    per metric). Lines that are not CSV records (==PROF== messages, program output) are ignored."""
    lines = [line for line in text.splitlines() if line.startswith('"')]
    table = list(csv.reader(lines))
    if not table:
        return []
    header = table[0]
    if "Metric Name" in header and "Metric Value" in header:
        return _parse_details(header, table[1:])
    return _parse_raw(header, table[1:])


def _parse_raw(header: list[str], rows: list[list[str]]) -> list[dict[str, Any]]:
    id_col = header.index("ID") if "ID" in header else 0
    name_col = _name_column(header)
    units = [""] * len(header)
    if rows and _number(rows[0][id_col]) is None:  # the units row under the header
        units, rows = rows[0], rows[1:]
    columns = {i: ALL_METRICS[h] for i, h in enumerate(header) if h in ALL_METRICS}
    kernels = []
    for r in rows:
        if len(r) < len(header):
            continue
        values = {f: _convert(f, _number(r[i]), units[i]) for i, f in columns.items()}
        kernels.append(_kernel(int(_number(r[id_col]) or 0), r[name_col], values))
    return kernels


def _parse_details(header: list[str], rows: list[list[str]]) -> list[dict[str, Any]]:
    id_col = header.index("ID")
    name_col = _name_column(header)
    m_name, m_unit, m_value = (header.index(c) for c in ("Metric Name", "Metric Unit", "Metric Value"))
    order: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, dict[str, float | None]] = {}
    for r in rows:
        if len(r) < len(header):
            continue
        kid = r[id_col]
        if kid not in values:
            order.append(kid)
            names[kid] = r[name_col]
            values[kid] = {}
        metric = r[m_name]
        if metric in ALL_METRICS:
            f = ALL_METRICS[metric]
            values[kid][f] = _convert(f, _number(r[m_value]), r[m_unit])
    return [_kernel(int(_number(k) or 0), names[k], values[k]) for k in order]


# ---- per point ---------------------------------------------------------------------------------


def min_read_bytes(case: Case) -> int:
    """The model's minimum bytes read: min_hbm_bytes less the output written once."""
    out = case.total_q * case.num_q_heads * case.head_dim * case.elem_bytes
    return model.min_hbm_bytes(case) - out


def _weighted(kernels: list[dict[str, Any]], f: str) -> float | None:
    pairs = [(k[f], k["duration_ns"]) for k in kernels if k.get(f) is not None and k.get("duration_ns")]
    total = sum(d for _, d in pairs)
    return sum(v * d for v, d in pairs) / total if total else None


def _sum(kernels: list[dict[str, Any]], f: str) -> float | None:
    vals = [k.get(f) for k in kernels]
    known = [v for v in vals if v is not None]
    return sum(known) if known and len(known) == len(vals) else None  # None: a kernel lacks it


def summarize(kernels: list[dict[str, Any]], case: Case) -> dict[str, Any]:
    """Row fields of one point: sums over its kernels, duration-weighted percentages, the longest
    kernel, and DRAM bytes against the model's minimum (ratio 1.0 = nothing read twice)."""
    duration = _sum(kernels, "duration_ns")
    read = _sum(kernels, "dram_read_bytes")
    write = _sum(kernels, "dram_write_bytes")
    min_read = min_read_bytes(case)
    min_total = model.min_hbm_bytes(case)
    main = max(kernels, key=lambda k: k.get("duration_ns") or 0.0) if kernels else None
    fields: dict[str, Any] = {
        "ncu_kernel_count": len(kernels),
        "ncu_duration_ms": duration / 1e6 if duration is not None else None,
        "dram_read_bytes": int(read) if read is not None else None,
        "dram_write_bytes": int(write) if write is not None else None,
        "min_read_bytes": min_read,
        "dram_read_ratio": read / min_read if read is not None and min_read else None,
        "dram_total_ratio": ((read + write) / min_total
                             if read is not None and write is not None and min_total else None),
        "ncu_main_kernel": main["name"] if main else None,
        "ncu_main_kernel_share": (main["duration_ns"] / duration) if main and duration else None,
    }
    for f in PCT_FIELDS:
        fields[f"ncu_{f}"] = _weighted(kernels, f)
    fields["ncu_kernels"] = kernels
    return fields


# ---- running ncu -------------------------------------------------------------------------------


@dataclass
class NcuRun:
    returncode: int | None
    output: str
    errors: list[str] = field(default_factory=list)
    report: Path | None = None
    csv_text: str = ""
    timed_out: bool = False


def run(ncu: str, metrics: list[str], export_base: Path, argv: list[str], timeout_s: float,
        env: dict[str, str] | None = None) -> NcuRun:
    """Profile argv under ncu, then print the report as CSV. Never raises for ncu's failures."""
    export_base.parent.mkdir(parents=True, exist_ok=True)
    code, output = run_group(profile_command(ncu, metrics, export_base, argv), timeout_s, env)
    if code is None:
        return NcuRun(None, output, [f"timed out after {timeout_s:g} s under ncu"], timed_out=True)
    result = NcuRun(code, output, messages(output))
    report = export_base.with_name(export_base.name + ".ncu-rep")
    if not report.exists():
        return result
    result.report = report
    import_errors: list[str] = []
    for base_units in (True, False):  # older ncu may lack --print-units; the parser scales units
        code, text = run_group(import_command(ncu, report, base_units), 300)
        csv_part = "\n".join(line for line in text.splitlines() if line.startswith('"'))
        if code == 0 and csv_part:
            result.csv_text = csv_part + "\n"
            return result
        import_errors += messages(text) or [f"ncu --import exited {code}"]
    result.errors += import_errors
    return result
