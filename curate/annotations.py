"""The annotation table in its stored form: what every ingest and review load applies.

:func:`normalize_annotations` turns a reader's annotations (``curate.formats``) into the
workspace's stored form -- schema dtypes, valence/arousal outside [-1, 1] nulled -- and
moves the rows it cannot keep (label out of range, unknown split, another dataset's name,
missing or repeated id) to rejects; :func:`fill_labels_from_votes` labels FER+ rows ingested
from the vote file alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate import labels

#: The splits a row may belong to (the workspace stores them as an ENUM).
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: Vote mode that gives a canonical label to FER+ rows ingested from the vote file alone.
VOTES_ONLY_LABEL_MODE = "majority"


def fill_labels_from_votes(frame: Any) -> Any:
    """Give rows with votes but no label (``read_votes``) the FER+ majority winner's label.

    The winner is a canonical label 0-10: an emotion, 9 (Uncertain) when no emotion holds a
    majority (the authors' "unknown") or 10 (No-Face) for NF -- so ``label`` is always
    set and ``curate remap`` works on it; the vote-mode study derives every mode from the
    votes themselves. Rows that already have a label are unchanged.
    """
    import polars as pl

    missing = frame["label"].is_null() & frame["votes"].is_not_null()
    if not missing.any():
        return frame
    width = len(labels.FERPLUS_VOTE_COLUMNS)
    fillable = missing & (frame["votes"].list.len() == width)
    votes = frame.filter(fillable)["votes"].list.to_array(width).to_numpy()
    winner = labels.ferplus_vote_targets(votes, VOTES_ONLY_LABEL_MODE).label
    filled = np.full(frame.height, -1, dtype=np.int64)
    filled[fillable.to_numpy()] = winner
    return frame.with_columns(
        pl.when(pl.Series(fillable)).then(pl.Series(filled)).otherwise(pl.col("label")).cast(pl.Int8).alias("label")
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
