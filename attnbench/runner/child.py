"""The worker child process: how it is spawned, what it does, and spawning it ahead of time.

A child starts in two steps. Spawned, it imports torch and attnbench's backends (the bulk of its
start: 3.5-5.5 s on the H100 and H200 hosts, most of it `import torch`), then waits to be configured. The
configure message gives it its environment (CUDA_VISIBLE_DEVICES, its CPU share), the device, the
timing policy and any known calibration; only then does it touch CUDA, measure the ceilings and
answer "ready". Split so, a child can be spawned before the parent knows what it will do:
`prestart` spawns children as the sweep command begins, and their imports run while the parent
imports torch, reads the config and plans, instead of after (ProcessExecutor.start takes them).

Every child reports when each step ended (wall-clock stamps), so a run's manifest can say where a
worker's start went: `start_phases` turns the stamps into seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from attnbench.runner.cpus import CPUS_ENV, pin_to_cpus

_CTX = mp.get_context("spawn")


@dataclass
class Child:
    """A spawned child process and the parent's end of its pipe."""

    proc: Any
    conn: Any
    spawned_at: float  # time.time() when the parent spawned it
    environ: dict[str, str] = field(default_factory=dict)  # the parent's environment it inherited


def spawn() -> Child:
    """Start a child; it imports torch and the backends, then waits for ("configure", ...)."""
    parent, child = _CTX.Pipe()
    environ = dict(os.environ)
    proc = _CTX.Process(target=child_main, args=(child,), daemon=True, name="attnbench-worker")
    spawned_at = time.time()
    proc.start()
    child.close()
    return Child(proc, parent, spawned_at, environ)


def start_phases(spawned_at: float, stamps: dict[str, float]) -> dict[str, float]:
    """Seconds of each step of a child's start, from its stamps (time.time() at each step's end):
    spawn (a fresh interpreter until child_main runs), imports, idle (a child spawned ahead of
    time waiting for its work; 0 otherwise), cuda_init and calibration (0 when calibration was
    known)."""
    ends = [("spawn_s", "main"), ("imports_s", "loaded"), ("idle_s", "configured"),
            ("cuda_init_s", "device_ready"), ("calibration_s", "calibrated")]
    phases, before = {}, spawned_at
    for name, stamp in ends:
        at = stamps.get(stamp, before)
        phases[name] = round(max(0.0, at - before), 3)
        before = max(before, at)
    return phases


# ---- children spawned ahead of time ------------------------------------------------------------

_standby: list[Child] = []


def prestart(n: int) -> None:
    """Spawn n children now, so that their imports overlap whatever this process does next. Those
    nobody takes are stopped when this process exits."""
    for _ in range(max(0, n - len(_standby))):
        _standby.append(spawn())


def take() -> Child | None:
    """A child spawned ahead of time, if one is alive and inherited this process's present
    environment (a variable set since, such as TRITON_INTERPRET, must reach the child's imports)."""
    while _standby:
        c = _standby.pop(0)
        if c.proc.is_alive() and c.environ == dict(os.environ):
            return c
        discard(c)
    return None


def discard(c: Child) -> None:
    """End a child nobody configured: it holds nothing, and may still be importing (it would not
    read a stop message before its imports end, and a sweep refusing its config must exit now)."""
    c.proc.kill()
    c.proc.join(timeout=5)
    c.conn.close()


@atexit.register
def discard_standby() -> None:
    while _standby:
        discard(_standby.pop())


# ---- the child's side --------------------------------------------------------------------------


def _exit() -> None:
    """Leave at once: the child holds nothing to save (the parent writes every row), and Python's
    own teardown of torch and a CUDA context takes about a second the parent would wait for."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


def child_main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _die_with_parent()
    os.environ["ATTNBENCH_QUIET_PLUGIN_ERRORS"] = "1"  # the parent prints plugin problems once
    stamps = {"main": time.time()}
    try:
        # the slow part of a start, done before the child knows its device: none of these
        # touches CUDA, so CUDA_VISIBLE_DEVICES set at configure time still takes effect
        import torch

        import attnbench.backends
        import attnbench.calibrate
        import attnbench.inputs
        import attnbench.point  # noqa: F401
        from attnbench.runner.case_runner import CaseRunner, Task
    except Exception as err:  # noqa: BLE001
        conn.send(("fatal", f"worker start: imports: {type(err).__name__}: {err}"))
        return
    stamps["loaded"] = time.time()
    try:
        msg = conn.recv()
    except (EOFError, OSError):
        return
    if msg[0] != "configure":
        _exit()
    _, device, policy, calibration, env = msg
    stamps["configured"] = time.time()
    try:
        if torch.cuda.is_initialized():
            raise RuntimeError("CUDA was initialised before the worker was configured")
        os.environ.update(env)
        pin_to_cpus(os.environ.get(CPUS_ENV))  # before torch starts its threads
        if device == "cuda":
            torch.cuda.init()
        stamps["device_ready"] = time.time()
        runner = CaseRunner(device, policy, calibration)
        stamps["calibrated"] = time.time()
        conn.send(("ready", runner.calibration, stamps))
    except Exception as err:  # noqa: BLE001
        conn.send(("fatal", f"worker start: {type(err).__name__}: {err}"))
        return
    from attnbench.case import Case

    try:
        _serve(conn, runner, Case, Task)
    except (EOFError, OSError):
        # the parent is gone (killed, or it closed the pipe): nothing to report to, leave quietly
        # instead of printing a BrokenPipe traceback into the user's terminal
        _exit()


def _serve(conn, runner, Case, Task) -> None:
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            _exit()
        task = Task(Case.from_json(msg[1]), msg[2])
        try:
            for row in runner.run(task, lambda name: conn.send(("start", name))):
                conn.send(("row", row))
        except (EOFError, BrokenPipeError, ConnectionResetError):
            raise
        except Exception as err:  # noqa: BLE001 - context poisoned: report and exit for a fresh child
            conn.send(("poisoned", f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"))
            return
        conn.send(("done",))


def _die_with_parent() -> None:
    """End this child soon after its parent dies (a SIGKILLed sweep must not leave a worker in a
    hanging point for hours, holding the GPU): a daemon thread watches the parent pid. (prctl's
    PR_SET_PDEATHSIG would fire when the *thread* that spawned us ends, and --devices spawns
    workers from threads.)"""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="attnbench-parent-watch", daemon=True).start()
