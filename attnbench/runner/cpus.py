"""The CPUs a worker process may run on.

--devices gives each worker its own share, so one worker's CPU-heavy work (a torch.compile, a
reference, a pool built in Python) cannot slow the kernel launches another worker is timing, nor
OpenMP threads of two workers fight for cores. The share travels in the environment, as CPUS_ENV.
"""

from __future__ import annotations

import os

CPUS_ENV = "ATTNBENCH_CPUS"  # "0,1,2,...": the CPUs of this worker's share


def pin_to_cpus(value: str | None) -> None:
    """Restrict this process (and what it starts later) to the CPUs listed in value, if any."""
    cpus = {int(c) for c in (value or "").split(",") if c.strip().isdigit()}
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)
