"""One writer per run directory: a lock file naming its holder (pid, host, start time).

Two processes appending to one results.jsonl measure points twice and race on the manifest (a
`--resume` started while the sweep still ran wrote 121 rows for 105 points). The sweep takes the
lock before it reads or writes anything in the run directory and gives it back when it ends. A
second sweep or resume is refused with a message naming the holder. A lock left by a process
that is gone (SIGKILL, a power cut) on this host is taken over with a note: the pid is not alive,
or it is alive but started at another time (the pid was reused). A lock from another host cannot
be checked and is refused; the message says how to remove it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK = ".attnbench.lock"


class LockError(RuntimeError):
    """The run directory is held by another live process; str() names it."""


def _proc_start_ticks(pid: int) -> int | None:
    """When process pid started, in clock ticks since boot (Linux /proc), or None if unknown.
    With the pid it identifies a process: a pid reused later has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process that wrote this lock still runs: True or False on this host, None when
    it was another host (it cannot be checked from here)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return False
    ticks = holder.get("start_ticks")
    now = _proc_start_ticks(pid)
    return not (ticks is not None and now is not None and ticks != now)


def describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started_at')}"
            + (f" ({holder['command']})" if holder.get("command") else ""))


@dataclass
class RunLock:
    """A held lock; release() removes the lock file if it is still this process's."""

    path: Path
    holder: dict[str, Any]
    note: str | None = None  # set when a stale lock was taken over

    def release(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(self.path.read_text()).get("token") == self.holder["token"]:
                self.path.unlink()

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(run_dir: Path, command: str = "") -> RunLock:
    """Take the run directory's lock (the directory must exist); LockError when a live process
    holds it. A stale lock is replaced and the RunLock's note says whose it was."""
    from attnbench.runner.results import now_iso

    path = run_dir / LOCK
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": now_iso(),
        "start_ticks": _proc_start_ticks(os.getpid()),
        "command": command,
        "token": os.urandom(8).hex(),  # tells our lock from one a later process wrote
    }
    note = None
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            fd = None
        if fd is None:
            old = _read(path)
            if old is None:
                # unreadable or empty: a holder that died between creating and writing it, or
                # one writing it right now; give it a moment before calling it stale
                import time

                time.sleep(0.2)
                old = _read(path)
            if old is not None:
                alive = holder_alive(old)
                if alive is None:
                    raise LockError(
                        f"{run_dir} is locked by {describe(old)}; another host's process cannot be "
                        f"checked from here: if it has ended, remove {path} and run again"
                    )
                if alive:
                    raise LockError(
                        f"{run_dir} is in use by {describe(old)}; wait for it to end "
                        "(or stop it) before another sweep or --resume writes there"
                    )
                note = f"took over a stale lock on {run_dir} from {describe(old)}, which is no longer running"
            else:
                note = f"took over an unreadable lock file {path}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
            f.flush()
            os.fsync(f.fileno())
        return RunLock(path, holder, note)
    raise LockError(f"{run_dir}: could not take the lock {path} (another process keeps taking it)")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
