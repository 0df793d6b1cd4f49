"""The dataset registry: the one place that knows each dataset.

A dataset is a :class:`DatasetSpec`: how its raw label codes map to the canonical labels,
which module reads its raw files, its splits and evaluation views, how its TFDS features
become rows of the annotation schema, and what it carries (votes, valence/arousal,
landmarks) -- with its protocol defaults. Code outside a dataset's own modules asks the
registry (:func:`get`, :func:`names`) instead of comparing dataset names.

Adding a dataset (docs/architecture.md, "Adding a dataset"): a ``curate.formats`` module
with ``read(manual_dir) -> ParsedTables``, a TFDS builder folder, and one
:func:`register` call with its :class:`DatasetSpec` (the built-in ones are at the end of
this module). ``tests/test_datasets.py`` registers a dataset from the test suite alone.

Imports only ``curate.labels`` (and Polars / NumPy inside the adapters): readers are named
by module and imported when first used, so every package may import the registry.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from curate import labels

#: Columns of the annotation schema a TFDS batch adapter returns (the rest stay null).
TfdsColumns = Callable[[Mapping[str, Any], int], "dict[str, Any]"]


class UnknownDatasetError(ValueError):
    """A dataset name the registry does not know; the message lists the known ones."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything the toolkit needs to know about one dataset.

    Attributes
    ----------
    name : str
        The dataset's name (``curate ingest NAME``, ``tfds build NAME``).
    reader : str
        Module with ``read(manual_dir, **options) -> curate.formats.ParsedTables``.
    raw_to_canonical : Mapping[int, int]
        Raw label code -> canonical label (``curate.labels.CANONICAL_NAMES`` index).
    label_feature : str
        The TFDS feature that holds the label (``curate.readtime`` reads it).
    splits : tuple of str
        The splits of the raw files and of the TFDS dataset, in order.
    train_split, balanced_view_split : str
        Where the trainer's train rows and its balanced view come from.
    test_split : str or None
        The split of the protocol's test view (``None``: the dataset publishes no test labels).
    balanced_split_is_balanced : bool
        The balanced view's split is class-balanced as published (AffectNet's validation
        set), so it is used whole; otherwise a class-balanced subsample is drawn.
    votes, valence_arousal : bool
        Whether rows carry annotator votes (FER+ vote modes apply; the reader module then
        also has ``read_votes(path)`` for ``curate ingest --votes-file``) / valence and arousal.
    landmark_points : int
        Landmarks per face in the TFDS examples (68 allows eye alignment; 0: none).
    default_policy : str
        The label policy of the dataset's protocol card.
    default_monitor : str
        The view that selects epochs by default (``balanced`` or ``class_frequency``).
    images_option : Mapping
        Reader options that also return image data (FERPlus keeps pixels in its CSV).
    tfds_geometry_in_stored_image : bool
        The TFDS ``face_box`` / ``landmarks`` are normalised in the stored (cropped) image
        (AffectNet), not in an original image the example does not carry (RAF-DB).
    face_box_layouts : tuple of str
        Raw layouts (and TFDS configs of the same name) whose images are whole photos
        with a face box to crop.
    manual_dir_hint : str
        What the manual dir holds, for "not built yet" messages.
    slices : tuple of str
        The attributes its evaluations are sliced by (computed by ``curate.slicing``).
    tfds_columns : callable
        ``(batch, n) -> {column: polars.Series}``: the dataset's annotation columns from one
        batch of TFDS examples (NumPy arrays); ``raw_label`` and ``label`` at least.
    """

    name: str
    reader: str
    raw_to_canonical: Mapping[int, int]
    label_feature: str
    splits: tuple[str, ...]
    train_split: str
    balanced_view_split: str
    test_split: str | None
    tfds_columns: TfdsColumns
    default_policy: str
    default_monitor: str = "class_frequency"
    balanced_split_is_balanced: bool = False
    votes: bool = False
    valence_arousal: bool = False
    landmark_points: int = 0
    images_option: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    face_box_layouts: tuple[str, ...] = ()
    tfds_geometry_in_stored_image: bool = False
    manual_dir_hint: str = "<folder with the files as the authors ship them>"
    slices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw_to_canonical", MappingProxyType(dict(self.raw_to_canonical)))
        object.__setattr__(self, "images_option", MappingProxyType(dict(self.images_option)))
        for split in (self.train_split, self.balanced_view_split, self.test_split):
            if split is not None and split not in self.splits:
                raise ValueError(f"dataset {self.name!r}: split {split!r} is not one of {self.splits}")
        if self.default_monitor not in ("balanced", "class_frequency"):
            raise ValueError(f"dataset {self.name!r}: default_monitor must be balanced or class_frequency")

    @property
    def aligns_by_eyes(self) -> bool:
        """68-point landmarks are there to align faces by their eyes (``--align eyes``)."""
        return self.landmark_points == 68

    @property
    def images_in_annotations(self) -> bool:
        """The reader returns the images themselves (FER2013 pixel text), not image files."""
        return bool(self.images_option)

    @property
    def balanced_view_is_test(self) -> bool:
        """The balanced view is drawn from the test split: it must never select epochs."""
        return self.balanced_view_split == self.test_split

    def read(self, manual_dir: Any, **options: Any) -> Any:
        """Parse ``manual_dir`` with this dataset's reader (``ParsedTables``)."""
        return self.reader_module().read(manual_dir, **options)

    def reader_module(self) -> Any:
        """The reader's module (imported on first use)."""
        return importlib.import_module(self.reader)

    def to_canonical(self, raw_labels: Any) -> np.ndarray:
        """Canonical labels of an array of raw label codes (-1 where a code is unknown)."""
        mapping = self.raw_to_canonical
        top = max(mapping)
        table = np.full(top + 2, -1, dtype=np.int64)
        for code, canonical in mapping.items():
            table[code] = canonical
        raw = np.asarray(raw_labels, dtype=np.int64)
        inside = (raw >= 0) & (raw <= top)
        return np.where(inside, table[np.clip(raw, 0, top)], -1)


_REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec, *, replace: bool = False) -> DatasetSpec:
    """Add ``spec`` to the registry (``replace=True`` to redefine a name)."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a dataset (tests that register one of their own clean up with this)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered datasets, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> DatasetSpec:
    """The spec of ``name``; :class:`UnknownDatasetError` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownDatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(_REGISTRY)}") from None


def having(feature: str) -> tuple[str, ...]:
    """The registered datasets whose spec has ``feature`` true (``"votes"``, ``"valence_arousal"`` ...)."""
    return tuple(name for name, spec in _REGISTRY.items() if getattr(spec, feature))


def read(name: str, manual_dir: Any, **options: Any) -> Any:
    """Parse ``manual_dir`` with the reader of dataset ``name``."""
    return get(name).read(manual_dir, **options)


def to_canonical(name: str, raw_labels: Any) -> np.ndarray:
    """Canonical labels of dataset ``name``'s raw label codes (-1 where unknown)."""
    return get(name).to_canonical(raw_labels)


# --------------------------------------------------------------------------------------
# TFDS features -> annotation columns (feature names: docs/contracts.md)
# --------------------------------------------------------------------------------------


def as_text(values: Any) -> list[str]:
    """A TFDS string feature (bytes) as Python text."""
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values).tolist()]


def _codes(name: str, values: Any, dtype: Any, *, no_label: int | None = None) -> Any:
    """Integer codes as a Polars Series; ``no_label`` (a ClassLabel's -1) becomes null."""
    import polars as pl

    series = pl.Series(name, np.asarray(values, dtype=np.int64))
    if no_label is not None:
        series = series.set(series == no_label, None)
    return series.cast(dtype)


def _landmarks(batch: Mapping[str, Any], feature: str, n: int) -> dict[str, Any]:
    import polars as pl

    if feature not in batch:
        return {}
    points = np.asarray(batch[feature], dtype=np.float32).reshape(n, -1)
    return {"landmarks": pl.Series("landmarks", points).cast(pl.List(pl.Float32))}


