"""The thermal protocol for compute-bound points: run until the SM clock has settled, then sample.

A power-capped GPU lowers its clock within a point (sdpa-cudnn on an H200 at 700 W: 1980 -> ~1740 MHz,
its last third of samples 7-9% above its first), so where an adaptive stop cuts would decide the median.
Compute-bound points therefore run back to back until the clock has settled (two consecutive windows
within SETTLE_TOL of each other), then take a fixed number of samples; the settled clock and the energy
per call (NVML's total-energy counter over the last window) go into the row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WINDOW_S = 0.15  # one clock reading per window of back-to-back calls
SETTLE_TOL = 0.01  # two consecutive windows within 1% of each other count as settled
MIN_WARM_S = 0.3


@dataclass
class ThermalResult:
    settled: bool
    warm_s: float
    calls: int
    sm_clock_mhz: float | None
    energy_j_per_call: float | None

    def fields(self) -> dict[str, Any]:
        return {
            "thermal_settled": self.settled,
            "thermal_warmup_s": round(self.warm_s, 3),
            "thermal_warmup_calls": self.calls,
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


def settle(fn: Callable[[], Any], sync: Callable[[], None], nvml_index: int, max_s: float) -> ThermalResult:
    """Call fn back to back until the SM clock settles or max_s passes."""
    try:
        nvml: _Nvml | None = _Nvml(nvml_index)
    except Exception:  # noqa: BLE001 - no NVML: warm for the minimum time, record nothing
        nvml = None
    start = time.perf_counter()
    clocks: list[float] = []
    calls = 0
    energy_per_call = None
    while True:
        e0 = nvml.energy_mj() if nvml else None
        w0, n0 = time.perf_counter(), calls
        while time.perf_counter() - w0 < WINDOW_S:
            fn()
            calls += 1
            if calls % 8 == 0:
                sync()  # keep the queue short so the window's clock belongs to its calls
        sync()
        e1 = nvml.energy_mj() if nvml else None
        if e0 is not None and e1 is not None and calls > n0:
            energy_per_call = (e1 - e0) / 1e3 / (calls - n0)  # mJ -> J
        if nvml:
            clocks.append(nvml.sm_clock())
        elapsed = time.perf_counter() - start
        settled = len(clocks) >= 2 and abs(clocks[-1] - clocks[-2]) <= SETTLE_TOL * clocks[-2]
        enough = elapsed >= MIN_WARM_S and (settled or nvml is None)
        if enough or elapsed >= max_s:
            return ThermalResult(settled and nvml is not None, elapsed, calls,
                                 clocks[-1] if clocks else None, energy_per_call)
