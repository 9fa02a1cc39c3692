"""The paired layout measurement, a post-step of the sweep: does block-table indirection cost time?

The sweep's own rows answer it badly: a shuffled point and its contiguous twin are timed at
different moments on separately allocated pools, and on a CPU the drift between points and where
a pool lies (up to 18% between allocations) decide their ratio (medians of +10.8%, -1.4%, +2.9%,
+13.1%, -0.1% and -10.1% in six runs of smoke.yaml). When a config has `layout_pairs:`
(attnbench.config.layout_pairs), after the points every paged-KV backend that is not naive (naive
gathers the blocks first) and every pair of this run's ok rows that differ only in block order are
measured again, both sides alternately in one process (attnbench.runner.layout_measure), over
`rounds` fresh allocations, and judged on quads of ABBA pairs (attnbench.runner.layout_stats).
The records go to RUN/layout_pairs.json, rewritten after each one, so nothing measured is lost; a
backend that fails, hangs or crashes its process is a record with the reason.

The measuring runs in a child process (isolate, the sweep's default), a fresh one after a crash or
a hang, as the points do (attnbench.runner.worker).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from attnbench.case import Case
from attnbench.config.layout_pairs import LayoutPairs
from attnbench.runner.layout_measure import PairJob, measure_job, timer_kind
from attnbench.runner.layout_stats import layout_ratio

LAYOUT_FILE = "layout_pairs.json"
KIND = "attnbench layout pairs"
METHOD = (
    "per (case pair, paged backend): both block orders' inputs built afresh each round, both outputs "
    "checked by the harness's per-(sequence, head) rule, then timed alternately in ABBA order (gate "
    "machinery, contiguous = A, shuffled = B); an AB pair and the next BA pair form a quad (the order "
    "effect of the cache cancels); ratio = median of the quads' shuffled/contiguous ratios pooled over the "
    "rounds; interval = its sign-test interval, widened to the Student-t interval of the rounds' medians "
    "where wider (placement of the pools), at confidence 1 - alpha/m (Bonferroni over the m records timed)"
)


# ---- which pairs ---------------------------------------------------------------------------------
def find_jobs(cases: Iterable[Case], rows: list[dict[str, Any]]) -> list[PairJob]:
    """Every (shuffled case, backend) whose row and whose contiguous twin's row are ok in this run,
    for backends on a paged KV cache outside the naive family (the claims check's `kind == paged`)."""
    ok = {(str(r.get("case_id")), str(r.get("backend"))) for r in rows
          if r.get("status") == "ok" and r.get("block_size") is not None and r.get("family") != "naive"}
    jobs: list[PairJob] = []
    seen: set[tuple[str, str]] = set()
    for case in cases:
        if not case.paged or case.kv_layout != "shuffled":
            continue
        twin = PairJob(case, "").contiguous.case_id
        for cid, backend in sorted(k for k in ok if k[0] == case.case_id):
            if (twin, backend) in ok and (cid, backend) not in seen:
                seen.add((cid, backend))
                jobs.append(PairJob(case, backend))
    return jobs


# ---- the document ----------------------------------------------------------------------------------
def _with_stats(rec: dict[str, Any], alpha: float) -> dict[str, Any]:
    """The record with its ratio and interval in front (ok records with samples), samples last."""
    out = {k: v for k, v in rec.items() if k not in ("samples_ms", "orders", "errors")}
    if rec["status"] == "ok":
        rounds = list(zip(rec["samples_ms"]["contiguous"], rec["samples_ms"]["shuffled"], rec["orders"],
                          strict=True))
        stats = layout_ratio(rounds, alpha)
        if stats is None:
            out.update(status="failed", reason="no complete AB/BA quad was timed")
        else:
            out.update(stats.as_dict())
    out.update(errors=rec["errors"], orders=rec["orders"], samples_ms=rec["samples_ms"])
    return out


def document(records: list[dict[str, Any]], pending: int, settings: LayoutPairs, device: str,
             flush_l2: bool, wall_s: float) -> dict[str, Any]:
    """layout_pairs.json's content. alpha per record: the family's over the records timed, counting
    those still to come (at the end: exactly the timed ones)."""
    timed = sum(1 for r in records if r["status"] == "ok" and r["rounds_done"]) + pending
    point_alpha = settings.alpha / max(timed, 1)
    return {
        "kind": KIND, "settings": settings.describe(), "device": device,
        "timer": timer_kind(device, flush_l2), "alpha": settings.alpha, "point_alpha": point_alpha,
        "method": METHOD, "complete": pending == 0, "wall_s": round(wall_s, 3),
        "records": [_with_stats(r, point_alpha) for r in records],
    }  # fmt: skip


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, default=str) + "\n")
    os.replace(tmp, path)


# ---- where it runs ---------------------------------------------------------------------------------
def _child_main(conn: Any, settings: LayoutPairs, device: str, flush_l2: bool) -> None:
    """A measuring child: one ("job", case json, backend) at a time, a ("record", ...) back."""
    import signal

    from attnbench.runner import child

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    child._die_with_parent()
    os.environ["ATTNBENCH_QUIET_PLUGIN_ERRORS"] = "1"
    import attnbench.backends  # noqa: F401 - the imports before the first job, not inside its timing

    conn.send(("ready",))
    try:
        while True:
            msg = conn.recv()
            if msg[0] != "job":
                break
            job = PairJob(Case.from_json(msg[1]), msg[2])
            conn.send(("record", measure_job(job, settings, device, flush_l2)))
    except (EOFError, OSError):
        pass
    child._exit()


