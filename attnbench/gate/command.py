"""The `attnbench gate` commands: runs against a baseline (the group's own options) and `gate ab`."""

from __future__ import annotations

from pathlib import Path

import typer

from attnbench.gate import stats as gate_stats

gate_app = typer.Typer(
    help="Regression gate: exit 1 on SLOW, BROKEN or VANISHED points, 2 when the runs cannot be compared.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _csv(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


@gate_app.callback()
def gate(
    ctx: typer.Context,
    baseline: str | None = typer.Option(
        None, help="Baseline name under results/baselines/, or a run directory."
    ),
    current: str | None = typer.Option(
        None,
        help="Run directory, a `sweep --repeat M` folder (each point from its median run), or a baseline.",
    ),
    threshold: float = typer.Option(0.05, help="Single-run rule (baselines of < 3 runs): slowdown fraction."),
    alpha: float = typer.Option(0.05, help="Single-run rule: family-wise error rate (Bonferroni)."),
    multiplier: float = typer.Option(gate_stats.DEFAULT_MULTIPLIER, help="Spread rule: sds of tolerance."),
    floor: float = typer.Option(gate_stats.DEFAULT_FLOOR, help="Spread rule: smallest tolerance (fraction)."),
    cap: float = typer.Option(gate_stats.DEFAULT_CAP, help="Spread rule: tolerance above this is NOISY."),
    junit: str | None = typer.Option(None, help="Write JUnit XML here (one testcase per point)."),
    summary: str | None = typer.Option(None, help="Write the Markdown summary here."),
    force: bool = typer.Option(False, "--force", help="Gate although GPU, config or dtypes differ."),
    baselines_dir: str = typer.Option("results/baselines", help="Where named baselines live."),
    samples_plot: Path | None = typer.Option(
        None, "--samples-plot", help="Also draw each point's samples, baseline beside current (PNG)"
    ),
) -> None:
    """Gate a run against a baseline of K runs (see `attnbench gate ab` for the A/B mode)."""
    if ctx.invoked_subcommand is not None:
        return
    from attnbench.gate.output import report_error, run_gate

    if baseline is None or current is None:
        missing = "--baseline" if baseline is None else "--current"
        raise typer.Exit(report_error(f"{missing} is required (or run `attnbench gate ab`)", None, None))
    code = run_gate(
        baseline, current, threshold, alpha, Path(junit) if junit else None,
        Path(summary) if summary else None, force, Path(baselines_dir),
        multiplier=multiplier, floor=floor, cap=cap,
    )  # fmt: skip
    if samples_plot is not None and code in (0, 1):
        from attnbench.gate.runs import resolve_run
        from attnbench.report.figures import NoData
        from attnbench.report.plots_samples import gate_figure

        try:
            path = gate_figure(resolve_run(baseline, Path(baselines_dir)),
                               resolve_run(current, Path(baselines_dir)), samples_plot)
            typer.echo(f"samples figure: {path}", err=True)
        except NoData as exc:
            typer.echo(f"samples figure not drawn: {exc}", err=True)
    raise typer.Exit(code)


@gate_app.command("ab")
def gate_ab(
    a: str = typer.Option(..., "--a", help="Version A: worktree, git:REV, path:DIR or plugin:MODULE."),
    b: str = typer.Option(..., "--b", help="Version B (the change), same forms."),
    config: Path = typer.Option(
        Path("configs/ci-gate.yaml"), "--config", help="Sweep YAML naming the points."
    ),
    backends: str | None = typer.Option(
        None, "--backends", help="Comma-separated backends (default: config's)."
    ),
    workloads: str | None = typer.Option(None, "--workloads", help="Comma-separated workload names."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    pairs: int = typer.Option(200, "--pairs", help="Alternating (A, B) sample pairs per point."),
    max_time_s: float = typer.Option(5.0, "--max-time-s", help="Per point, sampling stops here."),
    threshold: float = typer.Option(0.01, help="Slowdown fraction the paired interval must exceed."),
    cap: float = typer.Option(0.05, help="Interval half-width above which a point is NOISY."),
    alpha: float = typer.Option(0.05, help="Family-wise error rate over points (Bonferroni)."),
    junit: str | None = typer.Option(None, help="Write JUnit XML here."),
    summary: str | None = typer.Option(None, help="Write the Markdown summary here."),
    json_out: str | None = typer.Option(None, "--json", help="Write every pair and verdict here (JSON)."),
) -> None:
    """A/B: two versions of the backends measured alternately in one process, judged on paired ratios."""
    from attnbench.console import err
    from attnbench.gate.ab import run_ab
    from attnbench.gate.output import report_error, report_result
    from attnbench.gate.runs import GateError

    try:
        result = run_ab(
            a, b, config, device, _csv(backends), _csv(workloads), pairs, max_time_s, threshold, cap, alpha,
            Path(json_out) if json_out else None,
            progress=lambda s: err.print(f"a/b {s}", style="dim", highlight=False, markup=False),
        )  # fmt: skip
    except GateError as e:
        raise typer.Exit(
            report_error(str(e), Path(junit) if junit else None, Path(summary) if summary else None)
        ) from None
    code = report_result(
        result, Path(junit) if junit else None, Path(summary) if summary else None, None, None
    )
    raise typer.Exit(code)