def _affectnet_columns(batch: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``expression``, ``valence``, ``arousal``, ``va_annotated``, ``source_face_box``
    (x, y, w, h), ``source_landmarks`` (68, 2), ``source_path``."""
    import polars as pl

    columns = {"raw_label": _codes("raw_label", batch["expression"], pl.Int16),
               "label": _codes("label", batch["expression"], pl.Int8)}  # fmt: skip
    annotated = np.asarray(batch.get("va_annotated", np.ones(n, bool)), dtype=bool)
    for name in ("valence", "arousal"):
        values = np.asarray(batch[name], dtype=np.float32)
        columns[name] = pl.Series(name, np.where(annotated, values, np.nan)).fill_nan(None).cast(pl.Float32)
    if "source_face_box" in batch:
        box = np.asarray(batch["source_face_box"], dtype=np.float32).reshape(n, 4)
        for j, name in enumerate(("face_x", "face_y", "face_width", "face_height")):
            columns[name] = pl.Series(name, box[:, j])
    columns.update(_landmarks(batch, "source_landmarks", n))
    if "source_path" in batch:
        columns["source_path"] = pl.Series("source_path", as_text(batch["source_path"]))
    return columns


def _ferplus_columns(batch: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``fer2013_label`` (as ``raw_label``), ``label`` (builder 2.0.0: the FER+ majority label; the
    workspace and the review app derive it again from ``votes``), ``votes`` (10 counts).

    ``fer2013_label`` -1 (no FER2013 label: Kaggle's unlabelled ``test.csv``) becomes null, as
    the reader gives it.
    """
    import polars as pl

    votes = np.asarray(batch["votes"], dtype=np.int16).reshape(n, 10)
    return {
        "raw_label": _codes("raw_label", batch["fer2013_label"], pl.Int16, no_label=-1),
        "label": _codes("label", batch["label"], pl.Int8, no_label=-1),
        "votes": pl.Series("votes", votes).cast(pl.List(pl.Int16)),
    }


def _rafdb_columns(batch: Mapping[str, Any], n: int) -> dict[str, Any]:
    """``rafdb_label`` (0-based; the raw files are 1-based), ``label``, ``landmarks5`` (null where
    ``has_annotations`` is False: a copy without annotation files stores zeros)."""
    import polars as pl

    columns = {
        "raw_label": _codes("raw_label", np.asarray(batch["rafdb_label"], dtype=np.int64) + 1, pl.Int16),
        "label": _codes("label", batch["label"], pl.Int8),
        **_landmarks(batch, "landmarks5", n),
    }
    if "landmarks" in columns and "has_annotations" in batch:
        annotated = pl.Series(np.asarray(batch["has_annotations"], dtype=bool))
        columns["landmarks"] = pl.select(pl.when(annotated).then(columns["landmarks"])).to_series()
    return columns


# --------------------------------------------------------------------------------------
# The built-in datasets (layouts: ../shared/docs/datasets.md; protocols: curate.protocols)
# --------------------------------------------------------------------------------------

AFFECTNET = register(
    DatasetSpec(
        name="affectnet",
        reader="curate.formats.affectnet",
        raw_to_canonical={i: i for i in range(labels.NUM_CANONICAL)},
        label_feature="expression",
        splits=("train", "validation"),
        train_split="train",
        balanced_view_split="validation",
        test_split=None,
        balanced_split_is_balanced=True,
        tfds_columns=_affectnet_columns,
        default_policy="drop-8-plus",
        valence_arousal=True,
        landmark_points=68,
        face_box_layouts=("original",),
        tfds_geometry_in_stored_image=True,
        manual_dir_hint="<folder with Manually_Annotated_file_lists/ or train_set/ + val_set/>",
        slices=("va_quadrant", "face_size"),
    )
)
FERPLUS = register(
    DatasetSpec(
        name="ferplus",
        reader="curate.formats.ferplus",
        raw_to_canonical=dict(enumerate(labels.FER2013_TO_CANONICAL)),
        label_feature="votes",
        splits=("train", "validation", "test"),
        train_split="train",
        balanced_view_split="validation",
        test_split="test",
        tfds_columns=_ferplus_columns,
        default_policy="drop-8-plus",
        default_monitor="balanced",
        votes=True,
        images_option={"with_pixels": True},
        slices=("vote_agreement",),
        manual_dir_hint="<folder with fer2013new.csv and fer2013.csv, icml_face_data.csv or train.csv + test.csv>",
    )
)
RAFDB = register(
    DatasetSpec(
        name="rafdb",
        reader="curate.formats.rafdb",
        raw_to_canonical={i + 1: c for i, c in enumerate(labels.RAFDB_TO_CANONICAL)},
        label_feature="label",
        splits=("train", "test"),
        train_split="train",
        balanced_view_split="test",
        test_split="test",
        tfds_columns=_rafdb_columns,
        default_policy="drop-7-plus",
        landmark_points=5,
        manual_dir_hint="<folder with basic/, or with train/<1-7>/ and test/<1-7>/>",
        slices=("gender", "race", "age_group"),
    )
)
