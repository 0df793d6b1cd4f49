"""Review corrections: an override layer on top of the annotation tables.

Scope
-----
People reviewing a dataset (``curate review app``) tag samples ``relabel:<label>`` or
``exclude``; ``curate review export-corrections`` writes those tags to a corrections Parquet
file with :data:`CORRECTIONS_SCHEMA`. Ingest, the remap studies and the trainer apply the
file with :func:`apply_corrections`, which needs neither FiftyOne nor the review package:
this module imports only Polars (inside functions) and :mod:`curate.labels`.

One row per corrected annotation:

* ``id`` -- the annotation id (``docs/contracts.md``), ``dataset`` -- ``affectnet`` ...;
* ``action`` -- ``relabel`` (``new_label`` holds the new *canonical* label 0-10) or
  ``exclude`` (``new_label`` is null; the row is removed);
* ``new_label_name`` -- the canonical name, for people reading the file;
* ``source`` -- where the correction came from (e.g. ``fiftyone:affectnet``), ``tag`` -- the
  tag as typed.

Corrections are keyed by ``(dataset, id)``; a key may appear once. Applying a file twice
changes nothing the second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from curate import labels

#: Actions a correction can take.
ACTIONS: tuple[str, ...] = ("relabel", "exclude")
#: Tag prefix that asks for a new label, e.g. ``relabel:fear``.
RELABEL_PREFIX = "relabel:"
#: Tag that removes an annotation.
EXCLUDE_TAG = "exclude"
#: Reject reason (and detail) of a row an ``exclude`` correction removes at ingest.
EXCLUDED_BY_CORRECTION = "excluded by review correction"
EXCLUDED_BY_CORRECTION_DETAIL = f"tag {EXCLUDE_TAG!r} in the review app"


class CorrectionError(ValueError):
    """A tag or a corrections file cannot be understood; the message names the offending values."""


def corrections_schema() -> dict[str, Any]:
    """Column -> Polars dtype of a corrections table, in order."""
    import polars as pl

    return {
        "id": pl.String,
        "dataset": pl.String,
        "action": pl.String,
        "new_label": pl.Int8,
        "new_label_name": pl.String,
        "source": pl.String,
        "tag": pl.String,
    }


#: Column names of :func:`corrections_schema`, importable without Polars.
CORRECTIONS_COLUMNS: tuple[str, ...] = ("id", "dataset", "action", "new_label", "new_label_name", "source", "tag")


def _fold(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text.casefold())


_NAME_TO_LABEL = {_fold(name): index for index, name in enumerate(labels.CANONICAL_NAMES)}
# A few spellings people type for the canonical names (FER+ and RAF-DB vocabularies).
_NAME_TO_LABEL.update(
    {
        _fold(alias): index
        for alias, index in {
            "happiness": 1,
            "sadness": 2,
            "surprised": 3,
            "fearful": 4,
            "disgusted": 5,
            "angry": 6,
            "unknown": 9,
            "nf": 10,
            "noface": 10,
        }.items()
    }
)


def parse_label(text: str) -> int:
    """Canonical label of a name (case, spaces, ``-`` and ``_`` ignored; FER+/RAF names too) or index."""
    value = text.strip()
    if value.isdigit() and 0 <= int(value) < labels.NUM_CANONICAL:
        return int(value)
    try:
        return _NAME_TO_LABEL[_fold(value)]
    except KeyError:
        raise CorrectionError(
            f"unknown label {text!r} in a relabel tag; use one of {', '.join(labels.CANONICAL_NAMES)} "
            f"(or 0-{labels.NUM_CANONICAL - 1})"
        ) from None


def parse_tag(tag: str) -> tuple[str, int | None] | None:
    """``("relabel", label)``, ``("exclude", None)``, or ``None`` for tags that are not corrections.

    Raises :class:`CorrectionError` for a ``relabel:`` tag whose label is unknown.
    """
    text = tag.strip()
    if text.casefold() == EXCLUDE_TAG:
        return ("exclude", None)
    if text.casefold().startswith(RELABEL_PREFIX):
        return ("relabel", parse_label(text[len(RELABEL_PREFIX) :]))
    return None


def corrections_from_tags(tagged: Iterable[tuple[str, Iterable[str]]], *, dataset: str, source: str) -> Any:
    """Build a corrections table from ``(annotation id, tags)`` pairs.

    Tags that are not corrections are ignored. A sample tagged ``exclude`` and relabelled,
    or relabelled to two different labels, is a conflict: every conflicting id is listed in
    one :class:`CorrectionError`, so a reviewer can fix them all at once. So are unknown
    labels in ``relabel:`` tags.
    """
    import polars as pl

    rows: list[dict[str, Any]] = []
    conflicts: list[str] = []
    unknown: list[str] = []
    for annotation_id, tags in tagged:
        actions: dict[tuple[str, int | None], str] = {}
        for tag in tags:
            try:
                parsed = parse_tag(tag)
            except CorrectionError:
                unknown.append(f"{annotation_id}: {tag!r}")
                continue
            if parsed is not None:
                actions.setdefault(parsed, tag)
        if not actions:
            continue
        if len(actions) > 1:
            conflicts.append(f"{annotation_id} ({', '.join(sorted(actions.values()))})")
            continue
        ((action, new_label), tag) = next(iter(actions.items()))
        rows.append(
            {
                "id": annotation_id,
                "dataset": dataset,
                "action": action,
                "new_label": new_label,
                "new_label_name": None if new_label is None else labels.CANONICAL_NAMES[new_label],
                "source": source,
                "tag": tag,
            }
        )
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} tag(s) with an unknown label: " + "; ".join(unknown[:10]))
    if conflicts:
        problems.append(f"{len(conflicts)} sample(s) with conflicting correction tags: " + "; ".join(conflicts[:10]))
    if problems:
        raise CorrectionError(" | ".join(problems) + " -- fix the tags in the app and export again")
    return pl.DataFrame(rows, schema=corrections_schema(), orient="row")


def validate_corrections(corrections: Any) -> Any:
    """Check a corrections table (columns, actions, labels, unique keys); return it cast to the schema."""
    import polars as pl

    schema = corrections_schema()
    required = ("id", "dataset", "action", "new_label")
    missing = [c for c in required if c not in corrections.columns]
    if missing:
        raise CorrectionError(f"corrections table lacks column(s) {', '.join(missing)} (expected {', '.join(schema)})")
    frame = corrections.with_columns(
        [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in corrections.columns]
    ).select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    bad_action = frame.filter(~pl.col("action").is_in(list(ACTIONS)) | pl.col("action").is_null())
    if bad_action.height:
        raise CorrectionError(
            f"{bad_action.height} correction(s) with an unknown action "
            f"{sorted(set(map(str, bad_action['action'].to_list())))}; allowed: {', '.join(ACTIONS)}"
        )
    bad_label = frame.filter(
        (pl.col("action") == "relabel")
        & (pl.col("new_label").is_null() | ~pl.col("new_label").is_between(0, labels.NUM_CANONICAL - 1))
    )
    if bad_label.height:
        raise CorrectionError(
            f"{bad_label.height} relabel correction(s) without a canonical label 0-{labels.NUM_CANONICAL - 1}, "
            f"e.g. id {bad_label['id'][0]!r}"
        )
    duplicated = frame.filter(pl.struct("dataset", "id").is_duplicated())
    if duplicated.height:
        keys = duplicated.select("dataset", "id").unique().head(5).rows()
        raise CorrectionError(
            f"{duplicated.height} corrections share a (dataset, id) key, e.g. {keys}; keep one correction per annotation"
        )
    return frame


def apply_corrections(annotations_df: Any, corrections_df: Any) -> tuple[Any, int]:
    """Apply a corrections table to an annotation table.

    Parameters
    ----------
    annotations_df : polars.DataFrame
        Rows with at least ``id``, ``dataset`` and ``label`` (canonical), e.g. a reader's
        :attr:`~curate.formats.schema.ParsedTables.annotations` or the workspace's table.
    corrections_df : polars.DataFrame
        A table with :data:`CORRECTIONS_COLUMNS` (at least ``id``, ``dataset``, ``action``,
        ``new_label``), e.g. from :func:`read_corrections`.

    Returns
    -------
    (polars.DataFrame, int)
        The annotations with ``relabel`` rows given their new canonical ``label`` and
        ``exclude`` rows removed (same columns, dtypes and row order), and the number of
        rows changed: relabelled rows whose label differed plus removed rows. Corrections
        for ids not in ``annotations_df`` change nothing.

    See Also
    --------
    corrections_from_tags, read_corrections
    """
    import polars as pl

    for column in ("id", "dataset", "label"):
        if column not in annotations_df.columns:
            raise CorrectionError(f"annotation table lacks column {column!r}")
    corrections = validate_corrections(corrections_df)
    if corrections.height == 0 or annotations_df.height == 0:
        return annotations_df, 0
    label_dtype = annotations_df.schema["label"]
    keyed = corrections.select(
        pl.col("dataset").alias("__dataset"),
        pl.col("id").alias("__id"),
        pl.col("action").alias("__action"),
        pl.col("new_label").alias("__new_label"),
    )
    joined = annotations_df.join(
        keyed,
        left_on=[pl.col("dataset").cast(pl.String), pl.col("id").cast(pl.String)],
        right_on=["__dataset", "__id"],
        how="left",
        maintain_order="left",
    )
    relabel = pl.col("__action") == "relabel"
    changed_label = relabel & (pl.col("label").cast(pl.Int64) != pl.col("__new_label").cast(pl.Int64))
    excluded = pl.col("__action") == "exclude"
    counts = joined.select(
        changed_label.fill_null(False).sum().alias("relabel"), excluded.fill_null(False).sum().alias("exclude")
    )
    n_changed = int(counts["relabel"][0]) + int(counts["exclude"][0])
    result = (
        joined.filter(~excluded.fill_null(False))
        .with_columns(
            pl.when(relabel.fill_null(False))
            .then(pl.col("__new_label"))
            .otherwise(pl.col("label"))
            .cast(label_dtype)
            .alias("label")
        )
        .select(annotations_df.columns)
    )
    return result, n_changed


def read_corrections(path: str | Path) -> Any:
    """Read and validate a corrections Parquet file."""
    import polars as pl

    path = Path(path)
    try:
        frame = pl.read_parquet(path)
    except (OSError, pl.exceptions.ComputeError) as error:
        raise CorrectionError(f"{path}: cannot read corrections file: {error}") from None
    return validate_corrections(frame)


def write_corrections(corrections: Any, path: str | Path) -> Path:
    """Validate and write a corrections table to Parquet (zstd); returns the path."""
    path = Path(path)
    frame = validate_corrections(corrections)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    frame.write_parquet(temporary, compression="zstd")
    temporary.replace(path)
    return path


def summarize(corrections: Any) -> Mapping[str, int]:
    """Counts per action, plus relabel counts per new label name (``relabel:Fear``)."""
    counts: dict[str, int] = {}
    for action, name in zip(corrections["action"].to_list(), corrections["new_label_name"].to_list(), strict=True):
        counts[action] = counts.get(action, 0) + 1
        if action == "relabel":
            key = f"relabel:{name}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def apply_to_parsed(parsed: Any, corrections_df: Any) -> tuple[Any, int, int]:
    """Apply corrections to a reader's ``ParsedTables`` without losing a row.

    Relabelled rows keep their raw label and get the corrected canonical ``label``; excluded
    rows move to the rejects with the reason :data:`EXCLUDED_BY_CORRECTION`, so
    ``rows_in == annotations + rejects`` still holds. Returns ``(parsed, relabelled,
    excluded)``.
    """
    import dataclasses

    from curate.formats.schema import append_rejects, reject_frame

    annotations = parsed.annotations
    corrected, n_changed = apply_corrections(annotations, corrections_df)
    excluded = annotations.join(corrected.select("id"), on="id", how="anti")
    moved = reject_frame(excluded, reason=EXCLUDED_BY_CORRECTION, detail=EXCLUDED_BY_CORRECTION_DETAIL)
    updated = dataclasses.replace(parsed, annotations=corrected, rejects=append_rejects(parsed.rejects, moved))
    return updated, n_changed - excluded.height, excluded.height
