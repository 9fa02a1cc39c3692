"""The attnbench command line: thin, it parses, calls the modules and prints with rich."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="attnbench",
    help="Benchmark and profile paged- and flash-attention kernels on your own GPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# --- commands added by feature modules (each imports its module lazily inside the function) ---


def main() -> None:
    app()
