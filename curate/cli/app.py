"""The Typer application object and helpers shared by every command module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

import curate

app = typer.Typer(
    name="curate",
    help="Facial-expression datasets: synthesise, build, study label policies, train and review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

#: The --workspace option every workspace command shares.
WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="CURATE_WORKSPACE",
        help="Workspace folder (default ./curate-workspace, or $CURATE_WORKSPACE).",
        show_default=False,
    ),
]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error and exit; used for every user mistake."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        console.print(f"curate {curate.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Facial-expression datasets: synthesise, build, study label policies, train and review."""
