"""Terminal output with rich: the sweep's progress bar, plan and summary tables, one-line errors."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from attnbench.plan import Plan
from attnbench.sweep import Progress as RunnerProgress

# Piped output (CI logs, files) gets a wide console instead of rich's 80-column default.
out = Console() if sys.stdout.isatty() else Console(width=180)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=180)


def plain(value: Any) -> str:
    """Text from a user, a file or a backend, made safe to print inside rich markup: a `[p]` or
    `[/kernels/k.so]` in it is shown as typed, not read as a style tag (which would vanish or
    raise MarkupError)."""
    return escape(str(value))


def fail(message: str, code: int = 2) -> NoReturn:
    """One line naming what was wrong, then exit (2 for bad input). The message is plain text."""
    import typer

    err.print(f"[bold red]error:[/] {plain(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str, console: Console | None = None) -> None:
    """One warning line (plain text) on stderr."""
    (console or err).print(f"[yellow]warning:[/] {plain(message)}", highlight=False, soft_wrap=True)


def note(message: str, console: Console | None = None) -> None:
    """One line of plain text (no markup read in it) on stdout."""
    (console or out).print(plain(message), highlight=False, soft_wrap=True)


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
        self.bar.update(self.task, current=plain(f"{backend} {case_id}"))

    def point_finished(self, row: dict[str, Any]) -> None:
        if row["status"] in ("failed", "incorrect"):
            self.bar.console.print(
                f"[yellow]{row['status']}[/] {plain(row['backend'])} {plain(row['case_id'])}: "
                f"{plain(row.get('reason', ''))}",
                highlight=False,
            )
        self.bar.advance(self.task)

    def stop(self) -> None:
        self.bar.stop()


def plan_table(plan: Plan, limit: int = 200) -> Table:
    # every cell is rich markup: names and labels from the config are escaped (plain)
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
            plain(c.workload),
            c.phase,
            str(c.batch),
            plain(f"{c.seqlen_mix} (max {c.max_kv})"),
            f"{c.num_q_heads}/{c.num_kv_heads}",
            str(c.head_dim),
            c.dtype,
            "yes" if c.causal else "no",
            f"{c.block_size} {c.kv_layout}" if c.paged else "-",
            plain(", ".join(pc.run) or "-"),
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
            plain(s["backend"]),
            str(s["ok"]),
            str(s["skipped"]),
            str(s["failed"]),
            str(s["incorrect"]),
            f"{s['best_tflops']:.2f}" if s["best_tflops"] is not None else "-",
            f"{s['best_gbps']:.1f}" if s["best_gbps"] is not None else "-",
            plain(reason),
        )
    return t


def rows_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=plain(title))
    cols = ("backend", "status", "p50 ms", "TFLOP/s", "GB/s", "% copy BW", "rel err", "err/allowed", "note")
    for col in cols:
        t.add_column(col, overflow="fold")
    for r in rows:
        ok = r["status"] == "ok"
        note = r.get("reason") or r.get("variant") or ""
        if r.get("interpreted"):
            note = "Triton interpreter on CPU: slow, for correctness only"
        t.add_row(
            plain(r["backend"]),
            plain(r["status"]),
            f"{r['latency_ms_p50']:.4f}" if ok else "-",
            f"{r['tflops']:.2f}" if ok else "-",
            f"{r['hbm_gbps']:.1f}" if ok else "-",
            f"{100 * r['bw_util']:.1f}" if ok and r.get("bw_util") is not None else "-",
            f"{r['rel_err']:.2e}" if r.get("rel_err") is not None else "-",
            # the worst (sequence, head)'s error over what the check allows there (attnbench.reference)
            f"{r['rel_err_ratio']:.2f}x" if r.get("rel_err_ratio") is not None else "-",
            plain(note),
        )
    return t


def is_tty() -> bool:
    return sys.stderr.isatty()
