"""What ``curate ingest`` runs: read one annotation source, apply the override layers, ingest.

Scope
-----
* :func:`read_source` -- a dataset's annotation tables from exactly one source: a manual dir
  (the dataset's :mod:`curate.formats` reader), a built TFDS dataset
  (:func:`curate.tfds_tables.read_tfds`) or the FER+ vote file alone.
* :func:`ingest_source` -- the whole command: read, label rows with FER+ votes under a vote
  mode (:func:`curate.annotations.with_vote_labels`), apply review corrections
  (:func:`curate.corrections.apply_to_parsed`) then an exclusion list
  (:func:`curate.exclusions.apply_exclusions`), store in the workspace, optionally list
  and export the rejects. Returns an :class:`IngestOutcome` the CLI prints.

Heavy imports (Polars, DuckDB) happen inside the functions.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class IngestOutcome:
    """One finished ingest.

    Attributes
    ----------
    summary : curate.workspace.IngestSummary
        Rows per split and rejects per reason.
    workspace : Path
        The workspace folder.
    seconds : float
        Wall time from reading the source to the end of the ingest.
    corrections : tuple[int, int] or None
        ``(relabelled, excluded)`` rows when a corrections file was applied.
    exclusions : tuple[int, int] or None
        ``(excluded, listed)``: rows moved to the rejects and ids the list names for the
        dataset, when an exclusion list was applied.
    rejects : polars.DataFrame or None
        The first ``show_rejects`` rejected rows, when asked for.
    rejects_out : Path or None
        Parquet file holding every rejected row of the dataset, when asked for.
    """

    summary: Any
    workspace: Path
    seconds: float
    corrections: tuple[int, int] | None = None
    exclusions: tuple[int, int] | None = None
    rejects: Any = None
    rejects_out: Path | None = None


def read_source(
    dataset: str,
    *,
    manual_dir: Path | None = None,
    tfds_dir: Path | None = None,
    config: str | None = None,
    votes_file: Path | None = None,
) -> tuple[Any, str]:
    """``(ParsedTables, source description)`` of the one source given."""
    from curate import datasets
    from curate.workspace import check_dataset

    given = [s for s in (manual_dir, tfds_dir, votes_file) if s is not None]
    if len(given) != 1:
        raise ValueError("give exactly one of --manual-dir, --tfds-dir or --votes-file")
    check_dataset(dataset)
    spec = datasets.get(dataset)
    if tfds_dir is not None:
        from curate.tfds_tables import read_tfds

        return read_tfds(tfds_dir, dataset, config=config), f"tfds:{tfds_dir}"
    if votes_file is not None:  # a dataset with votes reads its vote file alone (read_votes)
        if not spec.votes:
            raise ValueError(f"--votes-file is only for {', '.join(datasets.having('votes'))}")
        return spec.reader_module().read_votes(votes_file), f"votes:{votes_file}"
    assert manual_dir is not None
    if not Path(manual_dir).is_dir():
        raise ValueError(f"--manual-dir {manual_dir}: no such folder")
    return spec.read(manual_dir), str(manual_dir)


def export_rejects(workspace: Any, dataset: str, path: str | Path) -> Path:
    """Write every rejected row of ``dataset`` to Parquet, in source-file / row order."""
    return workspace.export_parquet(
        "SELECT * FROM rejects WHERE dataset = ? ORDER BY source_file, source_row", path, [dataset]
    )


def ingest_source(
    workspace: Any,
    dataset: str,
    *,
    manual_dir: Path | None = None,
    tfds_dir: Path | None = None,
    config: str | None = None,
    votes_file: Path | None = None,
    corrections: Path | None = None,
    exclusions: Path | None = None,
    show_rejects: int = 0,
    rejects_out: Path | None = None,
    vote_mode: str | None = None,
) -> IngestOutcome:
    """Read ``dataset`` from its one source, label it, apply corrections then exclusions, ingest it.

    Rows with FER+ votes take the label of ``vote_mode`` (default
    :data:`curate.labels.DEFAULT_VOTE_MODE`; a dataset without votes refuses one) before the
    corrections, so a review correction overrides it. Errors a user can fix raise
    ``ValueError`` subclasses (``CorrectionError``, ``ExclusionListError``, ``FormatError``,
    ``ReadTimeError`` ...) or ``OSError``, each naming the file.
    """
    from curate.annotations import with_vote_labels

    started = time.perf_counter()
    parsed, source = read_source(
        dataset, manual_dir=manual_dir, tfds_dir=tfds_dir, config=config, votes_file=votes_file
    )
    parsed = dataclasses.replace(parsed, annotations=with_vote_labels(parsed.annotations, dataset, vote_mode))
    corrected = excluded = None
    if corrections is not None:
        from curate.corrections import apply_to_parsed, read_corrections

        parsed, relabelled, removed = apply_to_parsed(parsed, read_corrections(corrections))
        corrected = (relabelled, removed)
    if exclusions is not None:
        from curate.exclusions import apply_exclusions, read_exclusion_list

        listed = read_exclusion_list(exclusions, option="--exclusions")
        parsed, moved, named = apply_exclusions(parsed, listed, dataset)
        excluded = (moved, named)
    summary = workspace.ingest(parsed, dataset=dataset, source=source, vote_mode=vote_mode)
    seconds = time.perf_counter() - started
    return IngestOutcome(
        summary=summary,
        workspace=workspace.root,
        seconds=seconds,
        corrections=corrected,
        exclusions=excluded,
        rejects=workspace.rejects(dataset, limit=show_rejects) if show_rejects else None,
        rejects_out=export_rejects(workspace, dataset, rejects_out) if rejects_out is not None else None,
    )
