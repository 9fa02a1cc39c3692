"""The `attnbench config` commands: the JSON Schema of sweep configs and the shipped configs."""

from __future__ import annotations

from pathlib import Path

import typer

# -h works here as on every command: click hands the root app's help option names down
config_app = typer.Typer(
    help="Sweep configs: their JSON Schema and the shipped ones; the schema of a results row.",
    no_args_is_help=True,
)


def _emit(text: str, out: Path | None) -> None:
    """A generated schema on stdout, or into the file named by --out."""
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@config_app.command("schema")
def config_schema(
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout"),
) -> None:
    """The JSON Schema of sweep configs (also committed as configs/schema.json)."""
    from attnbench.config.schema import schema_text

    _emit(schema_text(), out)


@config_app.command("row-schema")
def config_row_schema(
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of stdout"),
) -> None:
    """The JSON Schema of a results row (attnbench.row; committed as configs/row-schema.json)."""
    from attnbench.row import schema_text

    _emit(schema_text(), out)


@config_app.command("list")
def config_list() -> None:
    """The shipped configs, usable by name: `attnbench sweep h100`."""
    from attnbench.paths import configs_dir, shipped_configs

    for name in shipped_configs():
        typer.echo(f"{name}\t{configs_dir() / (name + '.yaml')}")
