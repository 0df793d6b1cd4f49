"""`curate ingest`, `curate balance`, `curate remap` and `curate study remap`.

Thin Typer commands over :mod:`curate.ingest` and :mod:`curate.studies`: they parse the
arguments, call one library function and print its result. Every library import happens
inside the command so ``curate --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from curate.cli.app import VoteModeOption, WorkspaceOption, app, console, fail, print_table

study_app = typer.Typer(
    help="Studies over the workspace, written as Markdown + PNG + JSON reports.", no_args_is_help=True
)
app.add_typer(study_app, name="study")

DatasetOption = Annotated[
    str | None, typer.Option("--dataset", "-d", help="affectnet, ferplus or rafdb (default: every ingested dataset).")
]
BetaOption = Annotated[
    float, typer.Option("--beta", help="Effective-number beta (Cui et al.) for the 'effective' class weights.")
]


def _workspace(path: Path | None) -> Any:
    from curate.workspace import Workspace

    return Workspace(path)


def _user_errors() -> tuple[type[BaseException], ...]:
    return (ValueError, OSError)


@app.command("ingest")
def ingest_command(
    dataset: Annotated[str, typer.Argument(help="Dataset to ingest: affectnet, ferplus or rafdb.", show_default=False)],
    manual_dir: Annotated[
        Path | None, typer.Option("--manual-dir", help="Folder with the raw files as the dataset's authors ship them.")
    ] = None,
    tfds_dir: Annotated[
        Path | None,
        typer.Option("--tfds-dir", help="TFDS data_dir holding a built dataset (reads its non-image features)."),
    ] = None,
    tfds_config: Annotated[
        str | None, typer.Option("--tfds-config", help="Builder config to read with --tfds-dir (default: any).")
    ] = None,
    votes_file: Annotated[
        Path | None,
        typer.Option("--votes-file", help="FERPlus only: ingest the FER+ vote file (fer2013new.csv) alone."),
    ] = None,
    show_rejects: Annotated[
        int, typer.Option("--show-rejects", help="List this many rejected rows (file, row, reason, value).", min=0)
    ] = 0,
    rejects_out: Annotated[
        Path | None, typer.Option("--rejects-out", help="Also write every rejected row to this Parquet file.")
    ] = None,
    corrections: Annotated[
        Path | None,
        typer.Option(
            "--corrections",
            help="Corrections Parquet from `curate review export-corrections`: relabels applied as an "
            "override layer, excluded rows listed among the rejects.",
        ),
    ] = None,
    exclusions: Annotated[
        Path | None,
        typer.Option(
            "--exclusions",
            help="Exclusion list Parquet from `curate audit duplicates --exclusions-out`: its ids of this "
            "dataset move to the rejects as 'excluded as duplicate'.",
        ),
    ] = None,
    vote_mode: VoteModeOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Read a dataset's annotation files (no images) into the workspace, in one schema."""
    from curate.ingest import ingest_source

    try:
        outcome = ingest_source(
            _workspace(workspace),
            dataset,
            manual_dir=manual_dir,
            tfds_dir=tfds_dir,
            config=tfds_config,
            votes_file=votes_file,
            corrections=corrections,
            exclusions=exclusions,
            show_rejects=show_rejects,
            rejects_out=rejects_out,
            vote_mode=vote_mode,
        )
    except _user_errors() as error:
        fail(str(error))
    if outcome.corrections is not None:
        relabelled, excluded = outcome.corrections
        console.print(f"corrections {corrections}: {relabelled:,} rows relabelled, {excluded:,} excluded")
    if outcome.exclusions is not None:
        excluded, listed = outcome.exclusions
        console.print(
            f"exclusions {exclusions}: {excluded:,} rows excluded as duplicates ({listed:,} ids listed for {dataset})"
        )
    summary, rejects = outcome.summary, outcome.rejects
    from rich.table import Table

    console.print(f"workspace: {outcome.workspace}")
    console.print(f"{dataset} ingested in {outcome.seconds:.2f} s")
    table = Table(title="rows per split")
    table.add_column("split", style="cyan")
    table.add_column("rows", justify="right")
    for split, n in summary.splits.items():
        table.add_row(split, f"{n:,}")
    table.add_row("[bold]total", f"[bold]{summary.rows:,}")
    print_table(table)
    if summary.rejects:
        reasons = Table(title=f"rejected rows: {summary.rejected:,}")
        reasons.add_column("reason", style="yellow")
        reasons.add_column("rows", justify="right")
        for reason, n in summary.rejects.items():
            reasons.add_row(reason, f"{n:,}")
        print_table(reasons)
    else:
        console.print("rejected rows: 0")
    _print_vote_exclusion(summary.vote_mode, {dataset: summary.vote_excluded})
    if rejects is not None and rejects.height:
        listing = Table(title=f"first {rejects.height} rejected rows")
        for column in ("source_file", "source_row", "id", "reason", "detail"):
            listing.add_column(column)
        for row in rejects.iter_rows(named=True):
            listing.add_row(
                *(
                    str(row[c]) if row[c] is not None else "–"
                    for c in ("source_file", "source_row", "id", "reason", "detail")
                )
            )
        print_table(listing)
    if outcome.rejects_out is not None:
        console.print(f"rejects written to {outcome.rejects_out}")


