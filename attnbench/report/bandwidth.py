"""Memory bandwidth: per backend, the decode bandwidth achieved (minimum bytes / time) and its share
of the run's calibrated copy bandwidth; where Nsight Compute counters exist (dram_read_bytes,
dram_write_bytes), the DRAM bytes actually read against the minimum a kernel must read."""

from __future__ import annotations

from typing import Any

import pandas as pd

from attnbench.case import DTYPE_BYTES, kv_elem_bytes
from attnbench.report.load import RunData
from attnbench.report.select import describe_case, label_order
from attnbench.report.table import Table, not_measured, num, pct, ratio


def kv_elem_bytes_of(rows: pd.DataFrame) -> pd.Series:
    """Bytes of one stored K/V element per row: 1 for an fp8 cache (kv_dtype), else the dtype's."""
    kv = rows["kv_dtype"] if "kv_dtype" in rows.columns else pd.Series(None, index=rows.index, dtype=object)
    return pd.Series([kv_elem_bytes(str(d), k) for d, k in zip(rows["dtype"], kv, strict=True)],
                     index=rows.index, dtype=float)


def min_read_bytes(row: pd.Series) -> float:
    """Minimum bytes read: the minimum HBM bytes less the output written once (total_q * Hq * d)."""
    elem = DTYPE_BYTES.get(str(row.get("dtype")), 2)
    out = row["total_q"] * row["num_q_heads"] * row["head_dim"] * elem
    return float(row["min_hbm_bytes"] - out)


def dram_ratios(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with counters, with read_ratio = DRAM bytes read / minimum bytes read."""
    have = rows[rows["dram_read_bytes"].notna() & rows["min_hbm_bytes"].notna()]
    if have.empty:
        return have
    have = have.copy()
    have["read_ratio"] = have["dram_read_bytes"] / have.apply(min_read_bytes, axis=1)
    return have


def build(run: RunData) -> Table:
    copy = run.calibration("copy_gbps")
    sheet = run.calibration("datasheet_copy_gbps")
    table = Table(
        key="bandwidth",
        title="Memory bandwidth (decode)",
        intro="Achieved bandwidth = minimum HBM bytes (Q, K and V read once, O written once, block "
        "tables) / median time, over each backend's decode points; % is of the copy bandwidth "
        "calibrated at the start of the run. The last column compares the DRAM bytes Nsight Compute "
        "counted with the minimum, where a profile exists.",
        columns=["Backend", "Kind", "Decode points", "Peak GB/s", "Peak % of copy", "Peak at",
                 "Median GB/s", "Median % of copy", "DRAM read / minimum (ncu)"],
    )
    if copy:
        extra = f" (datasheet {num(sheet)} GB/s)" if sheet else ""
        table.notes.append(f"Calibrated copy bandwidth: {num(copy)} GB/s{extra}.")
    else:
        table.notes.append("Calibrated copy bandwidth: " + not_measured("the manifest has no calibration"))
    ok = run.ok
    if (ok["prefix_len"] > 0).any():
        table.notes.append("Prefix-sharing cases are left out: the minimum-byte model counts the shared "
                           "prefix once per sequence, so a kernel that reads it once would exceed 100%.")
    any_dram = ok["dram_read_bytes"].notna().any()
    if not any_dram:
        table.notes.append("DRAM bytes: " + not_measured("no row has Nsight Compute dram_read_bytes"))
    for label in label_order(ok):
        rows = ok[ok["label"] == label]
        dec = rows[(rows["phase"] == "decode") & rows["hbm_gbps"].notna() & ~(rows["prefix_len"] > 0)]
        rec: dict[str, Any] = {"backend": label, "kind": str(rows["kind"].iloc[0]), "points": len(dec)}
        if dec.empty:
            cells = [label, rec["kind"], "0", not_measured("no ok decode rows"), "—", "—", "—", "—"]
        else:
            peak = dec.loc[dec["hbm_gbps"].idxmax()]
            med = float(dec["hbm_gbps"].median())
            rec.update(peak_gbps=float(peak["hbm_gbps"]), median_gbps=med,
                       peak_util=peak["hbm_gbps"] / copy if copy else float("nan"),
                       median_util=med / copy if copy else float("nan"), peak_case=str(peak["case_id"]))
            where = describe_case(peak)
            if peak["paged"]:
                where += f", bs {peak['block_size']:.0f} {peak['kv_layout']}"
            no_cal = not_measured("no calibration")
            cells = [label, rec["kind"], str(len(dec)), num(rec["peak_gbps"]),
                     pct(rec["peak_util"]) if copy else no_cal, where, num(med),
                     pct(rec["median_util"]) if copy else no_cal]
        dram = dram_ratios(rows)
        if dram.empty:
            cells.append("—" if not any_dram else not_measured("not profiled"))
        else:
            # a decode table: decode profiles when there are any (a naive prefill's score matrix
            # moves ~100x the minimum, which says nothing of its decode); else the prefill ones, named
            decode = dram[dram["phase"] == "decode"]
            used, phase = ((decode, "decode") if not decode.empty
                           else (dram, "/".join(sorted(dram["phase"].unique()))))
            rec["dram_read_ratio"] = float(used["read_ratio"].median())
            low, high = ratio(float(used["read_ratio"].min())), ratio(float(used["read_ratio"].max()))
            only = "" if phase == "decode" else f"{phase} only: "
            what = (f"1 {phase} point" if len(used) == 1
                    else f"median of {len(used)} {phase} points" + (f", {low}–{high}" if low != high else ""))
            cells.append(f"{ratio(rec['dram_read_ratio'])} ({only}{what})")
        table.rows.append(cells)
        table.records.append(rec)
        if copy and rec.get("peak_gbps", 0) > copy:
            table.notes.append(f"{label}: peak above the calibrated copy bandwidth (L2 hits or a calibration "
                               "below the true ceiling); check the case.")
    if not table.rows:
        table.empty_reason = "no ok rows in the run"
    return table
