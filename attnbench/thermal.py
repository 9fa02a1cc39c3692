"""The thermal protocol for compute-bound points: run until the SM clock has settled, then sample.

A power-capped GPU lowers its clock within a point (sdpa-cudnn on an H200 at 700 W: 1980 -> ~1740 MHz,
its last third of samples 7-9% above its first), so where an adaptive stop cuts would decide the median.
Compute-bound points therefore run the sampling loop itself (flush, hold, call), discarding its
samples, until two consecutive windows agree within SETTLE_TOL (their median sample times, and their SM
clocks where NVML is there), then take a fixed number of samples. Settling with back-to-back calls
instead leaves the GPU hotter than the held samples run it: on an H200 the first ten of fifty samples
were then 8-13% slower than the last ten, and the median moved with where the window fell. The settled
clock and the energy per call (NVML's total-energy counter, on back-to-back calls after the samples)
go into the row.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WINDOW_S = 0.15  # one steady-state check (sample median, SM clock) per window of sample rounds
SETTLE_TOL = 0.01  # two consecutive windows within 1% of each other count as settled
MIN_WARM_S = 0.3
ENERGY_WINDOW_S = 0.25
ENERGY_STEP_WAIT_S = 0.2  # give up waiting for a counter step after this long


@dataclass
class ThermalResult:
    settled: bool
    warm_s: float
    rounds: int  # rounds of discarded samples
    sm_clock_mhz: float | None
    energy_j_per_call: float | None

    def fields(self) -> dict[str, Any]:
        return {
            "thermal_settled": self.settled,
            "thermal_warmup_s": round(self.warm_s, 3),
            "thermal_warmup_rounds": self.rounds,
            "sm_clock_mhz_settled": self.sm_clock_mhz,
            "energy_j_per_call": self.energy_j_per_call,
        }


def is_compute_bound(flops: float, min_bytes: float, calibration: dict[str, Any]) -> bool:
    """Arithmetic intensity (FLOP per byte) above the calibrated ridge point (matmul rate / copy rate)."""
    tflops, gbps = calibration.get("matmul_tflops"), calibration.get("copy_gbps")
    if not tflops or not gbps or min_bytes <= 0:
        return False
    ridge = tflops * 1e12 / (gbps * 1e9)  # FLOP/byte where the two ceilings meet
    return flops / min_bytes > ridge


class _Nvml:
    def __init__(self, index: int) -> None:
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)

    def sm_clock(self) -> float:
        return float(self.nvml.nvmlDeviceGetClockInfo(self.handle, self.nvml.NVML_CLOCK_SM))

    def energy_mj(self) -> float | None:
        try:
            return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except Exception:  # noqa: BLE001 - not every GPU has the counter
            return None


def settle(
    sample_round: Callable[[], list[float]], nvml_index: int, max_s: float
) -> ThermalResult:
    """Take rounds of samples (discarded) until the point is in steady state or max_s passes.

    Steady state: two consecutive windows of WINDOW_S whose median sample times are within
    SETTLE_TOL of each other and, with NVML, whose closing SM clocks are too. The rounds are the
    timed loop's own (flush, hold, call), so the duty cycle, the power and the clock are those of the
    samples that follow.
    """
    try:
        nvml: _Nvml | None = _Nvml(nvml_index)
    except Exception:  # noqa: BLE001 - no NVML: settle on the sample times alone
        nvml = None
    start = time.perf_counter()
    clocks: list[float] = []
    medians: list[float] = []
    rounds = 0
    while True:
        w0 = time.perf_counter()
        window: list[float] = []
        while time.perf_counter() - w0 < WINDOW_S or not window:
            window += sample_round()
            rounds += 1
        medians.append(statistics.median(window) if window else math.nan)
        if nvml:
            clocks.append(nvml.sm_clock())
        elapsed = time.perf_counter() - start
        settled = len(medians) >= 2 and _close(medians[-1], medians[-2]) and (
            nvml is None or _close(clocks[-1], clocks[-2])
        )
        if (elapsed >= MIN_WARM_S and settled) or elapsed >= max_s:
            return ThermalResult(settled, elapsed, rounds, clocks[-1] if clocks else None, None)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= SETTLE_TOL * b


def energy_per_call(fn: Callable[[], Any], sync: Callable[[], None], nvml_index: int) -> float | None:
    """Joules per call of back-to-back calls, from NVML's total-energy counter (mJ).

    The counter advances in steps (tens of ms apart on an H100/H200), so a window read at arbitrary
    times is off by up to a step: the window here opens and closes on counter changes, and spans
    at least ENERGY_WINDOW_S. Run after the samples, so its heat does not reach them.
    """
    try:
        nvml = _Nvml(nvml_index)
    except Exception:  # noqa: BLE001
        return None
    if nvml.energy_mj() is None:
        return None

    def until_step(calls: int) -> tuple[float, int]:
        e = nvml.energy_mj()
        t0 = time.perf_counter()
        while True:
            fn()
            calls += 1
            if calls % 4 == 0:
                sync()
                now = nvml.energy_mj()
                if now != e or time.perf_counter() - t0 > ENERGY_STEP_WAIT_S:
                    return float(now or 0.0), calls

    e0, n0 = until_step(0)
    t0 = time.perf_counter()
    calls = n0
    while time.perf_counter() - t0 < ENERGY_WINDOW_S:
        fn()
        calls += 1
        if calls % 4 == 0:
            sync()
    e1, n1 = until_step(calls)
    return (e1 - e0) / 1e3 / (n1 - n0) if n1 > n0 and e1 > e0 else None
