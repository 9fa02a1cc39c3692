"""What a sweep reports while it works: the runner calls these hooks, the CLI draws them.

Kept free of torch and of the runner so that the terminal code (attnbench.console), which the
read-only commands (gate, report, baseline, merge, export) import, does not pull the runner in.
"""

from __future__ import annotations

from typing import Any


class Progress:
    """The runner's progress hooks; the default does nothing."""

    def start(self, total: int, done: int) -> None: ...
    def point_started(self, case_id: str, backend: str) -> None: ...
    def point_finished(self, row: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...
