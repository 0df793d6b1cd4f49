"""`curate audit duplicates` and `curate audit va`: thin Typer commands over :mod:`curate.audit`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from curate.cli.app import WorkspaceOption, app, console, fail, print_table

audit_app = typer.Typer(
    help="Audits: duplicate images across splits, valence/arousal consistency.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")


def _manual_dirs(ws: Any, datasets: list[str], manual_dir: Path | None) -> dict[str, Path]:
    """Dataset -> manual dir: ``--manual-dir`` (one dataset), ``DIR/<dataset>`` (``--all``),
    else the folder the workspace ingested the dataset from."""
    found: dict[str, Path] = {}
    sources: dict[str, str] = {}
    if ws.exists:
        with ws.connect() as con:
            try:
                sources = dict(con.execute("SELECT dataset, source FROM ingests").fetchall())
            except Exception:  # noqa: BLE001 - no ingests table yet
                sources = {}
    for dataset in datasets:
        if manual_dir is not None and len(datasets) == 1:
            candidate = manual_dir
        elif manual_dir is not None and (manual_dir / dataset).is_dir():
            candidate = manual_dir / dataset
        elif dataset in sources and Path(sources[dataset]).is_dir():
            candidate = Path(sources[dataset])
        else:
            continue
        if not candidate.is_dir():
            raise ValueError(f"--manual-dir {candidate}: no such folder")
        found[dataset] = candidate
    return found


def _tfds_dirs(datasets: list[str], tfds_dir: Path, config: str | None) -> dict[str, Path]:
    """Dataset -> its newest built version under ``tfds_dir`` (one dataset: an error when missing)."""
    from curate.tfds_tables import find_tfds_dir
    from curate.workspace import WorkspaceError

    if not tfds_dir.is_dir():
        raise ValueError(f"--tfds-dir {tfds_dir}: no such folder")
    found: dict[str, Path] = {}
    for dataset in datasets:
        try:
            found[dataset] = find_tfds_dir(tfds_dir, dataset, config)
        except WorkspaceError:
            if len(datasets) == 1:
                raise
    return found


def _print_summary(
    hashed: Any, dirs: dict[str, Path], elapsed: float, pairs: Any, exclusions: Any, max_distance: int
) -> None:
    from rich.table import Table

    from curate import audit

    failed = int((~hashed["ok"]).sum())
    console.print(
        f"{hashed.height:,} images from {', '.join(f'{k} ({v})' for k, v in dirs.items())} hashed in {elapsed:.1f} s"
        + (f"; {failed:,} did not decode" if failed else "")
    )
    summary = audit.pair_summary(pairs)
    table = Table(title=f"duplicate pairs: {pairs.height:,} (pHash distance <= {max_distance})")
    for column in ("group a", "group b", "exact", "near", "flip", "total"):
        table.add_column(column, justify="left" if column.startswith("group") else "right")
    for row in summary.iter_rows(named=True):
        counts = (f"{row[k]:,}" for k in ("exact", "near", "flip", "total"))
        table.add_row(row["group_a"], row["group_b"], *counts)
    print_table(table)
    console.print(f"ids to drop to keep one image per group (test/validation kept): {exclusions.height:,}")


def _hash_all(dirs: dict[str, Path], *, from_build: bool, workers: int | None) -> Any:
    """The hashes of every dataset's images: decoded from the manual dirs, or a build's stored crops."""
    import polars as pl

    from curate import audit

    if from_build:
        from curate.audit_tfds import hash_tfds

        return pl.concat([hash_tfds(folder, name, workers=workers) for name, folder in dirs.items()])
    images = pl.concat([audit.load_images(name, folder) for name, folder in dirs.items()], how="vertical_relaxed")
    return audit.hash_images(images, workers=workers)


@audit_app.command("duplicates")
def duplicates_command(
    dataset: Annotated[
        str | None, typer.Option("--dataset", "-d", help="affectnet, ferplus or rafdb.", show_default=False)
    ] = None,
    all_datasets: Annotated[
        bool, typer.Option("--all", help="Every dataset (across datasets too); --manual-dir holds DIR/<dataset>.")
    ] = False,
    manual_dir: Annotated[
        Path | None,
        typer.Option(
            "--manual-dir",
            help="The dataset's manual dir (with --all: a folder of <dataset>/ dirs); "
            "default: the folder the workspace ingested it from.",
        ),
    ] = None,
    tfds_dir: Annotated[
        Path | None,
        typer.Option(
            "--tfds-dir",
            help="Hash the images a TFDS build stored (a data dir holding <dataset>/[CONFIG/]VERSION) "
            "instead of decoding the sources again.",
        ),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", help="With --tfds-dir: the builder config (AffectNet: crop224, full).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the pairs to this Parquet file.")] = None,
    exclusions_out: Annotated[
        Path | None,
        typer.Option("--exclusions-out", help="Write the ids to drop (one kept per group, test first) as Parquet."),
    ] = None,
    max_distance: Annotated[
        int, typer.Option("--max-distance", help="Largest pHash Hamming distance (of 256 bits) of a near pair.")
    ] = 36,
    max_pixel_diff: Annotated[
        float,
        typer.Option(
            "--max-pixel-diff", help="Largest mean difference (0-255 scale) of the normalised face thumbnails."
        ),
    ] = 11.0,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="Near-pair search: auto (exact up to 20,000 images, else lsh), exact, lsh (bit-sampling LSH), "
            "ivf or multihash (faiss indexes, for comparison).",
        ),
    ] = "auto",
    normalise: Annotated[
        str,
        typer.Option("--normalise", help="Thumbnail normalisation before comparing: rank, zscore or raw."),
    ] = "rank",
    flips: Annotated[
        bool,
        typer.Option(
            "--flips/--no-flips",
            help="Also find horizontally mirrored copies (the search runs over twice the hashes: about 2x its time).",
        ),
    ] = False,
    workers: Annotated[int | None, typer.Option("--workers", help="Hashing processes (default: every CPU).")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Find exact and near-duplicate images within and across splits (and datasets)."""
    import time

    from curate import audit, datasets
    from curate.workspace import Workspace, WorkspaceError, check_dataset

    if (dataset is None) == (not all_datasets):
        fail("give exactly one of --dataset D or --all")
    if tfds_dir is not None and manual_dir is not None:
        fail("give one of --manual-dir and --tfds-dir")
    try:
        if method not in audit.SEARCH_METHODS:
            raise ValueError(f"--method {method}: not one of {', '.join(audit.SEARCH_METHODS)}")
        if normalise not in audit.NORMALISE_METHODS:
            raise ValueError(f"--normalise {normalise}: not one of {', '.join(audit.NORMALISE_METHODS)}")
        ws = Workspace(workspace)
        names = [check_dataset(dataset)] if dataset else list(datasets.names())
        dirs = _tfds_dirs(names, tfds_dir, config) if tfds_dir is not None else _manual_dirs(ws, names, manual_dir)
        if not dirs and tfds_dir is not None:
            fail(f"--tfds-dir {tfds_dir}: no built dataset of {', '.join(names)} in it")
        if not dirs:
            fail(
                "no manual dir: give --manual-dir DIR"
                + (f" (a folder holding {', '.join(name + '/' for name in names)})" if all_datasets else "")
                + " or ingest the dataset from its manual dir first"
            )
        started = time.perf_counter()
        hashed = _hash_all(dirs, from_build=tfds_dir is not None, workers=workers)
        pairs = audit.pairs_from_hashes(
            hashed, max_distance=max_distance, max_pixel_diff=max_pixel_diff, method=method, normalise=normalise,
            flips=flips,
        )
        elapsed = time.perf_counter() - started
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            pairs.write_parquet(out, compression="zstd")
        exclusions = audit.exclusion_ids(pairs)
        if exclusions_out is not None:
            audit.write_exclusions(exclusions, exclusions_out)
        stored = ws.exists
        if stored:
            audit.store_pairs(ws, pairs, list(dirs))
    except (ValueError, OSError, MemoryError, WorkspaceError) as error:
        fail(str(error))
    _print_summary(hashed, dirs, elapsed, pairs, exclusions, max_distance)
    if out is not None:
        console.print(f"pairs written to {out}")
    if exclusions_out is not None:
        console.print(f"exclusion list written to {exclusions_out}")
    if stored:
        console.print(f"stored in workspace table duplicate_pairs ({ws.root})")


