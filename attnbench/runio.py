"""Reading and writing user-named files with one-line errors instead of tracebacks.

A config path that is a directory, a file with non-UTF-8 bytes, an --out that is a file, lies under
a file, is read-only or on a full disk: each is an OSError or UnicodeDecodeError deep in a call.
These helpers turn them into a sentence naming the path, what went wrong and what to do.
"""

from __future__ import annotations

import errno
from pathlib import Path

# What a user can do about each errno (the strerror alone says what, not what next).
_ADVICE = {
    errno.ENOSPC: "the disk is full: free space, then run again (a sweep: --resume)",
    errno.EDQUOT: "the disk quota is used up: free space, then run again (a sweep: --resume)",
    errno.EROFS: "the file system is read-only: choose a writable place",
    errno.EACCES: "permission denied: choose a place you may write to",
    errno.EPERM: "permission denied: choose a place you may write to",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
    errno.EEXIST: "it exists and is not a directory",
    errno.EISDIR: "it is a directory, not a file",
    errno.ENOENT: "no such file or directory",
}


def describe_os_error(err: OSError, path: Path | str | None = None, what: str = "") -> str:
    """One line: which path (`path`, else the error's own), the system's words and the advice."""
    where = path if path is not None else err.filename
    label = f"{what} {where}" if what and where is not None else str(where or what or "")
    advice = _ADVICE.get(err.errno or -1)
    reason = err.strerror or type(err).__name__
    return f"{label}: {reason}" + (f" ({advice})" if advice and advice.lower() not in reason.lower() else "")


def read_text(path: Path, what: str = "file") -> str:
    """The UTF-8 text of a file, or ValueError with one line: missing, a directory, unreadable,
    or not UTF-8 (with the byte offset of the first bad byte)."""
    if not path.exists():
        raise ValueError(f"{path}: no such {what}")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; expected a {what}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(describe_os_error(err, path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {err.start}: {data[err.start:err.start + 1]!r}); "
            f"save the {what} as UTF-8"
        ) from None


def check_out_dir(path: Path, what: str = "--out") -> str | None:
    """Why `path` cannot be an output directory (one line), or None when it can: it must be a
    directory or creatable as one, and writable. Creates it (parents included) when missing."""
    if path.exists() and not path.is_dir():
        return f"{what} {path}: is a file, not a directory; choose another {what}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".attnbench-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return describe_os_error(err, path, what)
    return None
