"""The profiled child: one point (a case and a backend), its timed call run under a profiler.

    python -m attnbench.profile.target --case JSON --backend NAME --tool ncu|torch --result FILE
        [--device cuda|cpu] [--calls N] [--trace FILE]

It builds the case's inputs and reference, prepares the backend, checks the first call's output
against the reference (a wrong kernel is `incorrect` and not profiled), warms up, and only then
profiles: under ncu, one timed call between cudaProfilerStart and cudaProfilerStop (ncu runs with
--profile-from-start off, so nothing before or after is profiled); under the PyTorch profiler,
`--calls` calls, each after an L2 flush outside the call's window. The result file is one JSON
object: status (ok | skipped | failed | incorrect), reason, rel_err, rel_err_tol, info (the
backend's row columns), paged stats and, for torch, the trace summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

WARMUP_CALLS = 3
WARMUP_MS = 25.0


def argv_for(case_json: dict[str, Any], backend: str, tool: str, result: Path, device: str,
             calls: int = 5, trace: Path | None = None) -> list[str]:
    """The child's command line (the parent prefixes ncu's when profiling with ncu)."""
    argv = [sys.executable, "-m", "attnbench.profile.target", "--case", json.dumps(case_json),
            "--backend", backend, "--tool", tool, "--result", str(result), "--device", device,
            "--calls", str(calls)]
    return argv + (["--trace", str(trace)] if trace is not None else [])


def _warm_up(fn, sync) -> int:
    calls, start = 0, time.perf_counter()
    while calls < WARMUP_CALLS or (time.perf_counter() - start) * 1e3 < WARMUP_MS:
        fn()
        sync()
        calls += 1
        if calls >= 200:
            break
    return calls


def profile_point(case_json: dict[str, Any], backend_name: str, tool: str, device_name: str, calls: int,
                  trace: Path | None) -> dict[str, Any]:
    import torch

    from attnbench.backends import get_backend
    from attnbench.backends.base import Unsupported
    from attnbench.case import Case
    from attnbench.inputs import build_inputs
    from attnbench.point import describe_error
    from attnbench.reference import check_output

    case = Case.from_json(case_json)
    backend = get_backend(backend_name)
    device = torch.device("cuda:0" if device_name == "cuda" else "cpu")
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    result: dict[str, Any] = {}
    try:
        inputs = build_inputs(case, device)
    except Exception as err:  # noqa: BLE001 - reported as the row's reason
        return {"status": "failed", "reason": "inputs: " + describe_error(err)}
    if inputs.paged is not None:
        result["paged_stats"] = inputs.paged.stats
    try:
        prepared = backend.prepare(case, inputs)
    except Unsupported as err:
        return {**result, "status": "skipped", "reason": str(err)}
    except Exception as err:  # noqa: BLE001
        return {**result, "status": "failed", "reason": "prepare: " + describe_error(err)}
    result["info"] = prepared.info
    try:
        out = prepared.run()
        sync()
        check = check_output(prepared.to_packed(out), inputs)
        del out
    except Exception as err:  # noqa: BLE001
        return {**result, "status": "failed", "reason": "first call: " + describe_error(err)}
    result.update(check.row_fields())
    if not check.ok:
        return {**result, "status": "incorrect", "reason": check.reason}
    try:
        result["warmup_calls"] = _warm_up(prepared.run, sync)
        if tool == "ncu":
            sync()
            torch.cuda.profiler.start()  # cudaProfilerStart: ncu profiles from here ...
            prepared.run()
            sync()
            torch.cuda.profiler.stop()  # ... to here
        else:
            from attnbench.profile import torchprof

            flush = None
            if cuda:
                from attnbench.stream_hold import L2Flusher

                flush = L2Flusher(device)
            assert trace is not None, "--trace is required with --tool torch"
            torchprof.record(prepared.run, device.type, calls, trace, flush)
            result["torch"] = torchprof.summarize_trace(trace, device.type)
    except Exception as err:  # noqa: BLE001
        return {**result, "status": "failed", "reason": f"{tool} profiled call: " + describe_error(err)}
    return {**result, "status": "ok", "reason": ""}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="attnbench.profile.target", description=__doc__.splitlines()[0])
    p.add_argument("--case", required=True, help="the case as JSON (Case.to_json)")
    p.add_argument("--backend", required=True)
    p.add_argument("--tool", choices=("ncu", "torch"), required=True)
    p.add_argument("--result", required=True, type=Path)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--trace", type=Path, default=None)
    args = p.parse_args(argv)
    try:
        result = profile_point(json.loads(args.case), args.backend, args.tool, args.device, args.calls,
                               args.trace)
    except Exception as err:  # noqa: BLE001 - the parent reads the reason from the result file
        result = {"status": "failed", "reason": f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"}
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
