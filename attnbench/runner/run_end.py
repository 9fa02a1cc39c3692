"""How a sweep ended, written true into its manifest: status, rows_written and what is missing.

`complete` means every planned point has a row on disk, checked against the file, not assumed
because the loop returned. An ending other than that is named: `interrupted` (Ctrl-C or SIGTERM:
resumable), `failed` (an exception, a full disk: the error is recorded; resumable), `incomplete`
(the loop ended but planned points have no row). A SIGKILL leaves `running`; the run's lock then
names a dead process and the next --resume takes over and finishes the run.

While the ending is written, SIGINT and SIGTERM are held off (a second Ctrl-C used to leave the
manifest `running`) and delivered afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from attnbench.runner.plan import Plan
from attnbench.runner.results import RunDir, now_iso, point_key, read_rows


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop as on Ctrl-C (rows on disk, manifest `interrupted`, resumable)."""


def planned_keys(plan: Plan) -> set[tuple[str, str]]:
    return {(pc.case.case_id, b) for pc in plan.cases for b in [*pc.run, *pc.skip]}


def ending_fields(run: RunDir, plan: Plan, interrupted: bool, error: BaseException | None) -> dict[str, Any]:
    """The manifest's fields for this ending, from the rows actually on disk."""
    rows, bad = read_rows(run.rows_path)
    keys = [point_key(r) for r in rows]
    planned = planned_keys(plan)
    have = set(keys) & planned
    missing = len(planned - have)
    if error is not None:
        status = "failed"
    elif interrupted:
        status = "interrupted"
    elif missing:
        status = "incomplete"
    else:
        status = "complete"
    fields: dict[str, Any] = {
        "ended_at": now_iso(),
        "status": status,
        "rows_written": len(rows),
        "points_planned": len(planned),
        "points_missing": missing,
        "rows_duplicated": len(keys) - len(set(keys)),
        "rows_unplanned": len(set(keys) - planned),
        "unreadable_lines": len(bad),
        "error": None if error is None else f"{type(error).__name__}: {error}",
    }
    return fields


def end_run(run: RunDir, plan: Plan, interrupted: bool, error: BaseException | None,
            **extra: Any) -> str | None:
    """Write the ending into the manifest; None, or one line saying why it could not be written
    (a full disk: the manifest keeps `running` and the next --resume sets it right)."""
    try:
        run.update_manifest(**ending_fields(run, plan, interrupted, error), **extra)
    except OSError as err:
        from attnbench.runio import describe_os_error

        return "could not record the ending in the manifest: " + describe_os_error(err, run.manifest_path)
    return None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM off while the ending is written. One that comes meanwhile is
    dropped: the sweep is already stopping, and its ending must be recorded whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in previous:
        signal.signal(s, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM raises Terminated (a KeyboardInterrupt), so a sweep stops as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def abandoned(run: RunDir) -> bool:
    """Whether a run whose manifest says `running` has nobody running it: no lock, or a lock
    whose holder is gone on this host (the sweep was SIGKILLed or the machine went down)."""
    from attnbench.runner.runlock import LOCK, _read, holder_alive

    holder = _read(run.path / LOCK)
    return holder is None or holder_alive(holder) is False
