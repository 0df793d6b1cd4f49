"""The common annotation schema every raw-layout reader returns.

One row per input annotation row that parsed; rows that did not parse go to the rejects
table instead, so ``rows_in == len(annotations) + len(rejects)`` for every reader. Image
files are not opened by the readers (builders decode them and add their own rejects).

Coordinates are in pixels of the *source image* the row points to; missing values are
null, never a sentinel (AffectNet's -2 valence/arousal becomes null with
``va_annotated = False``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import polars as pl

#: Column -> Polars dtype of the annotation table, in this order.
ANNOTATION_SCHEMA: dict[str, Any] = {
    "id": pl.String,  # stable source id, unique within a dataset (never an absolute path)
    "dataset": pl.String,  # "affectnet" | "ferplus" | "rafdb"
    "split": pl.String,  # "train" | "validation" | "test"
    "source_file": pl.String,  # annotation file, relative to the manual dir
    "source_row": pl.Int64,  # 1-based line number in source_file (header = line 1); npy: 0
    "source_path": pl.String,  # image file relative to the manual dir; null for FER2013 pixels
    "raw_label": pl.Int16,  # the dataset's own label code, as written in the file
    "label": pl.Int8,  # canonical label 0..10 (curate.labels.CANONICAL_NAMES)
    "valence": pl.Float32,  # null when not annotated
    "arousal": pl.Float32,
    "va_annotated": pl.Boolean,
    "face_x": pl.Float32,  # face box in source-image pixels; null when the layout has none
    "face_y": pl.Float32,
    "face_width": pl.Float32,
    "face_height": pl.Float32,
    "landmarks": pl.List(pl.Float32),  # x0, y0, x1, y1, ... (136 AffectNet, 10 RAF manual); null if none
    "votes": pl.List(pl.Int16),  # 10 FER+ votes in curate.labels.FERPLUS_VOTE_COLUMNS order; null elsewhere
}

#: Column -> dtype of the rejects table.
REJECT_SCHEMA: dict[str, Any] = {
    "dataset": pl.String,
    "split": pl.String,  # null when the split itself could not be read
    "source_file": pl.String,
    "source_row": pl.Int64,
    "id": pl.String,  # null when the id could not be read
    "reason": pl.String,  # short, stable, lower-case reason code, e.g. "label out of range"
    "detail": pl.String,  # human detail: the offending value
}


@dataclasses.dataclass(frozen=True)
class ParsedTables:
    """What every reader returns.

    Attributes
    ----------
    annotations : polars.DataFrame
        Columns of :data:`ANNOTATION_SCHEMA` first, then dataset-specific extras
        (e.g. RAF-DB ``gender``, ``race``, ``age_group``, ``landmarks_auto``).
    rejects : polars.DataFrame
        Columns of :data:`REJECT_SCHEMA`.
    files : dict[str, str]
        Annotation file (relative to the manual dir) -> SHA-256 hex digest of its bytes.
    layout : str
        Which release layout was read (``original`` / ``cropped`` for AffectNet).
    """

    annotations: pl.DataFrame
    rejects: pl.DataFrame
    files: dict[str, str]
    layout: str

    @property
    def rows_in(self) -> int:
        return self.annotations.height + self.rejects.height


class FormatError(ValueError):
    """A raw file cannot be read at all (missing, wrong header); names the file and reason."""


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def reject_frame(rows: Any, *, reason: str | pl.Expr, detail: str | pl.Expr | None = None) -> Any:
    """The rejects (:data:`REJECT_SCHEMA`, in its order and dtypes) of annotation-like ``rows``.

    ``rows`` (a Polars ``DataFrame`` or ``LazyFrame``) needs ``dataset``, ``split``,
    ``source_file``, ``source_row`` and ``id``; ``reason`` and ``detail`` are either one
    text for every row or an expression over ``rows`` (e.g. ``pl.col("_reason")``). A null
    ``detail`` stays null.
    """

    def text(value: str | pl.Expr | None) -> pl.Expr:
        return value if isinstance(value, pl.Expr) else pl.lit(value, dtype=pl.String)

    return rows.select(
        *(pl.col(column) for column in ("dataset", "split", "source_file", "source_row", "id")),
        text(reason).alias("reason"),
        text(detail).alias("detail"),
    ).cast(REJECT_SCHEMA)  # type: ignore[arg-type]


def append_rejects(rejects: pl.DataFrame, *more: pl.DataFrame) -> pl.DataFrame:
    """``rejects`` then ``more``, one table in :data:`REJECT_SCHEMA` (extra columns dropped, rows kept in order)."""
    parts = [part.select(list(REJECT_SCHEMA)).cast(REJECT_SCHEMA) for part in (rejects, *more)]  # type: ignore[arg-type]
    return pl.concat(parts, how="vertical")
