"""Valence / arousal consistency of AffectNet annotations (``curate audit va``; re-exported by :mod:`curate.audit`).

:func:`va_outliers` scores each annotated row by its robust distance from its label's typical
(valence, arousal) region; :func:`va_summary` counts the flags per label. The method is
described in :mod:`curate.audit`'s docstring.
"""

from __future__ import annotations

import polars as pl

#: ``k`` of the V/A threshold ``median(d) + k * 1.4826 * MAD(d)``.
VA_K = 3.0
#: Smallest per-label V/A scale (valence/arousal units), so a very tight class is not over-flagged.
VA_MIN_SCALE = 0.05
#: Labels with fewer annotated rows than this get no threshold (nothing flagged).
VA_MIN_ROWS = 10
_MAD = 1.4826



def va_outliers(annotations: pl.DataFrame, *, k: float = VA_K, min_scale: float = VA_MIN_SCALE) -> pl.DataFrame:
    """Robust per-label V/A distance of every annotated row, and whether it is an outlier.

    Parameters
    ----------
    annotations : polars.DataFrame
        ``id, label, valence, arousal`` (``dataset``, ``split``, ``va_annotated`` used when
        present). Rows with a null valence or arousal, or ``va_annotated`` false, are left out.
    k : float
        Threshold ``median(d) + k * 1.4826 * MAD(d)`` per label.
    min_scale : float
        Floor of the per-label V/A scale.

    Returns
    -------
    polars.DataFrame
        The kept rows with ``centre_valence``, ``centre_arousal``, ``distance``,
        ``threshold`` and ``outlier`` (false for labels with fewer than :data:`VA_MIN_ROWS` rows).
    """
    frame = annotations.filter(pl.col("valence").is_not_null() & pl.col("arousal").is_not_null())
    if "va_annotated" in frame.columns:
        frame = frame.filter(pl.col("va_annotated").fill_null(False))
    by = pl.col("label")

    def mad(c: str) -> pl.Expr:
        return (pl.col(c) - pl.col(c).median().over(by)).abs().median().over(by)

    with_scale = frame.with_columns(
        pl.col("valence").median().over(by).alias("centre_valence"),
        pl.col("arousal").median().over(by).alias("centre_arousal"),
        pl.max_horizontal(mad("valence") * _MAD, pl.lit(min_scale)).alias("_sv"),
        pl.max_horizontal(mad("arousal") * _MAD, pl.lit(min_scale)).alias("_sa"),
        pl.len().over(by).alias("_n"),
    )
    dist = (
        ((pl.col("valence") - pl.col("centre_valence")) / pl.col("_sv")) ** 2
        + ((pl.col("arousal") - pl.col("centre_arousal")) / pl.col("_sa")) ** 2
    ).sqrt()
    scored = with_scale.with_columns(dist.cast(pl.Float64).alias("distance"))
    d_med = pl.col("distance").median().over(by)
    d_mad = (pl.col("distance") - d_med).abs().median().over(by)
    return (
        scored.with_columns((d_med + k * _MAD * d_mad).alias("threshold"))
        .with_columns(((pl.col("distance") > pl.col("threshold")) & (pl.col("_n") >= VA_MIN_ROWS)).alias("outlier"))
        .drop("_sv", "_sa", "_n")
    )


def va_summary(scored: pl.DataFrame) -> pl.DataFrame:
    """Per label: ``label, rows, outliers, share, centre_valence, centre_arousal, threshold``."""
    return (
        scored.group_by("label")
        .agg(
            pl.len().alias("rows"),
            pl.col("outlier").sum().cast(pl.Int64).alias("outliers"),
            pl.col("centre_valence").first(),
            pl.col("centre_arousal").first(),
            pl.col("threshold").first(),
        )
        .with_columns((pl.col("outliers") / pl.col("rows")).alias("share"))
        .sort("label")
    )
