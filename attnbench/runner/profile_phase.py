"""`attnbench sweep --profile`: after the sweep, the DRAM-traffic profile of its main points.

Nsight Compute (ncu) replays each profiled point's timed call and reads its DRAM bytes, L2 hit rate
and occupancy (attnbench.profile); the rows land in RUN/profile, which `attnbench report` joins with
the sweep's rows point by point (report.load), so the claims check can answer "FlashAttention halves
HBM traffic" from one command. It runs in a child process (`attnbench profile CONFIG --sweep RUN`):
ncu launches the points itself, and the sweep's own process holds a CUDA context ncu must not see.

What is profiled: the workloads named decode-main and prefill-main (else the first decode and the
first prefill workload) and the backends below that the sweep ran, so a standard (naive) and flash
rows share a case. Profiling is slow (ncu replays a kernel once per metric group: tens of seconds
a point), hence a flag and not a default.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from attnbench.config.sweep_config import SweepConfig

PROFILE_DIR = "profile"  # RUN/profile: an `attnbench profile` run directory
MAIN_WORKLOADS = ("decode-main", "prefill-main")
# standard attention, the flash and paged kernels that answer the traffic claim, and the libraries
PROFILE_BACKENDS = ("naive", "sdpa-flash", "sdpa-cudnn", "flash-attn", "triton-flash", "cuda-flash",
                    "triton-paged", "cuda-paged")
POINT_TIMEOUT_S = 150.0  # one point under ncu (naive's largest prefill takes ~60 s on an H200)


def profile_workloads(cfg: SweepConfig) -> list[str]:
    """The main workloads by name, else the first decode and the first prefill one."""
    names = [w.name for w in cfg.workloads]
    main = [n for n in MAIN_WORKLOADS if n in names]
    if main:
        return main
    out: list[str] = []
    for phase in ("decode", "prefill"):
        first = next((w.name for w in cfg.workloads if w.phase == phase), None)
        if first is not None:
            out.append(first)
    return out


def profile_backends(ran: set[str]) -> list[str]:
    return [b for b in PROFILE_BACKENDS if b in ran]


def run_profile(config: Path, cfg: SweepConfig, run_path: Path, ran: set[str]) -> tuple[int, str]:
    """Profile the run's main points into run_path/profile: (exit code, one line saying what happened)."""
    from attnbench.profile.ncu import find_ncu

    if find_ncu() is None:
        return 0, "--profile: Nsight Compute (ncu) is not on the PATH (or ATTNBENCH_NCU): no profile taken"
    workloads, backends = profile_workloads(cfg), profile_backends(ran)
    if not workloads or not backends:
        return 0, "--profile: no decode/prefill workload or no profiled backend ran: no profile taken"
    out = run_path / PROFILE_DIR
    if out.exists():
        shutil.rmtree(out)  # a profile of an earlier, resumed, part of the run
    cmd = [sys.executable, "-m", "attnbench", "profile", str(config), "--tool", "ncu",
           "--backends", ",".join(backends), "--sweep", str(run_path), "--out", str(out),
           "--timeout", str(POINT_TIMEOUT_S)]
    for w in workloads:
        cmd += ["--workload", w]
    code = subprocess.run(cmd, check=False).returncode
    what = f"{', '.join(workloads)} x {', '.join(backends)}"
    if code != 0:
        return code, f"--profile: attnbench profile exited {code} ({what}); its rows so far are in {out}"
    return 0, f"--profile: DRAM-traffic profile of {what} in {out} (attnbench report joins it)"
