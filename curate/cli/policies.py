"""`curate policies`: list the label policies and FER+ vote modes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from curate import labels
from curate.cli.app import app, fail, print_table


@app.command("policies")
def policies_command(
    policy_file: Annotated[
        list[str] | None,
        typer.Argument(help="Optional TOML policy files to validate and list beside the built-in ones."),
    ] = None,
) -> None:
    """List the label policies (with their classes) and the FER+ vote modes."""
    try:
        extra = [labels.load_policy_file(path) for path in policy_file or []]
    except labels.PolicyError as error:
        fail(str(error))
    table = Table(title="Label policies (canonical label -> class)", show_lines=False)
    table.add_column("policy", style="bold cyan", no_wrap=True)
    table.add_column("classes", justify="right")
    table.add_column("description")
    table.add_column("class list")
    for policy in [*labels.BUILTIN_POLICIES.values(), *extra]:
        table.add_row(policy.name, str(policy.num_classes), policy.description, ", ".join(policy.classes))
    print_table(table)
    modes = Table(title="FER+ vote modes (votes -> label or target)")
    modes.add_column("mode", style="bold cyan", no_wrap=True)
    modes.add_column("target")
    modes.add_column("description")
    for mode in labels.VOTE_MODES.values():
        modes.add_row(mode.name, mode.target, mode.description)
    print_table(modes)
