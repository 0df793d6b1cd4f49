"""AffectNet facts both layouts' readers share: the dataset name, the landmark count and
the valence/arousal sentinel rules (-2 = not annotated: kept as null, ``va_annotated`` False).

Used by :mod:`curate.formats.affectnet` (original layout, writers) and
:mod:`curate.formats.affectnet_cropped` (cropped layout).
"""

from __future__ import annotations

import polars as pl

from curate import labels

DATASET = "affectnet"
NUM_LANDMARK_VALUES = 136
VA_SENTINEL = labels.VA_SENTINEL


def _va_bad(value: pl.Expr) -> pl.Expr:
    inside = (value >= -1.0) & (value <= 1.0)
    return ~(inside | (value == VA_SENTINEL))


def _va_columns(valence: pl.Expr, arousal: pl.Expr) -> list[pl.Expr]:
    return [
        pl.when(valence != VA_SENTINEL).then(valence).alias("valence"),
        pl.when(arousal != VA_SENTINEL).then(arousal).alias("arousal"),
        ((valence != VA_SENTINEL) & (arousal != VA_SENTINEL)).alias("va_annotated"),
    ]
