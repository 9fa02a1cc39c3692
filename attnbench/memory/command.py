"""The `attnbench fragmentation` command: the study run, its files written, a summary printed.

Steps: check what was asked (the config, --gpu, --timing-from, --out) before anything runs; run the
study with a progress bar (a line per step when piped); write fragmentation.json, fragmentation.md
and the figures; print the Figure 2 table (or the JSON). Exit 2 on any bad input or a failed write.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from attnbench.memory import paper, study
from attnbench.memory.study import ConfigError, StudyConfig, load_config, plan, run_study


def default_out_dir() -> Path:
    return Path("results") / f"fragmentation-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_command(config: Path, plot: bool, out: Path | None, json_out: bool, gpu: bool,
                timing_run: Path | None = None) -> int:
    """The `attnbench fragmentation` command: run, write the outputs, print a summary (or the JSON)."""
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        return _error(exc)
    out_dir = Path(out) if out else default_out_dir()
    problem = _input_problem(gpu, timing_run, out_dir)
    if problem:
        return _error(problem)
    try:
        result = _run_with_progress(cfg, gpu, timing_run)
    except ConfigError as exc:
        return _error(exc)
    try:
        json_path = _write_outputs(result, out_dir, plot)
    except OSError as exc:  # a full disk, a place that became read-only
        from attnbench.runio import describe_os_error

        return _error(describe_os_error(exc, out_dir, "--out"))
    if json_out:
        print(json.dumps(result, indent=2))
        return 0
    _print_summary(cfg, result, gpu)
    from attnbench.console import out as console
    from attnbench.console import plain

    wrote = f"wrote {json_path} and {out_dir / 'fragmentation.md'}" + (" and figures/" if plot else "")
    console.print(plain(wrote),
                  highlight=False, soft_wrap=True)
    return 0


def _error(problem: object) -> int:
    """One line on stderr; exit code 2."""
    from attnbench.console import err, plain

    err.print(f"[red]error:[/red] {plain(problem)}", highlight=False, soft_wrap=True)
    return 2


def _input_problem(gpu: bool, timing_run: Path | None, out_dir: Path) -> str | None:
    """Why --gpu, --timing-from or --out cannot be used, said before the study runs (not exit 0 after)."""
    if gpu:
        from attnbench.memory.gpu_churn import no_gpu_reason

        reason = no_gpu_reason()
        if reason:
            return f"--gpu: {reason}; drop --gpu for the simulated study"
    if timing_run is not None and not (Path(timing_run) / "manifest.json").is_file():
        return (f"--timing-from {timing_run}: not a run directory (no manifest.json); allowed: a sweep's "
                "run directory")
    from attnbench.runio import check_out_dir

    return check_out_dir(out_dir)


def _run_with_progress(cfg: StudyConfig, gpu: bool, timing_run: Path | None) -> dict[str, Any]:
    """The study's result (and the GPU allocator churn with --gpu), drawing a bar on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from attnbench.console import err

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
        except ConfigError:
            bar.stop()
            raise
        if gpu:
            from attnbench.memory.gpu_churn import allocator_churn

            result["gpu"] = allocator_churn(cfg, progress=step)
    return result


def _write_outputs(result: dict[str, Any], out_dir: Path, plot: bool) -> Path:
    """The figures (with --plot), fragmentation.json and fragmentation.md; the JSON's path."""
    from attnbench.memory import render

    figures: list[str] = []
    if plot:
        render.plot_breakdown(result, out_dir / "figures" / "fragmentation_breakdown.png")
        render.plot_block_size(result, out_dir / "figures" / "fragmentation_block_size.png")
        figures = ["figures/fragmentation_breakdown.png", "figures/fragmentation_block_size.png"]
        if result.get("window"):
            from attnbench.memory.window_render import plot_window

            plot_window(result, out_dir / "figures" / "fragmentation_window.png")
            figures.append("figures/fragmentation_window.png")
    json_path = study.write_json(result, out_dir)  # study.write_json: a test stands a full disk in
    (out_dir / "fragmentation.md").write_text(render.render_markdown(result, figures))
    return json_path


def _print_summary(cfg: StudyConfig, result: dict[str, Any], gpu: bool) -> None:
    """The first load's Figure 2 dataset: each policy's memory shares and batch beside the paper's."""
    from rich.table import Table

    from attnbench.console import err
    from attnbench.console import out as console
    from attnbench.memory import render

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
