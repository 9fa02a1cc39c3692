"""Terminal output with rich: the sweep's progress bar, plan and summary tables, one-line errors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from attnbench.runner.progress import Progress as RunnerProgress

if TYPE_CHECKING:  # the plan pulls in the backends and torch; the read-only commands need neither
    from attnbench.runner.plan import Plan

# Piped output (CI logs, files) gets a wide console instead of rich's 80-column default.
out = Console() if sys.stdout.isatty() else Console(width=180)
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=180)


# -q: 0 (errors and the final results path only), default: 1, -v: 2 (a line per point on a terminal too)
VERBOSITY = {"level": 1}


def set_verbosity(quiet: bool, verbose: int) -> None:
    level = 0 if quiet else 1 + min(verbose, 1)
    VERBOSITY["level"] = level
    out.quiet = level == 0


def verbosity() -> int:
    return VERBOSITY["level"]


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


def SweepProgress(console: Console = err) -> RunnerProgress:  # noqa: N802 - used as a class by callers
    """The sweep's progress on `console`: a live bar on a terminal; one line per finished point when
    the output is piped (CI logs, files), where a bar would show nothing until the sweep ends;
    nothing with -q."""
    if verbosity() == 0:
        return RunnerProgress()
    if not console.is_terminal:
        return LineProgress(console)
    return BarProgress(console, lines=verbosity() >= 2)


class LineProgress(RunnerProgress):
    """'[12/316 4%] ok naive decode-main/...: 0.157 ms [0.156, 0.157] n=20 (elapsed 41s, eta 15m)'."""

    def __init__(self, console: Console = err) -> None:
        self.console = console
        self.total = self.done = self.measured = 0
        self.t0 = 0.0

    def start(self, total: int, done: int) -> None:
        import time

        self.total, self.done, self.t0 = total, done, time.monotonic()
        self.console.print(f"sweep: {total} points, {done} already on disk", highlight=False)

    def point_finished(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.console.print(point_line(row, self.done, self.total, self._eta(row)), highlight=False,
                           markup=False, soft_wrap=True)

    def _eta(self, row: dict[str, Any]) -> str:
        import time

        if row.get("status") != "skipped":
            self.measured += 1
        elapsed = time.monotonic() - self.t0
        left = self.total - self.done
        # skipped rows cost nothing: the rate is of the points that ran
        per_point = elapsed / self.measured if self.measured else 0.0
        return f"elapsed {_duration(elapsed)}, eta {_duration(per_point * left)}" if self.measured else ""


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def point_line(row: dict[str, Any], done: int, total: int, eta: str = "") -> str:
    from attnbench.numfmt import median_with_spread

    status = row.get("status", "?")
    what = median_with_spread(row, "ms") if status == "ok" else (row.get("reason") or "")
    share = f" {100 * done / total:.0f}%" if total else ""
    return (f"[{done}/{total}{share}] {status} {row.get('backend')} {row.get('case_id')}: {what}"
            + (f" ({eta})" if eta else ""))


class BarProgress(RunnerProgress):
    """A rich progress bar with ETA; prints failed/incorrect points as they happen (every point
    with -v)."""

    def __init__(self, console: Console = err, lines: bool = False) -> None:
        self.console = console
        self.lines = lines
        self.done = self.total = 0
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
        self.task: TaskID | None = None  # the bar's one task, from start()

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("sweep", total=total, completed=done, current="")
        self.done, self.total = done, total

    def point_started(self, case_id: str, backend: str) -> None:
        assert self.task is not None, "start() first"
        self.bar.update(self.task, current=plain(f"{backend} {case_id}"))

    def point_finished(self, row: dict[str, Any]) -> None:
        self.done += 1
        if self.lines:
            self.bar.console.print(point_line(row, self.done, self.total), highlight=False, markup=False)
        elif row["status"] in ("failed", "incorrect"):
            self.bar.console.print(
                f"[yellow]{row['status']}[/] {plain(row['backend'])} {plain(row['case_id'])}: "
                f"{plain(row.get('reason', ''))}",
                highlight=False,
            )
        assert self.task is not None, "start() first"
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
    from attnbench.numfmt import sig

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
            sig(s["best_tflops"]),
            sig(s["best_gbps"]),
            plain(reason),
        )
    return t


def rows_table(rows: list[dict[str, Any]], title: str, baseline: str | None = None) -> Table:
    from attnbench.numfmt import median_with_spread, sig

    t = Table(title=plain(title), caption="p50 [95% interval of the median] n=samples")
    cols = ["backend", "status", "p50 ms [95% CI] n", "TFLOP/s", "GB/s", "% copy BW", "rel err",
            "err/allowed"]
    if baseline is not None:
        cols.append(f"speed-up vs {baseline}")
    for col in [*cols, "note"]:
        t.add_column(col, overflow="fold")
    for r in rows:
        ok = r["status"] == "ok"
        note = r.get("reason") or r.get("variant") or ""
        if r.get("interpreted"):
            note = "Triton interpreter on CPU: slow, for correctness only"
        cells = [
            plain(r["backend"]),
            plain(r["status"]),
            median_with_spread(r) if ok else "-",
            sig(r.get("tflops")) if ok else "-",
            sig(r.get("hbm_gbps")) if ok else "-",
            sig(100 * r["bw_util"], 3) if ok and r.get("bw_util") is not None else "-",
            f"{r['rel_err']:.2e}" if r.get("rel_err") is not None else "-",
            # the worst (sequence, head)'s error over what the check allows there (attnbench.reference)
            f"{r['rel_err_ratio']:.2f}x" if r.get("rel_err_ratio") is not None else "-",
        ]
        if baseline is not None:
            speedup = r.get("speedup_vs_baseline")
            cells.append(f"{sig(speedup)}x" if speedup is not None else "-")
        t.add_row(*cells, plain(note))
    return t
