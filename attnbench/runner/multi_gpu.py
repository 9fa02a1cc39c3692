"""One host, several GPUs: `attnbench sweep CONFIG --devices 0,1,...` (or `all`).

One worker process per device (attnbench.runner.worker.ProcessExecutor, so a crash or hang costs one point
and a fresh child, as in a one-GPU sweep), each pinned to its GPU by CUDA_VISIBLE_DEVICES in the
child's environment, so inside it the GPU is cuda:0. The workers take parts of cases from one
shared queue (attnbench.runner.device_queue): a fast device simply takes more. The queue holds input
groups (a contiguous case, then its paged variants) longest estimated first (attnbench.runner.shard's
cost model), so a worker usually takes a paged variant right after the contiguous case whose
inputs it reuses; when another worker takes it, the inputs are built again, which is cheap next to
timing. Cases, not whole groups, are the unit so that a small sweep of a few large groups still
splits evenly; a case's backends with a costly per-process warm-up (FlexAttention's torch.compile)
form a part of their own, which goes to the worker that has paid that warm-up.

One writer: each worker's thread in this process hands its rows to the main thread through a queue,
and only the main thread appends to results.jsonl and rewrites manifest.json, so rows never
interleave. Every row names the device that measured it (`worker_device`); the manifest holds each
device's calibration (`calibration_by_device`; `calibration` is the first device's).

For tests on a CPU, `--devices cpu,cpu` runs two CPU workers the same way.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from attnbench.backends import all_backends, get_backend
from attnbench.config.sweep_config import SweepConfig
from attnbench.point import base_row, failed
from attnbench.runner.contract import SweepOutcome, SweepRecord
from attnbench.runner.cpus import CPUS_ENV
from attnbench.runner.device_queue import DONE, Item, WorkQueue, queue_for
from attnbench.runner.plan import Plan
from attnbench.runner.progress import Progress
from attnbench.runner.results import RunDir
from attnbench.runner.worker import ProcessExecutor, Task


class DevicesError(ValueError):
    """A --devices value that cannot be used, or no worker could start; str() is the message."""


@dataclass(frozen=True)
class Worker:
    label: str  # "0", "1", ... (the GPU index as this process numbers it) or "cpu-0", "cpu-1", ...
    device: str  # "cuda" | "cpu"
    env: dict[str, str]  # set in the worker process before it touches CUDA


def parse_devices(spec: str, device: str, gpu_names: list[str] | None = None,
                  visible: str | None = None, cpus: list[int] | None = None) -> list[Worker]:
    """Workers for a --devices value.

    spec: "all", comma-separated GPU indices as this process numbers them ("0,1"), or "cpu" entries
    ("cpu,cpu": one CPU worker each, for tests). device: the sweep's resolved device (cpu|cuda).
    gpu_names: the name of each visible GPU (default: asked of torch). visible: this process's
    CUDA_VISIBLE_DEVICES (default: the environment's); index i maps to its i-th entry. cpus: the
    CPUs to share among the workers (default: this process's affinity; see cpu_shares).
    """
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:
        raise DevicesError(f"--devices {spec!r}: expected 'all', GPU indices like 0,1 or cpu,cpu")
    if all(s == "cpu" for s in items):
        if device != "cpu":
            raise DevicesError(f"--devices {spec}: CPU workers need --device cpu (the sweep runs on "
                               f"{device})")
        return [Worker(f"cpu-{i}", "cpu", {"ATTNBENCH_WORKER": f"cpu-{i}", **share})
                for i, share in enumerate(cpu_shares(len(items), cpus))]
    if device != "cuda":
        raise DevicesError(f"--devices {spec}: GPU workers need a CUDA device (the sweep runs on {device}); "
                           "for CPU workers use --devices cpu,cpu")
    if gpu_names is None:
        gpu_names = _gpu_names()
    count = len(gpu_names)
    if items == ["all"]:
        indices = list(range(count))
        if not indices:
            raise DevicesError("--devices all: no CUDA GPU is visible")
    else:
        if not all(s.isdigit() for s in items):
            raise DevicesError(f"--devices {spec!r}: expected 'all', GPU indices like 0,1 or cpu,cpu")
        indices = [int(s) for s in items]
        if len(set(indices)) != len(indices):
            raise DevicesError(f"--devices {spec}: each GPU at most once")
        bad = [i for i in indices if i >= count]
        if bad:
            raise DevicesError(f"--devices {spec}: no GPU {bad[0]}; this process sees {count} "
                               f"(indices 0..{count - 1})")
    models = {gpu_names[i] for i in indices}
    if len(models) > 1:
        raise DevicesError(f"--devices {spec}: GPUs of different models ({', '.join(sorted(models))}); "
                           "a run holds one GPU model: pick devices of one model")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    entries = [v.strip() for v in visible.split(",")] if visible else None
    workers = []
    for i, share in zip(indices, cpu_shares(len(indices), cpus), strict=True):
        physical = entries[i] if entries and i < len(entries) else str(i)
        workers.append(Worker(str(i), "cuda", {"CUDA_VISIBLE_DEVICES": physical, "ATTNBENCH_WORKER": str(i),
                                               **share}))
    return workers


def cpu_shares(n: int, cpus: list[int] | None = None) -> list[dict[str, str]]:
    """Each of n workers' CPUs as environment ({ATTNBENCH_CPUS: "0,1,..."}): contiguous, disjoint
    slices of the CPUs this process may use (cpus; default: its affinity). With fewer CPUs than
    workers nobody is pinned. Contiguous slices keep a worker on neighbouring cores; they do not
    follow the GPUs' NUMA nodes."""
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
            list(range(os.cpu_count() or 1))
    if len(cpus) < n:
        return [{} for _ in range(n)]
    size, extra = divmod(len(cpus), n)
    shares, start = [], 0
    for i in range(n):
        end = start + size + (i < extra)
        shares.append({CPUS_ENV: ",".join(map(str, cpus[start:end]))})
        start = end
    return shares


def _gpu_names() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def _gpu_facts(workers: list[Worker]) -> dict[str, Any]:
    """Name and UUID of each worker's GPU (the parent's numbering), for the manifest."""
    if not workers or any(w.device != "cuda" for w in workers):
        return {}
    import torch

    gpus = []
    try:
        for w in workers:
            props = torch.cuda.get_device_properties(int(w.label))
            gpus.append({"index": int(w.label), "cuda_visible_devices": w.env["CUDA_VISIBLE_DEVICES"],
                         "name": props.name, "uuid": str(getattr(props, "uuid", "")) or None})
    except (RuntimeError, AssertionError, ValueError) as err:  # metadata only: the workers report errors
        return {"gpus": f"unavailable: {err}"}
    return {"gpu_name": gpus[0]["name"], "gpu_uuid": gpus[0]["uuid"], "gpus": gpus}


# ---- the runner --------------------------------------------------------------------------------


def _work(w: Worker, ex: ProcessExecutor, work: WorkQueue, events: queue.Queue, stop: threading.Event,
          device: str) -> None:
    """A worker's thread: start its process, then take items until none is left anywhere."""
    try:
        events.put(("calibration", w.label, ex.start(), ex.start_s, ex.start_phases))
    except Exception as err:  # noqa: BLE001 - reported; the other workers go on
        events.put(("dead", w.label, f"{type(err).__name__}: {err}"))
        events.put(("exit", w.label))
        return
    try:
        while not stop.is_set():
            item = work.take(w.label)
            if item is DONE:
                break
            if item is None:
                time.sleep(0.2)
                continue
            try:
                _measure(w, ex, item, events, stop, device)
            except Exception as err:  # noqa: BLE001 - a worker that cannot restart: hand its points back
                work.done(item, w.label, failed=not stop.is_set())
                if not stop.is_set():
                    events.put(("dead", w.label, f"{type(err).__name__}: {err}"))
                return
            work.done(item, w.label)
    finally:
        with contextlib.suppress(Exception):  # closing after a kill from the main thread
            ex.close()
        events.put(("exit", w.label))


def _measure(w: Worker, ex: ProcessExecutor, item: Item, events: queue.Queue, stop: threading.Event,
             device: str) -> None:
    """Measure an item's backends, removing each from it once its row is sent."""
    case, names = item.pc.case, item.names
    make_failed: Callable[[str, str], dict[str, Any]] = (
        lambda name, reason: failed(base_row(case, get_backend(name), device), reason)
    )
    on_start = lambda name: events.put(("start", w.label, case.case_id, name))
    for row in ex.run(Task(case, list(names)), on_start, make_failed):
        if stop.is_set():  # interrupted: the main thread writes nothing more
            return
        events.put(("row", w.label, row))
        if row["backend"] in names:
            names.remove(row["backend"])


def run_multi_device(
    cfg: SweepConfig,
    plan: Plan,
    run: RunDir,
    device: str,
    env: dict[str, Any],
    workers: list[Worker],
    progress: Progress | None = None,
    resume: bool = False,
    config_path: str | None = None,
    manifest_extra: dict[str, Any] | None = None,
) -> SweepOutcome:
    """The sweep (attnbench.runner.contract's contract) with one worker process per device. Raises
    DevicesError, after recording the run as failed, when no worker is left to measure the rest."""
    if not workers:
        raise DevicesError("no devices given")
    facts = {"devices": [w.label for w in workers], "worker_count": len(workers),
             "worker_cpus": {w.label: w.env.get(CPUS_ENV) for w in workers}, **_gpu_facts(workers)}
    record = SweepRecord(cfg, plan, run, device, env, progress, resume, config_path, manifest_extra, facts)
    # longest group first: the last items to finish are short ones, so devices end close together
    work = queue_for(plan, record.policy, device, all_backends(), record.done)
    pool = _WorkerPool(workers, record, work)
    with record.recording(pool.stop):
        record.write_skipped()
        if len(work):
            pool.start()
        pool.collect()
    return record.outcome


class _WorkerPool:
    """The workers' threads and the main thread's side of their events (the one writer)."""

    def __init__(self, workers: list[Worker], record: SweepRecord, work: WorkQueue) -> None:
        self.workers, self.record, self.work = workers, record, work
        self.events: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.executors = {w.label: ProcessExecutor(w.device, record.policy, w.env) for w in workers}
        self.threads: list[threading.Thread] = []
        self.calibrations: dict[str, Any] = {}
        self.start_s: dict[str, float] = {}  # seconds the runner waited for each worker to start
        self.start_phases: dict[str, dict[str, float]] = {}  # where each worker's start went
        self.errors: dict[str, str] = {}

    def start(self) -> None:
        self.threads = [
            threading.Thread(target=_work, name=f"attnbench-worker-{w.label}", daemon=True,
                             args=(w, self.executors[w.label], self.work, self.events, self.stopping,
                                   self.record.device))
            for w in self.workers
        ]
        for t in self.threads:
            t.start()

    def collect(self) -> None:
        """Handle the workers' events until every worker has exited."""
        alive = len(self.threads)
        while alive:
            try:
                msg = self.events.get(timeout=0.5)  # wake up now and then so Ctrl-C lands here
            except queue.Empty:
                continue
            if msg[0] == "exit":
                alive -= 1
            else:
                self._handle(msg)

    def _handle(self, msg: tuple) -> None:
        kind, label, run = msg[0], msg[1], self.record.run
        if kind == "row":
            self.record.emit({**msg[2], "worker_device": label})
        elif kind == "start":
            self.record.progress.point_started(msg[2], msg[3])
        elif kind == "calibration":
            self.calibrations[label] = msg[2]
            self.start_s[label] = msg[3]
            self.start_phases[label] = msg[4]
            first = next(w.label for w in self.workers if w.label in self.calibrations)
            run.update_manifest(calibration=self.calibrations[first], calibration_by_device=self.calibrations,
                                worker_start_s_by_device=self.start_s,
                                worker_start_phases_by_device=self.start_phases)
        elif kind == "dead":
            self.errors[label] = msg[2]
            run.update_manifest(worker_errors=self.errors)

    def stop(self, failed: bool) -> DevicesError | None:
        """Stop the workers (killed when the sweep failed or was interrupted); a DevicesError when
        parts of cases are left with no worker to measure them."""
        self.stopping.set()
        if failed:
            for ex in self.executors.values():
                ex.kill()
        for t in self.threads:
            t.join(timeout=10)
        left = len(self.work)
        if left and not failed:
            return DevicesError(f"no worker left to measure {left} part(s) of cases; "
                                + "; ".join(f"device {k}: {v}" for k, v in self.errors.items())
                                + f" (the run in {self.record.run.path} is resumable with --resume)")
        return None
