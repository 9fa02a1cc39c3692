"""One point: a backend on a case's inputs, checked against the reference, then timed.

Correct before timed: the first call's output is judged against the float32/float64 reference per
sequence and query head (attnbench.reference: the rule, the metric and the tolerance live there); a
wrong or non-finite output makes the row `incorrect` and the point is not timed.

The row's columns, their types and units are attnbench.row's; `checked` holds a row to them where
rows are written (in the test suite: attnbench.row.STRICT_ENV).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from attnbench import metrics
from attnbench import row as columns
from attnbench.backends import get_backend
from attnbench.backends.base import Backend, Unsupported
from attnbench.case import Case
from attnbench.config.sweep_config import TimingPolicy
from attnbench.inputs import Inputs, clone_inputs
from attnbench.measure import measure_memory, time_callable
from attnbench.reference import check_output
from attnbench.telemetry import TelemetrySampler, nvml_index
from attnbench.thermal import is_compute_bound


def base_row(case: Case, backend: Backend, device: str) -> dict[str, Any]:
    row = case.describe()
    row.update(
        backend=backend.name,
        family=backend.family,
        impl=backend.impl,
        device=device,
        flops=metrics.flops(case),
        min_hbm_bytes=metrics.min_hbm_bytes(case),
        padding_waste=metrics.padding_waste(case.kv_lens),
    )
    return row


def shipped(backend: Backend) -> bool:
    """A backend of this package, whose rows hold only attnbench.row's columns (a plugin's
    Prepared.info may add its own)."""
    return type(backend).__module__.startswith("attnbench.backends.")


def checked(row: dict[str, Any]) -> dict[str, Any]:
    """The row, after attnbench.row.check: in strict mode (the test suite) a column the row module
    does not define, or a value of another type, raises RowError here, where the row is written."""
    if not columns.strict():
        return row
    try:
        extra_ok = not shipped(get_backend(row["backend"]))
    except KeyError:  # a backend no longer registered: its row came from elsewhere
        extra_ok = True
    return columns.check(row, extra_ok)


def skipped(row: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**row, "status": "skipped", "reason": reason}


def failed(row: dict[str, Any], reason: str) -> dict[str, Any]:
    return {**row, "status": "failed", "reason": reason}


def describe_error(err: BaseException) -> str:
    if isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower():
        return "out of memory: " + " ".join(str(err).split())[:200]
    text = " ".join(str(err).split())[:400]
    return f"{type(err).__name__}: {text}"


def cuda_poisoned(err: BaseException) -> bool:
    """Whether the error leaves the CUDA context unusable (the worker must be replaced)."""
    text = str(err).lower()
    return any(
        s in text
        for s in (
            "illegal memory access",
            "unspecified launch failure",
            "device-side assert",
            "illegal instruction",
            "misaligned address",
            "cuda error: an illegal",
        )
    )


def input_copies(
    case: Case, backend: Backend, inputs: Inputs, policy: TimingPolicy, first: Callable[[], Any]
) -> tuple[list[Callable[[], Any]], str]:
    """The callables the GPU samples rotate over (TimingPolicy.input_copies): the checked first one,
    and the backend prepared on clones of its inputs at other addresses while a copy's inputs stay
    within input_copies_max_mb. Each copy's output is checked against the shared reference like the
    first; returns (runs, problem)."""
    n = policy.input_copies if inputs.device.type == "cuda" else 1
    if n <= 1 or inputs.input_bytes() > policy.input_copies_max_mb * 2**20:
        return [first], ""
    runs = [first]
    for i in range(1, n):
        copy = clone_inputs(inputs)
        prepared = backend.prepare(case, copy)
        check = check_output(prepared.to_packed(prepared.run()), copy)
        if not check.ok:
            return runs, f"input copy {i}: {check.reason}"
        runs.append(prepared.run)
    return runs, ""


def run_point(
    case: Case,
    backend: Backend,
    inputs: Inputs,
    policy: TimingPolicy,
    calibration: dict[str, Any],
) -> dict[str, Any]:
    """Measure one point and return its row. Raises only for errors that poison the CUDA context."""
    device = inputs.device
    row = base_row(case, backend, device.type)
    if inputs.paged is not None:
        row.update(inputs.paged.stats)
    # first_call_s: wall seconds from prepare's start to the end of the first (synchronised) call,
    # compile, autotuning and JIT loads included: what a user waits before the first output.
    started = time.perf_counter()
    try:
        prepared = backend.prepare(case, inputs)
    except Unsupported as err:
        return skipped(row, str(err))
    except Exception as err:  # noqa: BLE001 - a backend failure is a row, never a crash
        if cuda_poisoned(err):
            raise
        return failed(row, "prepare: " + describe_error(err))
    # Untimed set-up including every compile and first call the backend makes for this case (a new
    # pattern, shape or dtype): with compile_s and new_kernel it answers "does a new window recompile?".
    row["prepare_s"] = round(time.perf_counter() - started, 4)
    row.update(prepared.info)
    try:
        out, mem = measure_memory(prepared.run, device)
        row["first_call_s"] = round(time.perf_counter() - started, 4)
        row.update(mem)
        check = check_output(prepared.to_packed(out), inputs)
        del out
    except Exception as err:  # noqa: BLE001
        if cuda_poisoned(err):
            raise
        return failed(row, "first call: " + describe_error(err))
    row.update(check.row_fields())
    if not check.ok:
        return {**row, "status": "incorrect", "reason": check.reason}
    try:
        runs, copy_problem = input_copies(case, backend, inputs, policy, prepared.run)
    except Exception as err:  # noqa: BLE001
        if cuda_poisoned(err):
            raise
        return failed(row, "input copies: " + describe_error(err))
    if copy_problem:
        return {**row, "status": "incorrect", "reason": copy_problem}
    nvml = nvml_index(device.index or 0) if device.type == "cuda" else None
    compute_bound = is_compute_bound(row["flops"], row["min_hbm_bytes"], calibration)
    period = policy.telemetry_period_s
    threaded = policy.telemetry_thread == "always" or (policy.telemetry_thread == "compute-bound"
                                                       and compute_bound)
    sampler = TelemetrySampler(nvml, period, threaded).start() if nvml is not None and period > 0 else None
    try:
        timing = time_callable(runs, device, policy, compute_bound=compute_bound, nvml_index=nvml)
    except Exception as err:  # noqa: BLE001
        if sampler is not None:
            sampler.stop()
        if cuda_poisoned(err):
            raise
        return failed(row, "timing: " + describe_error(err))
    if sampler is not None:
        row.update(sampler.stop())
    row.update(timing.summary())
    row.update(metrics.achieved(case, row["latency_ms_p50"]))
    copy_gbps = calibration.get("copy_gbps")
    peak_tflops = calibration.get("matmul_tflops")
    row["bw_util"] = row["hbm_gbps"] / copy_gbps if copy_gbps else None
    row["flop_util"] = row["tflops"] / peak_tflops if peak_tflops else None
    row["compute_bound"] = compute_bound
    row["status"] = "ok"
    row["reason"] = ""
    return row
