"""One (case pair, backend) of the paired layout measurement, in the process that measures.

A job is a paged backend and two cases that differ only in block order (shuffled, contiguous).
The job builds the problem's tensors and reference once, as the sweep does (seeded random Q/K/V,
never zeros); each round then allocates both block orders' inputs afresh (a copy of Q and a new pool
for each order, from the same K/V; which pool is allocated first alternates), prepares
the backend on both, checks both outputs by the harness's per-(sequence, head) rule
(attnbench.reference) and only then times them alternately in ABBA order with the gate's machinery
(attnbench.gate.ab_timing.alternate: contiguous is A, shuffled B). The raw samples come back; the
statistics are the caller's (attnbench.runner.layout_stats), so a record whose later round fails
keeps the rounds measured before it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

from attnbench.case import Case
from attnbench.config.layout_pairs import LayoutPairs


@dataclass(frozen=True)
class PairJob:
    shuffled: Case
    backend: str

    @property
    def contiguous(self) -> Case:
        return replace(self.shuffled, kv_layout="contiguous")

    def key(self) -> dict[str, Any]:
        return {"shuffled_case_id": self.shuffled.case_id, "contiguous_case_id": self.contiguous.case_id,
                "backend": self.backend, "workload": self.shuffled.workload,
                "seqlen_mix": self.shuffled.seqlen_mix, "block_size": self.shuffled.block_size}


def timer_kind(device_type: str, flush_l2: bool) -> str:
    if device_type == "cuda":
        return ("CUDA events around held-stream samples" + (", L2 flushed before each" if flush_l2 else ""))
    return "host perf_counter around each call (no cache flush)"


def _release(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def measure_job(job: PairJob, settings: LayoutPairs, device_name: str, flush_l2: bool) -> dict[str, Any]:
    """The job's record: key, status (ok | incorrect | failed), reason, and per round the samples
    (ms), the pair orders and both sides' worst-cell error ratios. Never raises for a backend's
    failure; the statistics are added by the caller."""
    import torch

    from attnbench.backends import get_backend
    from attnbench.gate.ab import worst_sequence_error
    from attnbench.gate.ab_timing import alternate
    from attnbench.inputs import build_inputs
    from attnbench.point import describe_error

    device = torch.device(device_name)
    rec: dict[str, Any] = {**job.key(), "device": device_name, "timer": timer_kind(device.type, flush_l2),
                           "status": "ok", "reason": "", "rounds_done": 0,
                           "samples_ms": {"contiguous": [], "shuffled": []}, "orders": [],
                           "errors": {"contiguous": [], "shuffled": []}}
    started = time.perf_counter()
    budget = settings.max_time_s / settings.rounds
    cases = {"shuffled": job.shuffled, "contiguous": job.contiguous}
    stage = "backend"
    try:
        backend = get_backend(job.backend)
        stage = "inputs"
        # the tensors and reference once (seconds for a long-context GPU case), the pools per round
        base = build_inputs(job.shuffled.without_paging(), device)
        for r in range(settings.rounds):
            stage = "inputs"
            fresh = replace(base, q=base.q.clone())
            order = ("shuffled", "contiguous") if r % 2 == 0 else ("contiguous", "shuffled")
            inputs = {side: build_inputs(cases[side], device, fresh) for side in order}
            runs = {}
            for side in order:
                stage = f"{side}: prepare"
                prepared = backend.prepare(cases[side], inputs[side])
                stage = f"{side}: first call"
                err = worst_sequence_error(prepared.to_packed(prepared.run()), inputs[side])
                rec["errors"][side].append(err if math.isfinite(err) else None)
                if not math.isfinite(err) or err > 1.0:
                    why = "output has NaN or Inf" if not math.isfinite(err) else \
                        f"its worst (sequence, head) cell's error is {err:.3g}x what the check allows"
                    rec.update(status="incorrect", reason=f"round {r}: {side}: {why}")
                    return _finish(rec, started)
                runs[side] = prepared.run
            stage = "timing"
            orders: list[str] = []
            a_ms, b_ms = alternate(runs["contiguous"], runs["shuffled"], None, None, device, settings.pairs,
                                   budget, flush_l2=flush_l2, orders=orders)
            rec["samples_ms"]["contiguous"].append(a_ms)
            rec["samples_ms"]["shuffled"].append(b_ms)
            rec["orders"].append(orders)
            rec["rounds_done"] = r + 1
            del runs, inputs, fresh, prepared
            _release(device)
    except Exception as err:  # noqa: BLE001 - a failing backend is a record with its reason
        rec.update(status="failed", reason=f"round {rec['rounds_done']}: {stage}: {describe_error(err)}")
    return _finish(rec, started)


def _finish(rec: dict[str, Any], started: float) -> dict[str, Any]:
    rec["wall_s"] = round(time.perf_counter() - started, 3)
    return rec
