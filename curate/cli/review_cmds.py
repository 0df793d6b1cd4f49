"""`curate review ...`: FiftyOne review of datasets and runs (load, report, app, corrections).

Thin Typer commands over :mod:`curate.review`; FiftyOne is imported only inside the
commands, so ``curate --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from curate.cli.app import WorkspaceOption, app, console, fail, print_table

review_app = typer.Typer(
    help="Review datasets and runs in FiftyOne: load, find label errors, export corrections.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")

NameOption = Annotated[
    str | None,
    typer.Option("--name", "-n", help="FiftyOne dataset name (default: the dataset's name, e.g. affectnet)."),
]


def _workspace(path: Path | None) -> Any:
    from curate.workspace import Workspace

    return Workspace(path)


def _user_errors() -> tuple[type[BaseException], ...]:
    from curate.review.app import AppLaunchError
    from curate.review.db import ReviewDatabaseError

    return (ValueError, OSError, ReviewDatabaseError, AppLaunchError)


def _dataset(name: str | None, workspace: Path | None) -> Any:
    """The review dataset ``name``; without a name, the only one (or the one named like a dataset)."""
    from curate.review import db
    from curate.review.fields import INFO_KEY

    fo = db.connect()
    if name is None:
        ours = [n for n in fo.list_datasets() if (fo.load_dataset(n).info or {}).get(INFO_KEY)]
        if len(ours) != 1:
            fail(f"give --name (review datasets: {', '.join(ours) or 'none; run `curate review load` first'})")
        name = ours[0]
    if not fo.dataset_exists(name):
        fail(f"no FiftyOne dataset {name!r}; run `curate review load` first")
    return fo.load_dataset(name)


@review_app.command("load")
def load_command(
    dataset: Annotated[str, typer.Argument(help="affectnet, ferplus or rafdb.", show_default=False)],
    manual_dir: Annotated[
        Path | None,
        typer.Option(
            "--manual-dir", help="Raw files as the authors ship them (default: the workspace's ingest source)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="TFDS data_dir with the built dataset (images copied once into the cache)."),
    ] = None,
    tfds_config: Annotated[
        str | None, typer.Option("--tfds-config", help="Builder config with --data-dir (default: newest).")
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Run folder, or the name of a run registered in the workspace.")
    ] = None,
    name: NameOption = None,
    allow_partial: Annotated[
        bool, typer.Option("--allow-partial", help="Load a run whose prediction ids only partly match the dataset.")
    ] = False,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Rebuild the samples even when the annotations are unchanged.")
    ] = False,
    top_k: Annotated[
        int | None,
        typer.Option("--top-k", min=1, help="Size of the likely-label-errors view (default: rows cleanlab flags)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Where materialised images go (default <workspace>/review-cache)."),
    ] = None,
    landmark_model: Annotated[
        bool,
        typer.Option(
            "--landmark-model/--no-landmark-model",
            help="Confident learning on the run's probabilities fused with a cross-fitted model of the 68 landmarks "
            "(AffectNet), or on the run's alone.",
        ),
    ] = True,
    workspace: WorkspaceOption = None,
) -> None:
    """Create or update a persistent FiftyOne dataset (and attach a run's predictions and scores)."""
    from curate.review import load as review_load

    try:
        summary = review_load.load(
            dataset,
            manual_dir=manual_dir,
            data_dir=data_dir,
            tfds_config=tfds_config,
            run=run,
            name=name,
            workspace=_workspace(workspace),
            cache_dir=cache_dir,
            allow_partial=allow_partial,
            refresh=refresh,
            top_k=top_k,
            landmark_model=landmark_model,
            log=lambda message: console.print(f"[dim]{message}[/]", highlight=False),
        )
    except _user_errors() as error:
        fail(str(error))
    rate = (
        f", {summary.samples / summary.seconds_ingest:,.0f} samples/s"
        if summary.built and summary.seconds_ingest
        else ""
    )
    console.print(
        f"[bold green]{summary.name}[/]: {summary.samples:,} samples from {summary.source} "
        f"({'built' if summary.built else 'unchanged'}{rate})",
        highlight=False,
    )
    details = []
    if summary.refused:
        details.append(f"{summary.refused} annotation rows rejected by the reader")
    if summary.missing_images:
        details.append(f"{summary.missing_images} images missing or unreadable")
    if summary.images_written:
        details.append(f"{summary.images_written} images written to the cache")
    if summary.tags_carried:
        details.append(f"tags of {summary.tags_carried} samples carried over")
    for line in [*details, *summary.notes]:
        console.print(f"  {line}", highlight=False)
    for run_summary in summary.runs:
        accuracy = "n/a" if run_summary.accuracy is None else f"{run_summary.accuracy:.3f}"
        console.print(
            f"  run [cyan]{run_summary.name}[/]: {run_summary.matched} predictions, eval key {run_summary.eval_key} "
            f"(accuracy {accuracy} vs {run_summary.gt_field}), {run_summary.flagged} label issues flagged"
            + (f", {run_summary.unmatched} ids not in the dataset" if run_summary.unmatched else ""),
            highlight=False,
        )
        console.print(f"    {_provenance(run_summary.protocol, run_summary.data_fingerprint)}", highlight=False)
    if summary.duplicates.get("samples"):
        console.print(
            f"  duplicates: {summary.duplicates['samples']:,} samples in {summary.duplicates['groups']:,} groups "
            f"(from {summary.duplicates['pairs']:,} pairs in the workspace's duplicate_pairs)",
            highlight=False,
        )
    _print_views(summary.views)


def _provenance(protocol: str | None, fingerprint: str | None) -> str:
    """``protocol affectnet-8@1, data sha256:...`` (``docs/protocols.md``)."""
    return (
        f"protocol {protocol or 'none (no protocol card)'}, data {fingerprint or 'unknown (no fingerprint recorded)'}"
    )


def _print_views(views: dict[str, Any]) -> None:
    if not views:
        return
    table = Table(title="Saved views")
    table.add_column("view", style="cyan")
    table.add_column("samples", justify="right")
    if views and isinstance(next(iter(views.values())), tuple):
        table.add_column("what")
        for name, (size, description) in views.items():
            table.add_row(name, f"{size:,}", description)
    else:
        for name, size in views.items():
            table.add_row(name, f"{size:,}")
    print_table(table)


@review_app.command("report")
def report_command(
    name: NameOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Confusions listed per run.")] = 10,
    workspace: WorkspaceOption = None,
) -> None:
    """Print the saved views' sizes, duplicate groups and each run's protocol, fingerprint and worst confusions."""
    from curate.review import views

    try:
        ds = _dataset(name, workspace)
        result = views.report(ds, limit=limit)
    except _user_errors() as error:
        fail(str(error))
    console.print(
        f"[bold]{result.name}[/]: {result.samples:,} samples ({result.dataset}; "
        + ", ".join(f"{split} {count:,}" for split, count in result.splits.items())
        + f")\n  source {result.source}",
        highlight=False,
    )
    _print_views(result.views)
    for run in result.runs:
        accuracy = "n/a" if run.accuracy is None else f"{run.accuracy:.3f}"
        active = " (active)" if run.key == result.active_run else ""
        console.print(
            f"[bold]run {run.name}[/]{active}: accuracy {accuracy} on {run.evaluated:,} samples vs {run.gt_field} "
            f"(eval key {run.eval_key})\n"
            f"  {run.label_issues} label issues flagged (confident learning on {run.label_quality_from} probabilities)\n"
            f"  {_provenance(run.protocol, run.data_fingerprint)}",
            highlight=False,
        )
        table = Table(title=f"worst confusions ({run.protocol or 'no protocol'})", title_justify="left")
        table.add_column("ground truth")
        table.add_column("predicted")
        table.add_column("count", justify="right")
        for truth, predicted, count in run.confusions:
            table.add_row(str(truth), str(predicted), f"{count:,}")
        print_table(table)
    if result.duplicates:
        dup = result.duplicates
        console.print(
            f"duplicates: {dup['samples']:,} samples in {dup['groups']:,} groups, {dup['cross_split']:,} of them "
            "across splits (saved view `duplicates`)",
            highlight=False,
        )
    if result.tags:
        console.print("tags: " + ", ".join(f"{tag} {count}" for tag, count in result.tags.items()), highlight=False)


@review_app.command("export-corrections")
def export_corrections_command(
    name: NameOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Parquet file (default <workspace>/exports/corrections_<name>.parquet)."),
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Write the App's `relabel:<label>` and `exclude` tags to a corrections Parquet file."""
    from curate import corrections
    from curate.review import corrections as review_corrections

    try:
        ds = _dataset(name, workspace)
        path = out or review_corrections.default_path(ds.name, _workspace(workspace))
        table, written = review_corrections.export_corrections(ds, path)
    except _user_errors() as error:
        fail(str(error))
    counts = corrections.summarize(table)
    console.print(
        f"{table.height} corrections from {ds.name!r} -> {written}"
        + (" (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")" if counts else ""),
        highlight=False,
    )


@review_app.command("app")
def app_command(
    name: NameOption = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Port on 127.0.0.1.")] = 5151,
    log_file: Annotated[
        Path | None,
        typer.Option("--log-file", help="The App server's log (default <tmp>/curate-review-app-<port>.log)."),
    ] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Serve the FiftyOne App on 127.0.0.1 only and print its URL (Ctrl-C stops it; exits
    with an error naming the log when the App server dies)."""
    from curate.review import app as review_app_module

    try:
        ds = _dataset(name, workspace)
        review_app_module.launch(
            ds.name,
            port=port,
            log_path=log_file,
            announce=lambda line: console.print(line, highlight=False, soft_wrap=True),
        )
    except _user_errors() as error:
        fail(str(error))


@review_app.command("list")
def list_command() -> None:
    """List the FiftyOne datasets created by `curate review load`."""
    from curate.review import db
    from curate.review.fields import INFO_KEY

    try:
        fo = db.connect()
    except _user_errors() as error:
        fail(str(error))
    table = Table(title=f"Review datasets ({db.database_description()})")
    for column in ("name", "samples", "source", "runs"):
        table.add_column(column)
    for dataset_name in fo.list_datasets():
        ds = fo.load_dataset(dataset_name)
        info = (ds.info or {}).get(INFO_KEY)
        if not info:
            continue
        runs = ", ".join(r["name"] for r in info.get("runs", {}).values())
        table.add_row(dataset_name, f"{len(ds):,}", info.get("source", {}).get("key", "?"), runs)
    print_table(table)


@review_app.command("delete")
def delete_command(
    name: Annotated[str, typer.Argument(help="FiftyOne dataset to delete.", show_default=False)],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a FiftyOne dataset (its tags go with it: export corrections first)."""
    from curate.review import db

    try:
        fo = db.connect()
    except _user_errors() as error:
        fail(str(error))
    if not fo.dataset_exists(name):
        fail(f"no FiftyOne dataset {name!r}")
    if not yes and not typer.confirm(f"delete FiftyOne dataset {name!r} and its tags?"):
        raise typer.Exit(1)
    fo.load_dataset(name).delete()
    console.print(f"deleted {name}")