@app.command("balance")
def balance_command(
    dataset: DatasetOption = None,
    policy: Annotated[str, typer.Option("--policy", "-p", help="Label policy name or TOML path.")] = "keep-all",
    split: Annotated[str | None, typer.Option("--split", help="Only this split (default: every split).")] = None,
    beta: BetaOption = 0.999,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write every number to this JSON file.")] = None,
    vote_mode: VoteModeOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Class counts, balance metrics, class weights and resampling plans per split."""
    from curate.studies.balance import REPORTED_WEIGHT_METHODS, balance

    try:
        report = balance(
            _workspace(workspace), dataset=dataset, policy=policy, split=split, beta=beta, vote_mode=vote_mode
        )
        if json_out is not None:
            from curate.studies.report import write_json

            json_out.parent.mkdir(parents=True, exist_ok=True)
            write_json(report.to_dict(), json_out)
    except _user_errors() as error:
        fail(str(error))
    from rich.table import Table

    for (name, split_name), summary in report.groups.items():
        ratio = summary["imbalance_ratio"]
        table = Table(
            title=f"{name} / {split_name} under {report.policy.name}: {summary['total']:,} rows kept, "
            f"{summary['dropped']:,} dropped",
            caption=f"imbalance max/min {ratio:.2f}, normalised entropy {summary['normalized_entropy']:.3f}, beta {report.beta}"
            if ratio is not None
            else "no rows",
        )
        for column in (
            "class",
            "count",
            "share",
            "eff. number",
            *(f"w {method}" for method in REPORTED_WEIGHT_METHODS),
            "subsample",
            "oversample",
        ):
            table.add_column(column, justify="left" if column == "class" else "right")
        weights = summary["weights"]
        for i, class_name in enumerate(summary["classes"]):
            table.add_row(
                class_name,
                f"{summary['counts'][i]:,}",
                f"{100 * summary['shares'][i]:.1f}%",
                f"{summary['effective_number'][i]:.1f}",
                *(f"{weights[m][i]:.3f}" if weights else "–" for m in REPORTED_WEIGHT_METHODS),
                f"{summary['subsample_plan'][i]:,}",
                f"{summary['oversample_plan'][i]:,}",
            )
        print_table(table)
    if json_out is not None:
        console.print(f"numbers written to {json_out}")


@app.command("remap")
def remap_command(
    policy: Annotated[str, typer.Option("--policy", "-p", help="Label policy name or TOML path.", show_default=False)],
    dataset: DatasetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Also export the remapped rows to this Parquet file (zstd).")
    ] = None,
    vote_mode: VoteModeOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Apply a label policy to the ingested annotations and store the result in the workspace."""
    from curate import labels
    from curate.studies.remap import remap

    try:
        result = remap(_workspace(workspace), policy, dataset=dataset, out=out, vote_mode=vote_mode)
    except _user_errors() as error:
        fail(str(error))
    from rich.table import Table

    matrix = result.transition
    table = Table(title=f"{result.policy.name} on {', '.join(result.datasets)}: source label -> class")
    table.add_column("source label", style="cyan")
    for class_name in result.policy.classes:
        table.add_column(class_name, justify="right")
    table.add_column("dropped", justify="right", style="red")
    for label, row in enumerate(matrix):
        if row.sum():
            table.add_row(labels.CANONICAL_NAMES[label], *(f"{v:,}" if v else "·" for v in row))
    print_table(table)
    total = result.kept + result.dropped
    console.print(
        f"kept [bold]{result.kept:,}[/] of {total:,} rows ({100 * result.kept / max(total, 1):.1f}%), "
        f"dropped [bold]{result.dropped:,}[/]"
    )
    for name, mode in result.vote_modes.items():
        _print_vote_exclusion(mode, {name: result.vote_excluded.get(name, {})})
    balance_table = Table(title="new balance (rows per class)")
    balance_table.add_column("dataset/split", style="cyan")
    for class_name in result.policy.classes:
        balance_table.add_column(class_name, justify="right")
    balance_table.add_column("imbalance", justify="right")
    balance_table.add_column("entropy", justify="right")
    for (name, split_name), summary in result.balance.groups.items():
        ratio = summary["imbalance_ratio"]
        balance_table.add_row(
            f"{name}/{split_name}",
            *(f"{n:,}" for n in summary["counts"]),
            "–" if ratio is None else f"{ratio:.1f}",
            f"{summary['normalized_entropy']:.3f}",
        )
    print_table(balance_table)
    console.print(f"stored policy {result.policy.name}: view remapped serves its label for {result.rows:,} rows")
    if result.out is not None:
        console.print(f"exported to {result.out} ({result.out.stat().st_size:,} bytes)")


@study_app.command("remap")
def study_remap_command(
    dataset: Annotated[
        str,
        typer.Option("--dataset", "-d", help="affectnet, ferplus, rafdb, or all (class distribution side by side)."),
    ] = "affectnet",
    policies: Annotated[
        str | None,
        typer.Option(
            "--policies", help="Comma-separated policy names or TOML paths (default: the five standard ones)."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default <workspace>/reports/...).")] = None,
    fraction: Annotated[
        float, typer.Option("--holdout-fraction", help="Share of train held out as the class-frequency view.")
    ] = 0.05,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the hold-out hash and the V/A sample.")] = 0,
    beta: BetaOption = 0.999,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the PNG figures.")] = True,
    vote_mode: VoteModeOption = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Compare label policies (and FER+ vote modes) side by side; writes a report folder."""
    from curate.studies import run_remap_study

    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
    try:
        outcome = run_remap_study(
            _workspace(workspace),
            dataset,
            policies=names,
            out_dir=out,
            fraction=fraction,
            seed=seed,
            beta=beta,
            plots=plots,
            vote_mode=vote_mode,
        )
    except _user_errors() as error:
        fail(str(error))
    _print_study(outcome.results)
    if outcome.results.get("vote_mode"):
        _print_vote_exclusion(outcome.results["vote_mode"], {dataset: outcome.results.get("vote_excluded", {})})
    console.print(
        f"report: {outcome.report.markdown}  (study #{outcome.study_id}, numbers in {outcome.report.json.name})"
    )


def _print_vote_exclusion(vote_mode: str | None, excluded: dict[str, dict[str, int]]) -> None:
    """One line per dataset with votes: its vote mode and the rows every policy leaves out."""
    if vote_mode is None:
        return
    for name, counts in excluded.items():
        total = sum(counts.values())
        parts = ", ".join(f"{label} {n:,}" for label, n in counts.items()) or "none"
        console.print(
            f"{name}: labels from FER+ votes ({vote_mode}); {total:,} rows whose winner is unknown or NF are "
            f"left out by every policy ({parts})"
        )


def _print_study(results: dict[str, Any]) -> None:
    from rich.table import Table

    if results["kind"] == "distribution":
        table = Table(title="canonical class distribution (all splits)")
        table.add_column("label", style="cyan")
        for name in results["datasets"]:
            table.add_column(name, justify="right")
        for c, label in enumerate(results["canonical_names"]):
            table.add_row(
                label, *(f"{d['total'][c]:,} ({100 * d['shares'][c]:.1f}%)" for d in results["datasets"].values())
            )
        print_table(table)
        return
    from curate.studies import remap as remap_study

    table = Table(title=f"label policies on {results['dataset']}")
    for column in (
        "policy",
        "classes",
        "train kept",
        "imbalance",
        "entropy",
        "majority acc. on class-frequency view",
        "majority acc. on balanced view",
    ):
        table.add_column(column, justify="left" if column == "policy" else "right")
    balanced = results.get("balanced_view")
    for name in results["policies"]:
        entry = results["per_policy"][name]
        train = entry["balance"].get("train", {})
        views = entry["views"]

        def pct(value: float | None) -> str:
            return "–" if value is None else f"{100 * value:.1f}%"

        table.add_row(
            name,
            str(entry["num_classes"]),
            f"{entry['kept'].get('train', 0):,}",
            "–" if train.get("imbalance_ratio") is None else f"{train['imbalance_ratio']:.1f}",
            "–" if train.get("normalized_entropy") is None else f"{train['normalized_entropy']:.3f}",
            pct(views["class_frequency"]["majority_accuracy"]),
            pct(views[balanced]["majority_accuracy"]) if balanced in views else "–",
        )
    print_table(table)
    run_rows = [(name, run) for name in results["policies"] for run in (results["per_policy"][name].get("runs") or [])]
    if run_rows:
        # One row per policy, protocol, data fingerprint and recipe: never averaged across them.
        columns = remap_study.run_columns([run for _, run in run_rows])
        run_table = Table(title="registered runs (newest run of each seed per policy, protocol, data and recipe)")
        for column in ("policy", "run", "protocol", "data fingerprint"):
            run_table.add_column(column)
        for key in columns:
            run_table.add_column(remap_study.RUN_COLUMNS[key], justify="right")
        for name, run in run_rows:
            run_table.add_row(
                name,
                str(run["name"]),
                run.get("protocol") or "–",
                run.get("data_fingerprint") or "–",
                *(remap_study.run_figure(run, view, metric) for view, metric in columns),
            )
        print_table(run_table)
    if results.get("vote_modes"):
        modes = results["vote_modes"]
        mode_table = Table(title="FER+ vote modes: rows kept")
        mode_table.add_column("mode", style="cyan")
        for split in modes["splits"]:
            mode_table.add_column(split, justify="right")
        for mode in modes["modes"]:
            mode_table.add_row(mode, *(f"{modes['per_mode'][mode]['kept'][s]:,}" for s in modes["splits"]))
        print_table(mode_table)
        _print_disagreement(modes.get("disagreement"), modes["canonical_names"])


def _print_disagreement(numbers: dict[str, Any] | None, names: list[str]) -> None:
    """FER+ crowd consensus and FER+ vs FER2013 disagreement per majority class."""
    if not numbers or not numbers["kept"]:
        return
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.1f}%"

    fer = numbers.get("fer2013")
    table = Table(title="FER+ vote disagreement (majority mode, kept rows)")
    columns = ["majority label", "rows", "agreement", "unanimous"]
    if fer:
        columns += ["differs from FER2013"]
    for column in columns:
        table.add_column(column, justify="left" if column == "majority label" else "right")
    for c, name in enumerate(names):
        if not numbers["kept_per_class"][c]:
            continue
        cells = [
            name,
            f"{numbers['kept_per_class'][c]:,}",
            pct(numbers["agreement"]["per_class"][c]),
            pct(numbers["agreement"]["unanimous_share_per_class"][c]),
        ]
        if fer:
            cells.append(pct(fer["disagreement_per_majority_class"][c]))
        table.add_row(*cells)
    print_table(table)
    entropy = numbers["entropy"]
    line = f"vote entropy: mean {entropy['mean']:.3f} bits, unanimous {pct(entropy['unanimous_share'])}"
    if fer:
        line += f"; FER+ majority differs from FER2013 on {pct(fer['disagreement'])} of {fer['rows']:,} rows"
    console.print(line)
