"""`attnbench doctor`: what this machine offers a benchmark (device, driver, versions, clocks, NVML
telemetry) and, measured, its copy and matmul ceilings."""

from __future__ import annotations

import json

import typer


def doctor_command(calibrate_now: bool, as_json: bool) -> None:
    """The facts as a table (or JSON); on a CPU, what works without a GPU."""
    from rich.table import Table

    from attnbench.calibrate import calibrate
    from attnbench.console import out as console
    from attnbench.console import plain
    from attnbench.sysinfo import environment, resolve_device
    from attnbench.telemetry import nvml_status

    dev = resolve_device("auto")
    info = environment(dev)
    ok, why = nvml_status()
    info["nvml"] = "working: " + why if ok else why
    if calibrate_now:
        import torch

        info["calibration"] = calibrate(torch.device("cuda:0" if dev == "cuda" else "cpu"))
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    t = Table(title="attnbench doctor", show_header=False)
    t.add_column("what")
    t.add_column("value", overflow="fold")
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
        t.add_row(plain(key), plain(_fmt(value)))
    console.print(t)
    if dev == "cpu":
        console.print(
            "[yellow]no CUDA GPU visible: GPU backends will be listed as skipped; "
            "CPU backends, reports, the gate and the fragmentation study work.[/]"
        )


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
