"""Output into a pipe whose reader has gone (`attnbench gate ... | head`) must not change the exit code.

Python raises BrokenPipeError on the first write after the reader closed the pipe; the command then
died with exit 1 and no message, so a gate whose table was cut short by `head` said neither its
verdict nor why. Once stdout's reader is gone, further output is dropped (the descriptor is pointed at
/dev/null so the interpreter's final flush cannot raise either) and the command runs to its own exit
code.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class PipeSafeStdout:
    """Wraps the interpreter's stdout; every write after a broken pipe is a no-op."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.broken = False

    def _broke(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no real descriptor (a test's capture): nothing to redirect
            pass

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._broke()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._broke()

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, buffer, ...
        return getattr(self._stream, name)


def install() -> None:
    if not isinstance(sys.stdout, PipeSafeStdout) and sys.stdout is not None:
        sys.stdout = PipeSafeStdout(sys.stdout)
