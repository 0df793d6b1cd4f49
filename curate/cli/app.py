"""The Typer application object and helpers shared by every command module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

import curate
from curate import labels

app = typer.Typer(
    name="curate",
    help="Facial-expression datasets: synthesise, build, study label policies, train and review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Off a terminal (a log, CI, `| tee`) lines are not re-wrapped at Rich's default 80 columns.
console = Console(soft_wrap=not sys.stdout.isatty())
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

#: The --vote-mode option of every command that labels FERPlus rows (ingest, remap, balance,
#: study remap, train): the names and the default come from ``curate.labels``.
VoteModeOption = Annotated[
    str | None,
    typer.Option(
        "--vote-mode",
        help=f"FERPlus vote mode: {', '.join(labels.VOTE_MODES)} (default {labels.DEFAULT_VOTE_MODE}). A row's label is "
        "the mode's winner (probability/crossentropy/multi-target: the argmax of the authors' distribution, which the "
        "trainer uses as a soft target); rows whose winner is unknown or NF are left out by every policy.",
        show_default=False,
    ),
]


def markdown_table(table: Any) -> str:
    """A Rich ``Table`` as a Markdown table (its title on the line above), every cell whole."""
    from rich.text import Text

    def plain(cell: Any) -> str:
        text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
        return text.replace("|", "\\|").replace("\n", " ")

    columns = table.columns
    lines = [f"{plain(table.title)}", ""] if table.title else []
    lines.append("| " + " | ".join(plain(column.header) for column in columns) + " |")
    lines.append("|" + "|".join("---:" if column.justify == "right" else "---" for column in columns) + "|")
    for row in zip(*(column.cells for column in columns), strict=True):
        lines.append("| " + " | ".join(plain(cell) for cell in row) + " |")
    return "\n".join(lines)


def print_table(table: Any) -> None:
    """Print a Rich table without ever cutting a cell to "…".

    On a terminal the table is drawn, and columns too narrow for their text fold it onto
    more lines; off a terminal (logs, CI, pipes) it is printed as Markdown, one line a row.
    """
    if console.is_terminal:
        for column in table.columns:
            column.overflow = "fold"
        console.print(table)
    else:
        console.print(markdown_table(table), markup=False, highlight=False, soft_wrap=True)
        console.print()


def print_markdown(text: str) -> None:
    """Markdown text verbatim (Rich's rendering of a wide Markdown table cuts its cells)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


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
