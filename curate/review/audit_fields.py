"""Audits of :mod:`curate.audit` written on a review dataset's samples on every load.

* V/A consistency (:func:`mark_va_outliers`, AffectNet only): the dataset's valence/arousal
  annotations scored with :func:`curate.audit.va_outliers` (``k`` =
  :data:`curate.review.fields.VA_OUTLIER_K`) become ``va_outlier`` (bool) and ``va_distance``
  (the robust per-label distance; ``None`` without V/A) on each sample; the saved view
  ``va-outliers`` lists the flagged rows.
* Duplicate groups (:func:`duplicate_pairs`, :func:`mark_duplicate_groups`): the workspace's
  ``duplicate_pairs`` (``curate audit duplicates``) joined into groups by
  :mod:`curate.review.duplicates` and recorded in ``dataset.info``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from curate import datasets as registry
from curate.review import duplicates
from curate.review.documents import update_app_config
from curate.review.fields import INFO_KEY, VA_DISTANCE_FIELD, VA_OUTLIER_FIELD, VA_OUTLIER_K

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def mark_va_outliers(ds: Any, dataset: str, *, k: float = VA_OUTLIER_K, log: Log = _quiet) -> dict[str, Any]:
    """Score the V/A annotations of ``ds`` with :func:`curate.audit.va_outliers`; write the flags.

    Every sample gets ``va_outlier`` (bool; false where the row is not scored) and
    ``va_distance`` (float; ``None`` without valence/arousal). Labels are the canonical
    ``label_index``. Returns (and records in ``ds.info``) ``k``, ``scored`` and
    ``flagged``; an empty dict -- nothing written -- for datasets without V/A.
    """
    if not registry.get(dataset).valence_arousal or not ds.has_sample_field("valence"):
        return {}
    import fiftyone as fo
    import polars as pl

    from curate import audit

    ids, label_index, valence, arousal, annotated = ds.values(
        ["source_id", "label_index", "valence", "arousal", "va_annotated"]
    )
    frame = pl.DataFrame(
        {"id": ids, "label": label_index, "valence": valence, "arousal": arousal, "va_annotated": annotated},
        schema={
            "id": pl.String,
            "label": pl.Int64,
            "valence": pl.Float64,
            "arousal": pl.Float64,
            "va_annotated": pl.Boolean,
        },
    )
    scored = audit.va_outliers(frame, k=k)
    distance = dict(zip(scored["id"].to_list(), scored["distance"].to_list(), strict=True))
    flagged = set(scored.filter(pl.col("outlier"))["id"].to_list())
    if not ds.has_sample_field(VA_OUTLIER_FIELD):
        ds.add_sample_field(VA_OUTLIER_FIELD, fo.BooleanField)
    if not ds.has_sample_field(VA_DISTANCE_FIELD):
        ds.add_sample_field(VA_DISTANCE_FIELD, fo.FloatField)
    ds.set_values(VA_DISTANCE_FIELD, [None if distance.get(i) is None else float(distance[i]) for i in ids])
    ds.set_values(VA_OUTLIER_FIELD, [i in flagged for i in ids])
    result = {"k": float(k), "scored": scored.height, "flagged": len(flagged)}
    info = ds.info.get(INFO_KEY) or {}
    info["va_outliers"] = result
    ds.info[INFO_KEY] = info
    ds.save()
    update_app_config(ds)
    log(f"V/A outliers: {len(flagged)} of {scored.height} annotated rows (k={k:g})")
    return result


def duplicate_pairs(workspace: Any, dataset: str, notes: list[str]) -> Any | None:
    """The workspace's ``duplicate_pairs`` rows of ``dataset`` (``None``: no table, or unreadable -> a note)."""
    import duckdb

    from curate.workspace import WorkspaceError

    try:
        return duplicates.read_pairs(workspace, dataset)
    except (WorkspaceError, OSError, duckdb.Error) as error:  # busy workspace, a table of another layout
        notes.append(f"duplicate groups not updated: {error}")
        return None


def mark_duplicate_groups(ds: Any, pairs: Any | None, dataset: str, log: Log) -> dict[str, int]:
    """Write the duplicate groups of ``pairs`` on ``ds`` and record them in ``ds.info``."""
    result = duplicates.mark_duplicates(ds, pairs, dataset)
    info = ds.info.get(INFO_KEY) or {}
    info["duplicates"] = result.to_info()
    ds.info[INFO_KEY] = info
    ds.save()
    update_app_config(ds)
    if result.samples:
        log(f"duplicate groups: {result.samples} samples in {result.groups} groups ({result.pairs} pairs)")
    return result.to_info()
