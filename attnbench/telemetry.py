"""NVML telemetry: clocks, power, temperature and throttle reasons sampled while a point runs."""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass, field
from typing import Any

# Reasons that mean the GPU ran slower than it would have (a flagged point); idle and
# application-clock settings are not counted.
_THROTTLE_BITS = {
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal": 0x20,
    "hw_thermal": 0x40,
    "hw_power_brake": 0x80,
}


def nvml_status() -> tuple[bool, str]:
    """Whether NVML answers here, and why not."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        return True, f"{count} device(s)"
    except Exception as err:  # noqa: BLE001 - any failure means no telemetry
        return False, f"NVML unavailable: {err}"


def _handle(index: int):
    import pynvml

    pynvml.nvmlInit()
    return pynvml.nvmlDeviceGetHandleByIndex(index)


def nvml_index(torch_index: int) -> int:
    """The NVML index of a torch device (they differ under CUDA_VISIBLE_DEVICES)."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if torch_index < len(ids) and ids[torch_index].isdigit():
            return int(ids[torch_index])
    return torch_index


def snapshot(index: int) -> dict[str, Any]:
    """Clocks, power, temperature and limits now (for doctor and the manifest)."""
    import pynvml

    h = _handle(index)
    out: dict[str, Any] = {}
    probes = {
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
        "temp_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "driver": lambda: pynvml.nvmlSystemGetDriverVersion(),
        "persistence_mode": lambda: pynvml.nvmlDeviceGetPersistenceMode(h),
    }
    for key, probe in probes.items():
        try:
            value = probe()
            out[key] = value.decode() if isinstance(value, bytes) else value
        except Exception:  # noqa: BLE001 - a probe the driver lacks is left out
            out[key] = None
    return out


def decode_reasons(mask: int) -> list[str]:
    return [name for name, bit in _THROTTLE_BITS.items() if mask & bit]


@dataclass
class TelemetrySampler:
    """Samples NVML every `period_s` on a thread between start() and stop(); with threaded=False only
    at start() and at stop() (two samples, nothing running while the point is timed)."""

    index: int
    period_s: float = 0.01
    threaded: bool = True
    samples: list[dict[str, float]] = field(default_factory=list)
    reasons: int = 0
    error: str | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TelemetrySampler:
        try:
            self._h = _handle(self.index)
        except Exception as err:  # noqa: BLE001
            self.error = f"NVML unavailable: {err}"
            return self
        if not self.threaded:
            self._sample()
            return self
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> bool:
        import pynvml

        h = self._h
        try:
            self.samples.append(
                {
                    "sm": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                    "mem": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
                    "power": pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
                    "temp": pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
                }
            )
            self.reasons |= pynvml.nvmlDeviceGetCurrentClocksEventReasons(h)
        except Exception as err:  # noqa: BLE001
            self.error = str(err)
            return False
        return True

    def _loop(self) -> None:
        while not self._stop.is_set() and self._sample():
            self._stop.wait(self.period_s)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        elif not self.threaded and hasattr(self, "_h"):
            self._sample()
        if not self.samples:
            return {"telemetry": self.error or "no samples"}
        sm = [s["sm"] for s in self.samples]
        reasons = decode_reasons(self.reasons)
        return {
            "sm_clock_mhz_mean": statistics.fmean(sm),
            "sm_clock_mhz_min": min(sm),
            "mem_clock_mhz_mean": statistics.fmean(s["mem"] for s in self.samples),
            "power_w_mean": statistics.fmean(s["power"] for s in self.samples),
            "power_w_max": max(s["power"] for s in self.samples),
            "temp_c_max": max(s["temp"] for s in self.samples),
            "throttle_reasons": reasons,
            "throttled": bool(set(reasons) - {"sync_boost"}),
            "telemetry_samples": len(self.samples),
        }
