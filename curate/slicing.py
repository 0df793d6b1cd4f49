"""The attributes an evaluation is sliced by, computed once for the trainer and the review app.

Which attributes a dataset has is its registry entry's ``slices`` (``curate.datasets``); how
each is computed depends on the attribute only (:func:`attribute_values`):

* ``gender``, ``race``, ``age_group`` -- the codes of RAF-DB's manual attribute files, named
  by :data:`ATTRIBUTE_NAMES` (the RAF-DB README's codes; a row without attributes has none);
* ``vote_agreement`` -- from the ten FER+ votes (:func:`vote_agreement`): ``unanimous``
  (every vote on the top class), ``clear majority`` (the top class has more than half),
  ``contested`` (half or less);
* ``va_quadrant`` -- signs of valence and arousal (:func:`va_quadrant`); none without V/A;
* ``face_size`` -- the source face box's side, sqrt(width x height), cut at the split's
  tertiles into ``small`` / ``medium`` / ``large`` (:func:`face_size`; the cuts are noted).

``train.slices`` reads the inputs from a TFDS build (:data:`TFDS_FEATURES`) and scores a run
per slice; :func:`frame_slices` adds ``slice_<attribute>`` columns to an annotation frame,
which the review app turns into one saved view per slice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from curate import datasets

#: The codes of RAF-DB's manual attribute files (``basic/Annotation/manual/*_manu_attri.txt``),
#: as the RAF-DB README lists them; -1 in a TFDS build whose copy has no attribute file.
ATTRIBUTE_NAMES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female", "unsure"),
    "race": ("Caucasian", "African-American", "Asian"),
    "age_group": ("0-3", "4-19", "20-39", "40-69", "70+"),
}
#: The TFDS features each attribute is computed from.
TFDS_FEATURES: dict[str, tuple[str, ...]] = {
    **{name: (name,) for name in ATTRIBUTE_NAMES},
    "vote_agreement": ("votes",),
    "va_quadrant": ("valence", "arousal", "va_annotated"),
    "face_size": ("source_face_box",),
}
#: The annotation-frame columns each attribute is computed from (``face_size``: the box in source pixels).
FRAME_COLUMNS: dict[str, tuple[str, ...]] = {**TFDS_FEATURES, "face_size": ("face_width", "face_height")}
#: Prefix of the annotation-frame and review-sample columns :func:`frame_slices` adds.
COLUMN_PREFIX = "slice_"


class SliceError(ValueError):
    """An attribute the dataset does not have."""


def attributes_of(dataset: str) -> tuple[str, ...]:
    """The slicing attributes of a registered dataset."""
    return datasets.get(dataset).slices


def check_attributes(dataset: str, attributes: Sequence[str] | None = None) -> tuple[str, ...]:
    """``attributes`` (default: all of the dataset's), refused with one line when the dataset lacks one."""
    known = attributes_of(dataset)
    wanted = tuple(attributes) if attributes is not None else known
    missing = [a for a in wanted if a not in known]
    if missing:
        raise SliceError(
            f"{dataset} has no slicing attribute {', '.join(missing)} (it has: {', '.join(known) or 'none'})"
        )
    return wanted


def vote_agreement(votes: np.ndarray) -> np.ndarray:
    """``unanimous`` / ``clear majority`` / ``contested`` per row of FER+ vote counts."""
    votes = np.asarray(votes, dtype=np.float64).reshape(len(votes), -1)
    total = votes.sum(axis=1)
    share = np.divide(votes.max(axis=1), total, out=np.zeros(len(votes)), where=total > 0)
    return np.where(share >= 1.0, "unanimous", np.where(share > 0.5, "clear majority", "contested")).astype(object)


def va_quadrant(valence: Any, arousal: Any, annotated: Any) -> np.ndarray:
    """``V+A+`` / ``V+A-`` / ``V-A+`` / ``V-A-`` (0 counts as +); None where V/A is not annotated."""
    v = np.where(np.asarray(valence, dtype=np.float64) >= 0, "V+", "V-")
    a = np.where(np.asarray(arousal, dtype=np.float64) >= 0, "A+", "A-")
    return np.where(np.asarray(annotated, dtype=bool), np.char.add(v, a), None).astype(object)


def face_size(width: Any, height: Any) -> tuple[np.ndarray, list[float]]:
    """``small`` / ``medium`` / ``large`` by the tertiles of sqrt(width x height), and the two cut points (px)."""
    side = np.sqrt(np.clip(np.asarray(width, np.float64), 0, None) * np.clip(np.asarray(height, np.float64), 0, None))
    cuts = [float(c) for c in np.quantile(side, [1 / 3, 2 / 3])] if len(side) else [0.0, 0.0]
    labels = np.where(side <= cuts[0], "small", np.where(side <= cuts[1], "medium", "large")).astype(object)
    return labels, cuts


def attribute_values(attribute: str, raw: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """One attribute's value per row from its inputs (:data:`TFDS_FEATURES` or :data:`FRAME_COLUMNS`
    keys), and notes (``face_size``: the cut points); None when an input is missing."""
    if attribute in ATTRIBUTE_NAMES:
        if attribute not in raw:
            return None
        names = ATTRIBUTE_NAMES[attribute]
        codes = np.asarray(raw[attribute], dtype=np.float64)
        known = np.isfinite(codes) & (codes >= 0) & (codes < len(names))
        index = np.where(known, codes, 0).astype(np.int64)
        return np.where(known, np.asarray(names, dtype=object)[index], None).astype(object), {}
    if attribute == "vote_agreement":
        return (vote_agreement(raw["votes"]), {}) if "votes" in raw else None
    if attribute == "va_quadrant":
        if not {"valence", "arousal", "va_annotated"} <= set(raw):
            return None
        return va_quadrant(raw["valence"], raw["arousal"], raw["va_annotated"]), {}
    if attribute == "face_size":
        if "source_face_box" in raw:
            boxes = np.asarray(raw["source_face_box"], dtype=np.float64).reshape(-1, 4)
            width, height = boxes[:, 2], boxes[:, 3]
        elif {"face_width", "face_height"} <= set(raw):
            width, height = raw["face_width"], raw["face_height"]
        else:
            return None
        labels, cuts = face_size(width, height)
        return labels, {"face_size_cuts_px": cuts}
    raise SliceError(f"no slicing attribute {attribute!r}")


def frame_slices(frame: Any, dataset: str) -> Any:
    """``frame`` (annotation columns, all splits) with a ``slice_<attribute>`` string column per attribute it can give.

    Each split is sliced on its own (face-size tertiles are cut per split, as the trainer
    cuts them); rows without the attribute get null; attributes whose inputs the frame lacks
    are left out.
    """
    import polars as pl

    columns: dict[str, list[Any]] = {}
    split_of = frame["split"].to_numpy() if "split" in frame.columns else np.zeros(frame.height, dtype=object)
    for attribute in attributes_of(dataset):
        inputs = [c for c in FRAME_COLUMNS[attribute] if c in frame.columns]
        if len(inputs) < len(FRAME_COLUMNS[attribute]):
            continue
        values: list[Any] = [None] * frame.height
        complete = ~np.logical_or.reduce([frame[c].is_null().to_numpy() for c in inputs])
        for split in np.unique(split_of):
            rows = np.flatnonzero((split_of == split) & complete)  # a row missing an input has no value
            if not len(rows):
                continue
            raw = {c: _column(frame[c], rows) for c in inputs}
            result = attribute_values(attribute, raw)
            if result is not None:
                for row, value in zip(rows.tolist(), result[0].tolist(), strict=True):
                    values[row] = value
        columns[attribute] = values
    return frame.with_columns(pl.Series(COLUMN_PREFIX + name, v, dtype=pl.String) for name, v in columns.items())


def _column(series: Any, rows: np.ndarray) -> np.ndarray:
    """A frame column's (non-null) rows as NumPy; list columns (votes) as a 2-D array."""
    import polars as pl

    taken = series.gather(rows)
    if taken.dtype.is_nested():
        return np.asarray(taken.to_list(), dtype=np.float64)
    if taken.dtype == pl.Boolean:
        return taken.to_numpy()
    return taken.cast(pl.Float64).to_numpy()
