"""The `attnbench fragmentation` command: run the study, write fragmentation.json, fragmentation.md
and the figures, print the Fig. 2 comparison (or the JSON)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from attnbench.console import err, plain
from attnbench.console import out as console
from attnbench.memory import paper, render
from attnbench.memory.gpu_churn import allocator_churn, no_gpu_reason
from attnbench.memory.study import ConfigError, default_out_dir, load_config, plan, run_study, write_json
from attnbench.memory.window_render import plot_window
from attnbench.runio import check_out_dir, describe_os_error


def run_command(config: Path, plot: bool, out: Path | None, json_out: bool, gpu: bool,
                timing_run: Path | None = None) -> int:
    """The `attnbench fragmentation` command: run, write the outputs, print a summary (or the JSON)."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
        return 2
    if gpu:
        reason = no_gpu_reason()
        if reason:  # asked for and impossible: say so before the study runs, not exit 0 after
            err.print(f"[red]error:[/red] --gpu: {plain(reason)}; drop --gpu for the simulated study",
                      highlight=False, soft_wrap=True)
            return 2
    if timing_run is not None and not (Path(timing_run) / "manifest.json").is_file():
        err.print(f"[red]error:[/red] --timing-from {plain(timing_run)}: not a run directory (no "
                  "manifest.json); allowed: a sweep's run directory", highlight=False, soft_wrap=True)
        return 2
    out_dir = Path(out) if out else default_out_dir()
    problem = check_out_dir(out_dir)
    if problem:
        err.print(f"[red]error:[/red] {plain(problem)}", highlight=False, soft_wrap=True)
        return 2
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("fragmentation", total=len(plan(cfg)) + (3 if gpu else 0))

        piped = not err.is_terminal  # a live bar shows nothing in a CI log: a line per step there
        total = len(plan(cfg)) + (3 if gpu else 0)
        done = [0]

        def step(desc: str) -> None:
            bar.update(task, description=desc)
            bar.advance(task)
            done[0] += 1
            if piped:
                err.print(f"fragmentation [{done[0]}/{total}] {desc}", highlight=False, markup=False)

        try:
            result = run_study(cfg, progress=step, timing_run=timing_run)
        except ConfigError as exc:
            bar.stop()
            err.print(f"[red]error:[/red] {plain(exc)}", highlight=False, soft_wrap=True)
            return 2
        if gpu:
            result["gpu"] = allocator_churn(cfg, progress=step)
    figures: list[str] = []
    try:
        if plot:
            render.plot_breakdown(result, out_dir / "figures" / "fragmentation_breakdown.png")
            render.plot_block_size(result, out_dir / "figures" / "fragmentation_block_size.png")
            figures = ["figures/fragmentation_breakdown.png", "figures/fragmentation_block_size.png"]
            if result.get("window"):
                plot_window(result, out_dir / "figures" / "fragmentation_window.png")
                figures.append("figures/fragmentation_window.png")
        json_path = write_json(result, out_dir)
        (out_dir / "fragmentation.md").write_text(render.render_markdown(result, figures))
    except OSError as exc:  # a full disk, a place that became read-only
        err.print(f"[red]error:[/red] {plain(describe_os_error(exc, out_dir, '--out'))}",
                  highlight=False, soft_wrap=True)
        return 2
    if json_out:
        print(json.dumps(result, indent=2))
        return 0
    table = Table(
        title=f"{paper.FIGURE2_DATASET}: share of KV memory, simulated ({cfg.loads[0]}) vs paper Fig. 2"
    )
    for col in ("policy", "token states", "paper", "reserved", "internal", "ext.+other", "batched", "paper"):
        table.add_column(col, justify="right")
    for r in render.figure_rows(result["rows"], paper.FIGURE2_DATASET, cfg.paged_block_size):
        pb = r["paper_mean_batched_requests"]
        table.add_row(
            render.LABELS[r["policy"]],
            render._pct(r["token_states"]),
            render._pct(r["paper_token_states"]),
            render._pct(r["reserved"]),
            render._pct(r["internal"]),
            render._pct(r["external"] + r["other"]),
            f"{r['mean_batched_requests']:.1f}",
            "–" if pb is None else f"{pb:.1f}",
        )
    console.print(table)
    if gpu and result["gpu"].get("skipped"):
        err.print(f"GPU allocator churn skipped: {result['gpu']['skipped']}")
    wrote = f"wrote {json_path} and {out_dir / 'fragmentation.md'}" + (" and figures/" if plot else "")
    console.print(plain(wrote),
                  highlight=False, soft_wrap=True)
    return 0