class _Isolated:
    """Jobs in a child process, replaced after a crash or a hang (the job becomes a failed record)."""

    def __init__(self, settings: LayoutPairs, device: str, flush_l2: bool, timeout_s: float) -> None:
        self.args = (settings, device, flush_l2)
        self.timeout_s = timeout_s
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        from attnbench.runner.child import _CTX

        parent, child_end = _CTX.Pipe()
        self.proc = _CTX.Process(target=_child_main, args=(child_end, *self.args), daemon=True,
                                 name="attnbench-layout-pairs")
        self.proc.start()
        child_end.close()
        self.conn = parent
        if self._recv(600) != ("ready",):
            raise RuntimeError("the measuring process did not start")

    def _recv(self, timeout: float) -> Any:
        from attnbench.runner.worker import recv_from_child

        return recv_from_child(self.conn, self.proc, timeout)

    def run(self, job: PairJob) -> dict[str, Any]:
        if self.proc is None or not self.proc.is_alive():
            try:
                self._start()
            except Exception as err:  # noqa: BLE001 - every job says why, the sweep goes on
                self.kill()
                return _failed(job, f"measuring process: {type(err).__name__}: {err}")
        self.conn.send(("job", job.shuffled.to_json(), job.backend))
        msg = self._recv(self.timeout_s)
        if msg is not None and msg[0] == "record":
            return msg[1]
        self.kill()
        why = f"timed out after {self.timeout_s:g} s" if msg is None else str(msg[1])
        return _failed(job, f"{why} (measuring process replaced)")

    def kill(self) -> None:
        from attnbench.runner.worker import stop_process

        stop_process(self.proc, None)
        self.proc = None

    def close(self) -> None:
        from attnbench.runner.worker import stop_process

        stop_process(self.proc, self.conn)
        self.proc = None


def _failed(job: PairJob, reason: str) -> dict[str, Any]:
    return {**job.key(), "status": "failed", "reason": reason, "rounds_done": 0,
            "samples_ms": {"contiguous": [], "shuffled": []}, "orders": [],
            "errors": {"contiguous": [], "shuffled": []}}


def measure_pairs(jobs: list[PairJob], settings: LayoutPairs, device: str, run_dir: Path,
                  flush_l2: bool = False, isolate: bool = True, timeout_s: float = 180.0,
                  progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Measure every job into run_dir/layout_pairs.json (rewritten after each); the final document."""
    started = time.perf_counter()
    path = run_dir / LAYOUT_FILE
    records: list[dict[str, Any]] = []
    runner = _Isolated(settings, device, flush_l2, timeout_s) if isolate else None
    try:
        for i, job in enumerate(jobs):
            progress(f"layout pair {i + 1}/{len(jobs)}: {job.shuffled.case_id} [{job.backend}]")
            rec = runner.run(job) if runner is not None else measure_job(job, settings, device, flush_l2)
            records.append(rec)
            _write(path, document(records, len(jobs) - i - 1, settings, device, flush_l2,
                                  time.perf_counter() - started))
    finally:
        if runner is not None:
            runner.close()
    doc = document(records, 0, settings, device, flush_l2, time.perf_counter() - started)
    _write(path, doc)
    return doc


def write_layout_pairs(settings: LayoutPairs, cases: Iterable[Case], run_dir: Path, device: str,
                       flush_l2: bool, isolate: bool, timeout_s: float) -> None:
    """The sweep command's post-step: the jobs of this run's rows, measured, and one line."""
    from attnbench.console import note, warn
    from attnbench.console import out as console
    from attnbench.runner.results import load_rows

    started = time.perf_counter()
    jobs = find_jobs(cases, load_rows(run_dir / "results.jsonl"))
    if not jobs:
        note("layout pairs: no paged backend has ok rows for both block orders of a case; nothing to pair")
        return
    doc = measure_pairs(jobs, settings, device, run_dir, flush_l2, isolate, timeout_s)
    bad = [r for r in doc["records"] if r["status"] != "ok"]
    for r in bad:
        warn(f"layout pairs: {r['shuffled_case_id']} [{r['backend']}]: {r['status']}: {r['reason']}")
    summary = "; ".join(
        f"{r['backend']} {r['seqlen_mix']} bs{r['block_size']} {r['ratio']:.4f} "
        f"[{_bound(r['low'])}, {_bound(r['high'])}]"
        for r in doc["records"] if r["status"] == "ok" and "ratio" in r)
    console.print(f"layout pairs: {len(jobs)} (case, backend) pairs in {time.perf_counter() - started:.1f} s"
                  f" -> {run_dir / LAYOUT_FILE}" + (f" (shuffled/contiguous: {summary})" if summary else ""),
                  highlight=False, soft_wrap=True)


def _bound(x: float | None) -> str:
    return "unbounded" if x is None or not math.isfinite(x) else f"{x:.4f}"
