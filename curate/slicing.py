"""The attributes an evaluation is sliced by, defined once for the trainer and the review app.

Per dataset (:data:`SLICES`), from what it stores:

* RAF-DB -- ``gender``, ``race``, ``age_group`` of the manual attribute files, named by
  :data:`ATTRIBUTE_NAMES` (the RAF-DB README's codes; rows without attributes have none);
* FERPlus -- ``vote_agreement`` from the ten votes (:func:`vote_agreement`): ``unanimous``
  (every vote on the top class), ``clear majority`` (the top class has more than half),
  ``contested`` (half or less);
* AffectNet -- ``va_quadrant`` (signs of valence and arousal, :func:`va_quadrant`; rows
  without V/A have none) and ``face_size`` (the source face box's side, sqrt(width x height),
  cut at the split's tertiles into ``small`` / ``medium`` / ``large``, :func:`face_size`).

``train.slices`` reads them from a TFDS build and scores a run per slice;
:func:`frame_slices` adds them to an annotation frame as ``slice_<attribute>`` columns, which
the review app turns into one saved view per slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Slicing attributes per dataset.
SLICES: dict[str, tuple[str, ...]] = {
    "rafdb": ("gender", "race", "age_group"),
    "ferplus": ("vote_agreement",),
    "affectnet": ("va_quadrant", "face_size"),
}
#: The codes of RAF-DB's manual attribute files (``basic/Annotation/manual/*_manu_attri.txt``),
#: as the RAF-DB README lists them; -1 in a TFDS build whose copy has no attribute file.
ATTRIBUTE_NAMES: dict[str, tuple[str, ...]] = {
    "gender": ("male", "female", "unsure"),
    "race": ("Caucasian", "African-American", "Asian"),
    "age_group": ("0-3", "4-19", "20-39", "40-69", "70+"),
}
#: Prefix of the annotation-frame and review-sample columns :func:`frame_slices` adds.
COLUMN_PREFIX = "slice_"


class SliceError(ValueError):
    """An attribute the dataset does not have."""


def check_attributes(dataset: str, attributes: Sequence[str] | None = None) -> tuple[str, ...]:
    """``attributes`` (default: all of the dataset's), refused with one line when the dataset lacks one."""
    known = SLICES.get(dataset, ())
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


def frame_slices(frame: Any, dataset: str) -> Any:
    """``frame`` (annotation columns, all splits) with a ``slice_<attribute>`` string column per attribute it can give.

    Face-size tertiles are cut per split, as the trainer cuts them; rows without the
    attribute get null. Attributes whose source columns the frame lacks are left out.
    """
    import polars as pl

    columns: dict[str, list[Any]] = {}
    n = frame.height
    if dataset == "rafdb":
        for name, values in ATTRIBUTE_NAMES.items():
            if name in frame.columns:
                codes = frame[name].to_list()
                columns[name] = [values[c] if c is not None and 0 <= c < len(values) else None for c in codes]
    elif dataset == "ferplus" and "votes" in frame.columns:
        votes = frame["votes"].to_list()
        present = [v is not None for v in votes]
        filled = np.array([v if v is not None else [0] * 10 for v in votes], dtype=np.float64).reshape(n, 10)
        agreement = vote_agreement(filled)
        columns["vote_agreement"] = [a if ok else None for a, ok in zip(agreement, present, strict=True)]
    elif dataset == "affectnet":
        if {"valence", "arousal", "va_annotated"} <= set(frame.columns):
            annotated = frame["va_annotated"].fill_null(False).to_numpy()
            columns["va_quadrant"] = va_quadrant(
                frame["valence"].fill_null(0).to_numpy(), frame["arousal"].fill_null(0).to_numpy(), annotated
            ).tolist()
        if {"face_width", "face_height", "split"} <= set(frame.columns):
            sizes: list[Any] = [None] * n
            splits = frame["split"].to_numpy()
            width, height = frame["face_width"].to_numpy(), frame["face_height"].to_numpy()
            for split in np.unique(splits):
                rows = np.flatnonzero((splits == split) & np.isfinite(width.astype(float)))
                labels, _ = face_size(width[rows], height[rows])
                for row, label in zip(rows.tolist(), labels.tolist(), strict=True):
                    sizes[row] = label
            if any(s is not None for s in sizes):
                columns["face_size"] = sizes
    return frame.with_columns(
        pl.Series(COLUMN_PREFIX + name, values, dtype=pl.String) for name, values in columns.items()
    )
