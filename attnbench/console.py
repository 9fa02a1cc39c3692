"""Terminal output with rich: the sweep's progress bar, plan and summary tables, one-line errors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from attnbench.progress import Progress as RunnerProgress

if TYPE_CHECKING:  # the plan pulls in the backends and torch; the read-only commands need neither
    from attnbench.plan import Plan

# Piped output (CI logs, files) gets a wide console instead of rich's 80-column default.
out = Console() if sys.stdout.isatty() else Console(width=180)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=180)


def fail(message: str, code: int = 2) -> NoReturn:
    """One line naming what was wrong, then exit (2 for bad input)."""
    import typer

    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class SweepProgress(RunnerProgress):
    """A rich progress bar with ETA; prints failed/incorrect points as they happen."""

    def __init__(self, console: Console = err) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=console,
            transient=False,
        )
        self.task = None

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("sweep", total=total, completed=done, current="")

    def point_started(self, case_id: str, backend: str) -> None:
        self.bar.update(self.task, current=f"{backend} {case_id}")

    def point_finished(self, row: dict[str, Any]) -> None:
        if row["status"] in ("failed", "incorrect"):
            self.bar.console.print(
                f"[yellow]{row['status']}[/] {row['backend']} {row['case_id']}: {row.get('reason', '')}",
                highlight=False,
            )
        self.bar.advance(self.task)

    def stop(self) -> None:
        self.bar.stop()


def plan_table(plan: Plan, limit: int = 200) -> Table:
    t = Table(
        title=f"plan: {len(plan.cases)} cases, {plan.n_points} points "
        f"({plan.n_run} to measure, {plan.n_skip} skipped, {plan.excluded_points} excluded)"
    )
    for col in (
        "workload",
        "phase",
        "batch",
        "lengths",
        "heads q/kv",
        "d",
        "dtype",
        "causal",
        "block",
        "run",
        "skipped",
    ):
        t.add_column(col, overflow="fold")
    for pc in plan.cases[:limit]:
        c = pc.case
        t.add_row(
            c.workload,
            c.phase,
            str(c.batch),
            f"{c.seqlen_mix} (max {c.max_kv})",
            f"{c.num_q_heads}/{c.num_kv_heads}",
            str(c.head_dim),
            c.dtype,
            "yes" if c.causal else "no",
            f"{c.block_size} {c.kv_layout}" if c.paged else "-",
            ", ".join(pc.run) or "-",
            str(len(pc.skip)) if pc.skip else "-",
        )
    if len(plan.cases) > limit:
        t.caption = f"... {len(plan.cases) - limit} more cases"
    return t


def summary_table(summary: list[dict[str, Any]]) -> Table:
    t = Table(title="summary by backend")
    for col in (
        "backend",
        "ok",
        "skipped",
        "failed",
        "incorrect",
        "best TFLOP/s",
        "best GB/s",
        "main reason",
    ):
        t.add_column(col)
    for s in summary:
        reason = max(s["reasons"].items(), key=lambda kv: kv[1])[0] if s["reasons"] else ""
        t.add_row(
            s["backend"],
            str(s["ok"]),
            str(s["skipped"]),
            str(s["failed"]),
            str(s["incorrect"]),
            f"{s['best_tflops']:.2f}" if s["best_tflops"] is not None else "-",
            f"{s['best_gbps']:.1f}" if s["best_gbps"] is not None else "-",
            reason,
        )
    return t


def rows_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in ("backend", "status", "p50 ms", "TFLOP/s", "GB/s", "% copy BW", "rel err", "note"):
        t.add_column(col, overflow="fold")
    for r in rows:
        ok = r["status"] == "ok"
        note = r.get("reason") or r.get("variant") or ""
        if r.get("interpreted"):
            note = "Triton interpreter on CPU: slow, for correctness only"
        t.add_row(
            r["backend"],
            r["status"],
            f"{r['latency_ms_p50']:.4f}" if ok else "-",
            f"{r['tflops']:.2f}" if ok else "-",
            f"{r['hbm_gbps']:.1f}" if ok else "-",
            f"{100 * r['bw_util']:.1f}" if ok and r.get("bw_util") is not None else "-",
            f"{r['rel_err']:.2e}" if r.get("rel_err") is not None else "-",
            note,
        )
    return t


def is_tty() -> bool:
    return sys.stderr.isatty()
