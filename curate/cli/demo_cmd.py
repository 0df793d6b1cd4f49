"""`curate demo`: the whole chain on synthetic data, under one output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel

from curate.cli.app import app, console, fail, print_markdown


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for everything the demo writes.")] = Path(
        "demo_output"
    ),
    small: Annotated[
        bool, typer.Option("--small", help="A smaller, faster version (what the end-to-end test runs).")
    ] = False,
    review: Annotated[bool, typer.Option("--review/--no-review", help="Load the run into FiftyOne.")] = True,
) -> None:
    """Synthesise AffectNet, FERPlus and RAF-DB, build them with `tfds build`, study the label
    policies, train baselines for two policies and load the errors into FiftyOne. A second
    run reuses every step that is up to date."""
    import dataclasses

    from curate.demo import DemoError, DemoSettings, run_demo

    settings = DemoSettings.small(out) if small else DemoSettings(out=out)
    settings = dataclasses.replace(settings, with_review=review)
    try:
        result = run_demo(
            settings, echo=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True)
        )
    except DemoError as error:
        fail(str(error))
    console.print(Panel.fit(f"Demo output: {result['output']}", title="done"))
    for key in ("raw datasets", "tfds data_dir", "workspace"):
        console.print(f"[bold]{key}[/]: {result[key]}", soft_wrap=True)
    for report in result["reports"]:
        console.print(f"[bold]report[/]: {report}", soft_wrap=True)
    for run in result["runs"]:
        console.print(f"[bold]run[/]: {run}", soft_wrap=True)
    print_markdown(str(result["comparison table"]))
    if review:
        console.print(f"[bold]open the app[/]: {result['open the app']}", soft_wrap=True)
    console.print(f"[bold]wall time[/]: {result['wall seconds']} s (steps overlap)", soft_wrap=True)
    console.print(
        "[bold]seconds per step[/]: " + ", ".join(f"{k} {v}" for k, v in result["seconds per step"].items()),
        soft_wrap=True,
    )
