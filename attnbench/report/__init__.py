"""Reports: turn run directories into Markdown, self-contained HTML and PNG figures that fill the
PagedAttention-vs-FlashAttention comparison's tables with measured numbers and check its claims.

Reads results only; never runs a kernel. Entry point: write_report (used by `attnbench report`).
"""

from __future__ import annotations

from attnbench.report.build import FORMATS, Report, build, write_report
from attnbench.report.load import ReportError, RunData, load_runs

__all__ = ["FORMATS", "Report", "ReportError", "RunData", "build", "load_runs", "write_report"]
