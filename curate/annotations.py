"""The annotation table in its stored form: what every ingest and review load applies.

:func:`normalize_annotations` turns a reader's annotations (``curate.formats``) into the
workspace's stored form -- schema dtypes, valence/arousal outside [-1, 1] nulled -- and
moves the rows it cannot keep (label out of range, unknown split, another dataset's name,
missing or repeated id) to rejects; :func:`with_vote_labels` gives rows with FER+ votes their
FER+ label under a vote mode and keeps FER2013's own label beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate import labels

#: The splits a row may belong to (the workspace stores them as an ENUM).
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Column of FER2013's own label (canonical order) in a frame whose ``label`` comes from votes,
#: and in the workspace's ``annotations`` table (null for rows of datasets without votes).
FER2013_LABEL_COLUMN = "fer2013_label"


def with_vote_labels(frame: Any, dataset: str, vote_mode: str | labels.VoteMode | None = None) -> Any:
    """Rows of a dataset with votes take their FER+ label; the file's own label moves aside.

    For a dataset whose registry entry carries votes (FERPlus), every row with ten votes gets
    ``label`` = the canonical label of ``vote_mode`` (default
    :data:`curate.labels.DEFAULT_VOTE_MODE`), by :func:`curate.labels.ferplus_vote_targets`:
    an emotion 0-7, or 9 (Uncertain) / 10 (No-Face) where the winner is ``unknown`` / ``NF``
    -- rows every policy then leaves out (:data:`curate.labels.VOTE_EXCLUDED_LABELS`). The
    label of the dataset's own file (FERPlus: FER2013's ``emotion``, ``raw_label``) is kept,
    mapped to canonical order by the registry, in :data:`FER2013_LABEL_COLUMN` (null where the
    row has none, e.g. a vote file ingested alone).

    Frames of datasets without votes come back unchanged, and so does a frame that already
    has :data:`FER2013_LABEL_COLUMN` (it was labelled once: ``curate ingest`` labels before
    applying review corrections, so that they override). Vectorised; rows without ten
    votes keep their label.
    """
    import polars as pl

    from curate import datasets as registry
    from curate.readtime import resolve_vote_mode

    spec = registry.get(dataset)
    mode = resolve_vote_mode(dataset, vote_mode)  # ReadTimeError (a ValueError) for a dataset without votes
    if mode is None or FER2013_LABEL_COLUMN in frame.columns:
        return frame
    width = len(labels.FERPLUS_VOTE_COLUMNS)
    has_votes = (frame["votes"].list.len() == width).fill_null(False)
    winner = np.full(frame.height, -1, dtype=np.int64)
    if has_votes.any():
        votes = frame.filter(has_votes)["votes"].list.to_array(width).to_numpy()
        winner[has_votes.to_numpy()] = labels.ferplus_vote_targets(votes, mode).label
    codes = list(spec.raw_to_canonical)
    return frame.with_columns(
        pl.when(has_votes).then(pl.Series(winner)).otherwise(pl.col("label")).cast(pl.Int8).alias("label"),
        pl.col("raw_label")
        .cast(pl.Int64)
        .replace_strict(codes, [spec.raw_to_canonical[c] for c in codes], default=None, return_dtype=pl.Int8)
        .alias(FER2013_LABEL_COLUMN),
    )


def normalize_annotations(frame: Any, dataset: str) -> tuple[Any, Any]:
    """Polars transform of a reader's annotations into the workspace's stored form.

    Returns ``(clean, refused)``: ``clean`` has the schema's dtypes, null valence/arousal
    outside [-1, 1] and ``va_annotated`` true only where both are present; ``refused`` are
    rejects (``REJECT_SCHEMA``) for rows with a label outside 0-10, an unknown split, another
    dataset's name or an id seen earlier in the frame.
    """
    import polars as pl

    from curate.formats.schema import ANNOTATION_SCHEMA, REJECT_SCHEMA, reject_frame

    extras = [c for c in frame.columns if c not in ANNOTATION_SCHEMA]
    top = labels.NUM_CANONICAL - 1
    reason = (
        pl.when(
            pl.col("label").is_null() | (pl.col("label").cast(pl.Int64) < 0) | (pl.col("label").cast(pl.Int64) > top)
        )
        .then(pl.lit("label out of range"))
        .when(pl.col("split").is_null() | ~pl.col("split").is_in(list(SPLITS)))
        .then(pl.lit("unknown split"))
        .when(pl.col("dataset") != dataset)
        .then(pl.lit("wrong dataset"))
        .when(pl.col("id").is_null())
        .then(pl.lit("missing id"))
        .when(~pl.col("id").is_first_distinct())
        .then(pl.lit("duplicate id"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    detail = (
        pl.when(reason == "label out of range")
        .then(pl.format("label={}", pl.col("label")))
        .when(reason == "unknown split")
        .then(pl.format("split={}", pl.col("split")))
        .when(reason == "wrong dataset")
        .then(pl.format("dataset={}", pl.col("dataset")))
        .otherwise(pl.format("id={}", pl.col("id")))
    )
    judged = frame.lazy().with_columns(reason.alias("_reason"))
    flags = judged.select("_reason").collect()["_reason"]
    refused = pl.DataFrame(schema=REJECT_SCHEMA)
    if flags.null_count() != len(flags):
        bad = judged.filter(pl.col("_reason").is_not_null())
        refused = reject_frame(
            bad.with_columns(pl.lit(dataset).alias("dataset"), pl.col("label").cast(pl.Int64)),
            reason=pl.col("_reason"),
            detail=detail,
        ).collect()
        judged = judged.filter(pl.col("_reason").is_null())
    in_range = pl.col("valence").is_between(-1.0, 1.0) & pl.col("arousal").is_between(-1.0, 1.0)
    clean = (
        judged.drop("_reason")
        .with_columns(
            pl.when(in_range).then(pl.col("valence")).alias("valence"),
            pl.when(in_range).then(pl.col("arousal")).alias("arousal"),
            in_range.fill_null(False).alias("va_annotated"),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in ANNOTATION_SCHEMA.items()] + extras)
        .collect()
    )
    return clean, refused