@audit_app.command("va")
def va_command(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset with valence/arousal.")] = "affectnet",
    k: Annotated[float, typer.Option("--k", help="Threshold median(d) + k * 1.4826 * MAD(d) per label.")] = 3.0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the flagged rows to this Parquet file.")] = None,
    workspace: WorkspaceOption = None,
) -> None:
    """Flag rows whose (valence, arousal) is far from their label's typical region."""
    from curate import audit, labels
    from curate.workspace import Workspace

    try:
        ws = Workspace(workspace)
        ws.require_database()
        with ws.connect() as con:
            ws.require_datasets(con, dataset)
        frame = ws.annotations(
            dataset, columns=["id", "dataset", "split", "label", "valence", "arousal", "va_annotated"]
        )
        scored = audit.va_outliers(frame, k=k)
        if scored.height == 0:
            fail(f"{dataset}: no rows with valence/arousal in workspace {ws.root}")
        flagged = scored.filter("outlier")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            flagged.write_parquet(out, compression="zstd")
    except (ValueError, OSError) as error:
        fail(str(error))
    from rich.table import Table

    table = Table(title=f"{dataset}: V/A outliers per label (k = {k})")
    for column in ("label", "rows", "outliers", "share", "centre V", "centre A", "threshold"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for row in audit.va_summary(scored).iter_rows(named=True):
        table.add_row(
            labels.CANONICAL_NAMES[row["label"]],
            f"{row['rows']:,}",
            f"{row['outliers']:,}",
            f"{100 * row['share']:.1f}%",
            f"{row['centre_valence']:+.2f}",
            f"{row['centre_arousal']:+.2f}",
            f"{row['threshold']:.2f}",
        )
    print_table(table)
    console.print(f"flagged {flagged.height:,} of {scored.height:,} rows with V/A")
    if out is not None:
        console.print(f"flagged rows written to {out}")
