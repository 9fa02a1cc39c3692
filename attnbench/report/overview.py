"""The report's opening tables: what each run is (GPU, versions, calibration, status) and which
points did not run, grouped by backend, status and reason."""

from __future__ import annotations

from attnbench.report.load import RunData
from attnbench.report.table import Table, num


def runs_table(runs: list[RunData]) -> Table:
    table = Table(
        key="runs",
        title="Runs",
        intro="The runs this report reads: device, software, the ceilings calibrated at the start of each "
        "run, and how many points ended in each status.",
        columns=["Run", "GPU", "Device / timer", "Config", "Software", "Copy GB/s", "Matmul TFLOP/s",
                 "Points", "Status"],
    )
    for run in runs:
        m = run.manifest
        counts = run.df["status"].value_counts().to_dict() if not run.df.empty else {}
        points = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "skipped", "failed", "incorrect"))
        software = ", ".join(f"{k} {m[k]}" for k in ("torch", "triton", "cuda", "flash_attn") if m.get(k))
        cal = []
        for key in ("copy_gbps", "matmul_tflops"):
            value, sheet = run.calibration(key), run.calibration(
                "datasheet_copy_gbps" if key == "copy_gbps" else "datasheet_tflops_bf16")
            text = num(value) + (f" (datasheet {num(sheet)})" if sheet else "")
            cal.append(text if value else "not calibrated")
        status = str(m.get("status", "?"))
        if m.get("synthetic"):
            status += " (SYNTHETIC fixture data)"
        table.rows.append([run.run_id, run.gpu, f"{m.get('device', '?')} / {m.get('timer', '?')}",
                           f"{m.get('config_name', '?')} ({m.get('config_hash', '?')})", software or "—",
                           cal[0], cal[1], points or "no rows", status])
        table.records.append({"run_id": run.run_id, "gpu": run.gpu, "counts": counts})
        for w in run.warnings:
            table.notes.append(f"{run.run_id}: {w}")
        if run.manifest.get("git_commit"):
            table.notes.append(
                f"{run.run_id}: attnbench {m.get('attnbench_version', '?')} at {m['git_commit']}, host "
                f"{m.get('host', '?')}, {m.get('started_at', '?')} – {m.get('ended_at') or '?'}."
            )
    return table


def not_run_table(run: RunData) -> Table:
    table = Table(
        key="not_run",
        title="Points that did not run",
        intro="Skipped (unsupported or unavailable), failed (an error) and incorrect (output off the "
        "reference) points, grouped by backend and reason.",
        columns=["Backend", "Status", "Points", "Reason"],
    )
    bad = run.df[run.df["status"] != "ok"] if not run.df.empty else run.df
    if bad.empty:
        table.empty_reason = "every point ran" if not run.df.empty else "the run has no rows"
        return table
    groups = bad.groupby(["label", "status", "reason"], dropna=False).size().reset_index(name="n")
    for _, g in groups.sort_values(["status", "label"]).iterrows():
        table.rows.append([str(g["label"]), str(g["status"]), str(g["n"]), str(g["reason"]) or "—"])
        table.records.append({"backend": g["label"], "status": g["status"], "n": int(g["n"]),
                              "reason": g["reason"]})
    return table
