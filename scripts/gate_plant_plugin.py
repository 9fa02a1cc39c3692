"""A planted slowdown for the A/B evidence (scripts/gate_ab_evidence.py), loaded as a plugin:
  ATTNBENCH_PLANT_BACKEND=triton-flash ATTNBENCH_PLANT_FRACTION=0.03 ATTNBENCH_PLANT_CASE=prefill/ \
  attnbench gate ab --a worktree --b plugin:scripts.gate_plant_plugin ...
It replaces the backend ATTNBENCH_PLANT_BACKEND of the version that loads it by one that does the
same work and then extra device work worth ATTNBENCH_PLANT_FRACTION of the call's measured time,
on the cases whose case_id contains ATTNBENCH_PLANT_CASE (others are left unchanged).

Calibration, in prepare(): the call's median over 20 timed calls (cold L2, CUDA events) and the
rate of torch.cuda._sleep (a spin kernel of a given clock-cycle count) over 5 timed sleeps give the
cycles worth fraction x time; on a CPU a busy-wait of fraction x the host-timed median. The row's
info records what was planted (planted_fraction, planted_ms, base_ms): the A/B gate's measured
ratio is then compared with it, not assumed.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from attnbench.backends.base import Prepared, registry

TARGET = os.environ.get("ATTNBENCH_PLANT_BACKEND", "triton-flash")
FRACTION = float(os.environ.get("ATTNBENCH_PLANT_FRACTION", "0.03"))
CASE_PART = os.environ.get("ATTNBENCH_PLANT_CASE", "")


def _cuda_ms(fn, flush: torch.Tensor | None, calls: int) -> float:
    times = []
    for _ in range(calls):
        if flush is not None:
            flush.fill_(1)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _host_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def planted(base_cls: type) -> type:
    class Planted(base_cls):
        name = TARGET

        def prepare(self, case, inputs):
            inner = super().prepare(case, inputs)
            if CASE_PART not in case.case_id or FRACTION <= 0:
                return inner
            device = inputs.device
            for _ in range(3):
                inner.run()
            if device.type == "cuda":
                props = torch.cuda.get_device_properties(device)
                flush = torch.empty(
                    2 * (getattr(props, "L2_cache_size", 0) or 64 << 20), dtype=torch.int8, device=device
                )
                base_ms = _cuda_ms(inner.run, flush, 20)
                probe = 1_000_000
                ms_per_probe = _cuda_ms(lambda: torch.cuda._sleep(probe), None, 5)
                cycles = max(1, round(FRACTION * base_ms / ms_per_probe * probe))
                extra_ms = _cuda_ms(lambda: torch.cuda._sleep(cycles), None, 5)

                def run():
                    out = inner.run()
                    torch.cuda._sleep(cycles)
                    return out

            else:
                base_ms = _host_ms(inner.run, 10)
                extra_ms = FRACTION * base_ms
                cycles = None

                def run():
                    out = inner.run()
                    until = time.perf_counter() + extra_ms / 1e3
                    while time.perf_counter() < until:
                        pass
                    return out

            info = {
                **inner.info,
                "planted_fraction": extra_ms / base_ms,  # measured: the added work's time / the call's
                "planted_ms": extra_ms,
                "planted_base_ms": base_ms,
                "planted_target_fraction": FRACTION,
                "planted_cycles": cycles,
            }
            return Prepared(run=run, to_packed=inner.to_packed, info=info)

    return Planted


registry()[TARGET] = planted(registry()[TARGET])
