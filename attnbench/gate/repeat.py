"""`attnbench sweep --repeat K`: K runs of one config, each a fresh `attnbench sweep` process.

A baseline for the gate needs the spread between runs, and a run's process matters to it (the
first run of a process can be slow), so each repeat is its own process writing OUT/run-NN.
`attnbench baseline save OUT NAME` then saves the K runs as one baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

MAX_REPEAT = 100


def repeat_sweep(
    repeat: int,
    config: Path | None,
    out: Path | None,
    backends: str | None,
    device: str,
    isolate: bool,
    devices: str | None,
) -> int:
    """Run the K sweeps one after another; the exit code of the first that fails, else 0."""
    from attnbench.console import fail
    from attnbench.console import out as console
    from attnbench.runner.results import now_iso

    if not 2 <= repeat <= MAX_REPEAT:
        fail(f"--repeat {repeat}: allowed 2..{MAX_REPEAT} (1 is a plain sweep)")
    if out is None:
        fail("--repeat needs --out DIR: the K runs go to DIR/run-01 .. DIR/run-K")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} exists and is not a directory")
    taken = [p.name for p in out.glob("run-*")] if out.is_dir() else []
    if taken:
        fail(f"--out {out} already holds runs ({', '.join(sorted(taken)[:3])}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(1, repeat + 1):
        target = out / f"run-{i:02d}"
        cmd = [
            sys.executable,
            "-m",
            "attnbench",
            "sweep",
            *([str(config)] if config else []),
            "--out",
            str(target),
        ]
        cmd += ["--device", device] + (["--backends", backends] if backends else [])
        cmd += ([] if isolate else ["--no-isolate"]) + (["--devices", devices] if devices else [])
        console.print(f"repeat {i}/{repeat}: {target}", highlight=False, markup=False)
        started = time.perf_counter()
        code = subprocess.run(cmd, check=False).returncode
        runs.append(
            {"run": target.name, "exit_code": code, "wall_s": round(time.perf_counter() - started, 3)}
        )
        (out / "repeat.json").write_text(
            json.dumps(
                {"repeat": repeat, "config": str(config), "finished_at": now_iso(), "runs": runs}, indent=2
            )
            + "\n"
        )
        if code:
            console.print(f"repeat {i}/{repeat} exited {code}; stopping (runs so far in {out})", markup=False)
            return code
    console.print(f"{repeat} runs in {out}; save them with: attnbench baseline save {out} NAME", markup=False)
    return 0
