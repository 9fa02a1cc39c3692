"""The `attnbench baseline` commands: save, list and name the reference runs the gate compares against
(attnbench.gate.baselines does the work)."""

from __future__ import annotations

import typer

# -h works here as on every command: click hands the root app's help option names down
baseline_app = typer.Typer(help="Named reference runs for the gate (results/baselines/NAME).",
                           no_args_is_help=True)


@baseline_app.command("save")
def baseline_save(
    run: str = typer.Argument(..., help="Run directory to promote ('latest': the newest under results/)."),
    name: str = typer.Argument(..., help="Baseline name, e.g. ci-gate-h100."),
    force: bool = typer.Option(False, "--force", help="Replace a baseline; save an unfinished run."),
    baselines_dir: str = typer.Option("results/baselines", help="Where named baselines live."),
    add: list[str] = typer.Option([], "--add", help="Another run (or folder of runs); repeatable."),
) -> None:
    """Save K runs (a run, a folder of runs from `sweep --repeat K`, plus --add) as results/baselines/NAME."""
    from pathlib import Path

    from attnbench.console import err, out
    from attnbench.gate.baselines import cli_save

    raise typer.Exit(cli_save(run, name, force, Path(baselines_dir), out, err, add))


@baseline_app.command("list")
def baseline_list(
    baselines_dir: str = typer.Option("results/baselines", help="Where named baselines live."),
) -> None:
    """List the saved baselines with their GPU, config and size."""
    from pathlib import Path

    from attnbench.console import out
    from attnbench.gate.baselines import cli_list

    raise typer.Exit(cli_list(Path(baselines_dir), out))


@baseline_app.command("slug")
def baseline_slug(
    run: str | None = typer.Argument(None, help="Run whose manifest names the GPU (default: nvidia-smi)."),
    gpu_name: str | None = typer.Option(None, help="Slug of this GPU name instead."),
) -> None:
    """Print the GPU slug that names CI baselines (ci-gate-<slug>), e.g. h100."""
    from attnbench.console import err, out
    from attnbench.gate.baselines import cli_slug

    raise typer.Exit(cli_slug(run, gpu_name, out, err))
