"""`curate protocols`: list the evaluation protocol cards."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from curate import protocols
from curate.cli.app import app, console, fail, print_table


@app.command("protocols")
def protocols_command(
    name: Annotated[str | None, typer.Argument(help="Show one card in full (JSON).")] = None,
) -> None:
    """List the evaluation protocols (dataset, policy, splits, view, metrics) or show one card."""
    if name is not None:
        try:
            card = protocols.get_protocol(name)
        except protocols.ProtocolError as error:
            fail(str(error))
        console.print_json(data=card.as_dict())
        return
    table = Table(title="Evaluation protocols")
    for column in ("protocol", "dataset", "policy / vote mode", "model selection", "test split (view)", "metrics"):
        table.add_column(column, overflow="fold", no_wrap=column == "protocol")
    for card in protocols.PROTOCOLS.values():
        table.add_row(
            card.key,
            card.dataset,
            card.policy + (f" / {card.vote_mode}" if card.vote_mode else ""),
            card.selection_split,
            f"{card.test_split} ({card.test_view})",
            ", ".join(card.metrics),
        )
    print_table(table)
