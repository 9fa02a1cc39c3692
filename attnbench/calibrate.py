"""Ceilings measured at the start of every run on the same device.

Copy bandwidth: a device-to-device copy of a buffer far larger than the L2, counting bytes read
plus bytes written (2 x size per copy). Matmul rate: a large square bf16 matmul on random data
(2 * n^3 FLOPs). On a CPU: a host memcpy and an fp32 matmul, so CPU runs have ceilings too.
Utilisation figures in the rows are fractions of these measured ceilings; the datasheet figures
are recorded beside them.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

# Datasheet figures (dense bf16 tensor TFLOP/s, HBM GB/s), by a substring of the device name.
DATASHEET = {
    "H200": {"datasheet_copy_gbps": 4800.0, "datasheet_tflops_bf16": 989.0},
    "H100 PCIe": {"datasheet_copy_gbps": 2000.0, "datasheet_tflops_bf16": 756.0},
    "H100": {"datasheet_copy_gbps": 3350.0, "datasheet_tflops_bf16": 989.0},
    "A100-SXM4-80GB": {"datasheet_copy_gbps": 2039.0, "datasheet_tflops_bf16": 312.0},
    "A100 80GB PCIe": {"datasheet_copy_gbps": 1935.0, "datasheet_tflops_bf16": 312.0},
    "A100": {"datasheet_copy_gbps": 1555.0, "datasheet_tflops_bf16": 312.0},
    "L40S": {"datasheet_copy_gbps": 864.0, "datasheet_tflops_bf16": 362.0},
}


def datasheet(name: str) -> dict[str, float | None]:
    for key, figures in DATASHEET.items():
        if key in name:
            return dict(figures)
    return {"datasheet_copy_gbps": None, "datasheet_tflops_bf16": None}


def _median_ms(fn, sync, reps: int) -> float:
    fn()
    sync()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _cuda_ms(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def calibrate(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return _calibrate_cuda(device)
    return _calibrate_cpu()


def _calibrate_cuda(device: torch.device) -> dict[str, Any]:
    copy_bytes = 1 << 30  # 1 GiB: ~20x the H100's 50 MB L2
    src = torch.randint(0, 255, (copy_bytes,), dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy_ms = _cuda_ms(lambda: dst.copy_(src), reps=20)
    copy_gbps = 2 * copy_bytes / (copy_ms * 1e-3) / 1e9
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    mm_ms = _cuda_ms(lambda: torch.matmul(a, b), reps=10)
    tflops = 2 * n**3 / (mm_ms * 1e-3) / 1e12
    name = torch.cuda.get_device_name(device)
    return {
        "copy_gbps": copy_gbps,
        "copy_method": "device-to-device copy of 1 GiB, bytes read + written, median of 20",
        "matmul_tflops": tflops,
        "matmul_method": f"bf16 {n}x{n}x{n} matmul on random data, median of 10",
        **datasheet(name),
    }


def _calibrate_cpu() -> dict[str, Any]:
    nbytes = 256 << 20
    src = torch.ones(nbytes, dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy_ms = _median_ms(lambda: dst.copy_(src), lambda: None, reps=5)
    n = 1024
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    mm_ms = _median_ms(lambda: torch.matmul(a, b), lambda: None, reps=5)
    return {
        "copy_gbps": 2 * nbytes / (copy_ms * 1e-3) / 1e9,
        "copy_method": "host memcpy of 256 MiB, bytes read + written, median of 5",
        "matmul_tflops": 2 * n**3 / (mm_ms * 1e-3) / 1e12,
        "matmul_method": f"fp32 {n}x{n}x{n} matmul on the CPU, median of 5",
        "datasheet_copy_gbps": None,
        "datasheet_tflops_bf16": None,
    }
