"""The ``tf.data`` side of training: a run's streams and evaluation views.

Scope
-----
:func:`prepare_data` runs the three steps of a run's data, each in its own module:

1. :func:`scan_splits` -- a cheap pre-pass over a source (:mod:`train.sources`; no image
   decoding): ids and raw label features of every split the run reads, with the policy
   applied in NumPy (:class:`train.rows.SplitScan`);
2. :func:`train.rows.select_rows` -- which rows go to training, the hold-out and each
   evaluation view, the class counts and weights: plain data, no TensorFlow;
3. :class:`TrainingData` -- the ``tf.data`` pipelines over those rows: the training
   stream, the evaluation views (:class:`View`), streams and views of subsets of the
   training rows (cross-fitting, :mod:`train.oof`), images for int8 calibration, and the
   cache files it removes on :meth:`TrainingData.cleanup`.

Views
-----
``balanced``         AffectNet: the official validation split. FERPlus: a class-balanced
                     subsample of the validation split (PublicTest). RAF-DB: a class-
                     balanced subsample of the test split. Deterministic (hashed ids).
``class_frequency``  A hold-out of train chosen by hashed id with the studies' rule
                     (``curate.studies.holdout.class_frequency_holdout``); never trained on.
``test``             FERPlus PrivateTest and RAF-DB test, whole (the papers' protocol);
                     reported only, never used to choose anything.

Early stopping and the best checkpoint watch the balanced accuracy (mean class recall) of
one view, by default the protocol cards' selection split (``curate.protocols``): the
train hold-out (``class_frequency``) for AffectNet -- whose validation split *is* its test
set -- and RAF-DB, the validation-derived ``balanced`` view for FERPlus. ``--monitor
balanced`` watches the balanced view instead; refused for RAF-DB, whose balanced view is
drawn from its test split (a test split never selects anything).

Pipeline
--------
read (images not decoded) -> policy targets (``curate.readtime``) -> filter dropped rows
and rows of other views by id -> decode (grey tiled to RGB), crop (AffectNet ``original``
config) or align (``--align eyes``), resize to ``image_size`` uint8 (:mod:`train.images`)
-> cache (memory or file, sizes <= 128 px) -> shuffle -> repeat -> [balanced: per-class
rejection sampling] -> augment (stateless: flip, small rotation/translation/zoom,
brightness/contrast/saturation; per-element seeds from ``Dataset.random``) -> batch ->
prefetch. Every ``map`` uses ``AUTOTUNE`` and only stateless random ops, so the stream is
deterministic given the seed. :meth:`TrainingData.train_subset` builds the same stream over
a subset of the training rows and :meth:`TrainingData.train_view` a prediction view of some
training rows, both filtered by id from the same cached rows.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from curate import datasets, readtime
from curate import labels as _labels
from train.config import CACHE_MAX_IMAGE_SIZE, CACHE_MEMORY_LIMIT_BYTES, TrainConfig, TrainError
from train.images import augment, decode_resize
from train.rows import (
    SELECTION_STANDARD_ERROR_WARNING,
    RowSelection,
    SplitScan,
    balanced_accuracy_standard_error,
    class_weights,
    select_rows,
    view_splits,
)
from train.sources import open_source

# --------------------------------------------------------------------------------------
# Views and the training stream
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class View:
    """One evaluation view: its rows (``ids``, hard ``labels``) and a batched dataset of
    ``{"image", "id", "label", ...}`` in the same order."""

    name: str
    split: str
    ids: np.ndarray
    labels: np.ndarray
    dataset: Any
    description: str
    #: Canonical label of each row of ``ids`` (same order), when known.
    canonical: np.ndarray | None = None

    def canonical_of(self, ids: np.ndarray) -> np.ndarray | None:
        """The canonical labels of ``ids`` (rows of this view, any order); None when unknown."""
        if self.canonical is None:
            return None
        index = {row_id: i for i, row_id in enumerate(self.ids.tolist())}
        return self.canonical[[index[row_id] for row_id in ids.tolist()]]


class TrainingData:
    """The ``tf.data`` pipelines over a :class:`train.rows.RowSelection`.

    Built by :func:`prepare_data` (or directly from a selection and its source). Holds the
    training stream (``train``: infinite, shuffled, augmented ``(x, y, sample_weight)``
    batches), the evaluation views (``views``), the run's resolved facts (``describe()``)
    and, with ``cache="file"``, cache files under ``<work_dir>/cache`` that
    :meth:`cleanup` removes (also on leaving a ``with`` block).
    """

    def __init__(
        self, config: TrainConfig, selection: RowSelection, source: Any, *, work_dir: Path | None = None
    ) -> None:
        self.config = config
        self.selection = selection
        self.cache = resolve_cache(config, selection.total_rows)
        self._cache_dir = Path(work_dir) / "cache" if (work_dir is not None and self.cache == "file") else None
        if self.cache == "file" and self._cache_dir is None:
            self.cache = "memory"
        self._source = source
        self._face_crop = _crops_face_box(config, source)
        self._targets = target_function(config)
        self.views = {name: self._view(rows) for name, rows in selection.views.items()}
        self._train_rows = self._rows(selection.train_split, selection.train_ids, "train", selection.exclude_ids)
        self.train = self._stream(self._train_rows, selection.train_counts, selection.class_weights, config.seed)

    # -- facts ----------------------------------------------------------------------------
    @property
    def train_ids(self) -> np.ndarray:
        return self.selection.train_ids

    @property
    def train_labels(self) -> np.ndarray:
        """Hard labels of :attr:`train_ids` (same order)."""
        return self.selection.train_labels

    @property
    def train_count(self) -> int:
        return self.selection.train_count

    @property
    def train_counts(self) -> np.ndarray:
        return self.selection.train_counts

    @property
    def class_weights(self) -> np.ndarray:
        return self.selection.class_weights

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.selection.class_names

    @property
    def monitor_view(self) -> str:
        return self.selection.monitor_view

    @property
    def target_kind(self) -> str:
        return self.selection.target_kind

    @property
    def exclusions(self) -> dict[str, Any] | None:
        """``--exclude``: ids listed for the dataset, SHA-256 of the file and train rows dropped."""
        return self.selection.exclusions

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.train_count / self.config.batch_size))

    @property
    def selection_standard_error(self) -> float:
        """See :attr:`train.rows.RowSelection.selection_standard_error`."""
        return self.selection.selection_standard_error

    def describe(self) -> dict[str, Any]:
        return {
            "train_count": self.train_count,
            "classes_without_training_rows": self.selection.classes_without_training_rows,
            "train_counts": dict(zip(self.class_names, self.train_counts.tolist(), strict=True)),
            "class_weights": dict(
                zip(self.class_names, [round(w, 6) for w in self.class_weights.tolist()], strict=True)
            ),
            "steps_per_epoch": self.steps_per_epoch,
            "monitor_view": self.monitor_view,
            "selection_standard_error": self.selection_standard_error,
            "target_kind": self.target_kind,
            "cache": self.cache,
            **({"exclusions": dict(self.exclusions)} if self.exclusions is not None else {}),
            "views": {
                name: {"split": view.split, "count": int(len(view.ids)), "description": view.description}
                for name, view in self.views.items()
            },
        }

    # -- subsets of the training rows (cross-fitting) --------------------------------------
    def train_subset(self, ids: np.ndarray, stream_seed: int) -> tuple[Any, int, np.ndarray]:
        """The training stream of a subset of the training rows: ``(stream, steps per epoch,
        class counts)``; class weights recomputed from the subset's counts."""
        chosen = np.isin(self.train_ids, np.asarray(ids, dtype=object))
        count = int(chosen.sum())
        if count == 0:
            raise TrainError("cross-fitting: a fold leaves no training rows")
        counts = np.bincount(self.train_labels[chosen], minlength=len(self.class_names))
        rows = _filter_ids(self._train_rows, self.train_ids[chosen])
        stream = self._stream(rows, counts, class_weights(counts, self.config.class_weight), stream_seed)
        return stream, max(1, math.ceil(count / self.config.batch_size)), counts

    def train_view(self, name: str, ids: np.ndarray, description: str) -> View:
        """A :class:`View` of some training rows (decoded, not augmented), for predicting them."""
        import tensorflow as tf

        chosen = np.isin(self.train_ids, np.asarray(ids, dtype=object))
        rows = _filter_ids(self._train_rows, self.train_ids[chosen])
        dataset = rows.batch(self.config.batch_size).prefetch(tf.data.AUTOTUNE)
        return View(
            name,
            self.selection.train_split,
            self.train_ids[chosen],
            self.train_labels[chosen],
            dataset,
            description,
            self.selection.train_canonical[chosen],
        )

    def representative(self, limit: int = 128) -> Iterator[list[Any]]:
        """Training images one at a time (the first ``limit``), for int8 calibration."""
        import tensorflow as tf

        for row in self._train_rows.take(min(self.train_count, limit)).batch(1):
            yield [tf.cast(row["image"], tf.float32)]

    # -- resources ------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Remove the cache files (``cache="file"``); the object is not read afterwards."""
        if self._cache_dir is not None and self._cache_dir.exists():
            shutil.rmtree(self._cache_dir, ignore_errors=True)

    def __enter__(self) -> TrainingData:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- pipelines ------------------------------------------------------------------------
    def _rows(self, split: str, ids: np.ndarray, cache_name: str, exclude_ids: Any = None) -> Any:
        """Decoded, labelled, cached rows of ``split`` with these ids (unbatched)."""
        ds = _rows_dataset(
            self._source,
            split,
            ids,
            self.config,
            face_crop=self._face_crop,
            targets_fn=self._targets,
            exclude_ids=exclude_ids,
        )
        return _cache(ds, self.cache, self._cache_dir / cache_name if self._cache_dir else None)

    def _view(self, rows: Any) -> View:
        import tensorflow as tf

        exclude_ids = self.selection.exclude_ids if rows.name == "class_frequency" else None
        dataset = self._rows(rows.split, rows.ids, rows.name, exclude_ids)
        dataset = dataset.batch(self.config.batch_size).prefetch(tf.data.AUTOTUNE)
        return View(rows.name, rows.split, rows.ids, rows.labels, dataset, rows.description, rows.canonical)

    def _stream(self, rows: Any, counts: np.ndarray, weights: np.ndarray, stream_seed: int) -> Any:
        """Shuffled, repeated, (balanced-sampled,) augmented ``(x, y, w)`` batches of ``rows``."""
        import tensorflow as tf

        config = self.config
        soft = self.target_kind == "soft"
        sample_draw = soft and _labels.get_vote_mode(config.resolved_vote_mode).target == "sample"
        num_classes = len(self.class_names)
        weights_t = tf.constant(weights, tf.float32)
        count = int(counts.sum())
        stream = rows.shuffle(min(count, 20_000), seed=stream_seed, reshuffle_each_iteration=True).repeat()
        if config.sampler == "balanced":
            # Rejection sampling to a uniform class distribution (tf.data's rejection_resample
            # rule without its mixing and console warnings): class c is accepted with
            # probability min_k n_k / n_c, decided by a per-element stateless draw.
            present = counts > 0
            accept = tf.constant(np.where(present, counts[present].min() / np.maximum(counts, 1), 0.0), tf.float32)

            def accepted(row: dict[str, Any], draw_seed: Any) -> Any:
                class_index = tf.argmax(row["label"], axis=-1) if soft else row["label"]
                uniform = tf.random.stateless_uniform([], tf.stack([draw_seed, 3]))
                return uniform < tf.gather(accept, class_index)

            stream = tf.data.Dataset.zip(stream, tf.data.Dataset.random(seed=stream_seed + 1))
            stream = stream.filter(accepted).map(lambda row, _: row)
        stream = tf.data.Dataset.zip(stream, tf.data.Dataset.random(seed=stream_seed))

        def train_row(row: dict[str, Any], element_seed: Any) -> dict[str, Any]:
            row = dict(row)
            if config.augment:
                row["image"] = augment(row["image"], element_seed)
            else:
                row["image"] = tf.cast(row["image"], tf.float32)
            if sample_draw:  # FER+ "probability": a one-hot drawn from the distribution per use
                draw = tf.random.stateless_categorical(
                    tf.math.log(row["label"][None] + 1e-12), 1, tf.stack([element_seed, 17])
                )[0, 0]
                row["label"] = tf.one_hot(draw, num_classes, dtype=tf.float32)
            row.pop("id")
            return row

        stream = stream.map(train_row, num_parallel_calls=tf.data.AUTOTUNE)
        stream = stream.batch(config.batch_size, drop_remainder=False)
        stream = stream.map(
            lambda row: keras_batch(row, va_head=config.va_head, weights=weights_t, soft=soft),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return stream.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------
# Per-row tf.data steps
# --------------------------------------------------------------------------------------


def target_function(config: TrainConfig) -> Any:
    """One ``tf.function`` applying the policy (and vote mode) to one example's label
    features, traced once and shared by every pipeline of a run (the FER+ vote rules make a
    large graph; tracing it per pipeline cost seconds)."""
    import tensorflow as tf

    policy = config.policy_object
    lookup = policy.tf_lookup()

    @tf.function(reduce_retracing=True)
    def targets(features: dict[str, Any]) -> dict[str, Any]:
        return readtime.row_targets(
            features, config.dataset, policy, vote_mode=config.resolved_vote_mode, with_va=config.va_head, lookup=lookup
        )

    return targets


def _rows_dataset(
    source: Any,
    split: str,
    ids: np.ndarray,
    config: TrainConfig,
    *,
    face_crop: bool,
    targets_fn: Any = None,
    exclude_ids: Any = None,
) -> Any:
    """Decoded, resized, labelled rows of ``split`` whose id is in ``ids`` (policy applied).

    ``exclude_ids`` (``--exclude``): rows with one of these ids are filtered out in
    ``tf.data`` through a ``StaticHashTable`` over the id strings, whatever ``ids`` says.
    """
    import tensorflow as tf

    targets_fn = targets_fn or target_function(config)
    table = _id_table(ids)
    excluded = (
        _id_table(np.asarray(list(exclude_ids), dtype=object)) if exclude_ids is not None and len(exclude_ids) else None
    )
    with_va = config.va_head
    size = config.image_size
    align = config.resolved_align == "eyes"
    wanted = (readtime.label_feature(config.dataset), "valence", "arousal", "va_annotated")

    def targets(example: dict[str, Any]) -> dict[str, Any]:
        out = targets_fn({key: example[key] for key in wanted if key in example})
        row = {"image": example["image"], "id": example["id"], "label": out["label"], "keep": out["keep"]}
        if with_va:
            row.update({key: out[key] for key in ("valence", "arousal", "va_mask")})
        if align and "landmarks" in example:
            row["landmarks"] = example["landmarks"]
        elif face_crop and "face_box" in example:
            row["face_box"] = example["face_box"]
        return row

    def selected(row: dict[str, Any]) -> Any:
        chosen = tf.logical_and(row["keep"], table.lookup(row["id"]) >= 0)
        if excluded is not None:
            chosen = tf.logical_and(chosen, excluded.lookup(row["id"]) < 0)
        return chosen

    def decode(row: dict[str, Any]) -> dict[str, Any]:
        row = dict(row)
        row["image"] = decode_resize(
            row.pop("image"), size, face_box=row.pop("face_box", None), landmarks=row.pop("landmarks", None)
        )
        row.pop("keep")
        return row

    ds = source.load(split, images=True)
    ds = ds.map(targets, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.filter(selected)
    return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def _crops_face_box(config: TrainConfig, source: Any) -> bool:
    """Whether the source's stored images are whole photos whose face box the pipeline crops."""
    return (source.config or "") in datasets.get(config.dataset).face_box_layouts


def _filter_ids(ds: Any, ids: np.ndarray) -> Any:
    """The rows of ``ds`` (row dicts with an ``id``) whose id is in ``ids``, in ``ds`` order."""
    table = _id_table(ids)
    return ds.filter(lambda row: table.lookup(row["id"]) >= 0)


def _cache(ds: Any, mode: str, path: Path | None) -> Any:
    if mode == "memory":
        return ds.cache()
    if mode == "file":
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        return ds.cache(str(path))
    return ds


def resolve_cache(config: TrainConfig, total_rows: int) -> str:
    """``none`` above 128 px; ``auto`` -> memory when the images fit in 2 GiB, else file."""
    if config.cache == "none" or config.image_size > CACHE_MAX_IMAGE_SIZE:
        return "none"
    if config.cache != "auto":
        return config.cache
    return "memory" if total_rows * config.image_size**2 * 3 <= CACHE_MEMORY_LIMIT_BYTES else "file"


def keras_batch(row: dict[str, Any], *, va_head: bool, weights: Any, soft: bool) -> tuple[Any, Any, Any]:
    """A batched row dict -> Keras ``(x, y, sample_weight)`` (dicts when ``va_head``)."""
    import tensorflow as tf

    image = tf.cast(row["image"], tf.float32)
    label = row["label"]
    if soft:
        class_weight = tf.linalg.matvec(label, weights)
    else:
        class_weight = tf.gather(weights, label)
    if not va_head:
        return image, label, class_weight
    va = tf.stack([row["valence"], row["arousal"]], axis=-1)
    return image, {"label": label, "va": va}, {"label": class_weight, "va": row["va_mask"]}


def _id_table(ids: np.ndarray) -> Any:
    import tensorflow as tf

    keys = tf.constant([str(i) for i in ids] or [""], dtype=tf.string)
    values = tf.constant(np.arange(len(ids) or 1, dtype=np.int64))
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


# --------------------------------------------------------------------------------------
# The pre-pass and the whole preparation
# --------------------------------------------------------------------------------------


def scan_split(source: Any, split: str, config: TrainConfig) -> SplitScan:
    """Read ids and labels of every row of ``split`` (images untouched) and apply the policy
    in NumPy (:meth:`train.rows.SplitScan.from_features`)."""
    feature = readtime.label_feature(config.dataset)
    ds = source.load(split, images=False, features=("id", feature))
    ids, raw = [], []
    for batch in ds.batch(8192).as_numpy_iterator():
        ids.append(batch["id"])
        raw.append(batch[feature])
    if not ids:
        raise TrainError(f"{config.dataset} split {split!r} is empty")
    return SplitScan.from_features(split, np.concatenate(ids), np.concatenate(raw), config)


def scan_splits(source: Any, config: TrainConfig) -> dict[str, SplitScan]:
    """:func:`scan_split` of every split the run reads (:func:`train.rows.view_splits`).

    Raises :class:`TrainError` when the source lacks one of them.
    """
    wanted = [split for split in dict.fromkeys(view_splits(config.dataset)) if split]
    available = source.splits()
    for split in wanted:
        if split not in available:
            raise TrainError(f"{config.dataset} has no {split!r} split (splits: {', '.join(available)})")
    return {split: scan_split(source, split, config) for split in wanted}


def prepare_data(
    config: TrainConfig, *, source: Any = None, work_dir: Path | None = None, verbose: bool = True
) -> TrainingData:
    """Scan the splits, choose the rows of each view and build the ``tf.data`` pipelines.

    Raises :class:`TrainError` when the policy leaves the training split (or a view) empty,
    and :class:`MissingDatasetError` when the TFDS dataset is not built.
    """
    source = source if source is not None else open_source(config)
    selection = select_rows(config, scan_splits(source, config))
    data = TrainingData(config, selection, source, work_dir=work_dir)
    if verbose:
        print_summary(data)
    return data


def print_summary(data: TrainingData) -> None:
    """The lines a run prints about its data: classes without training rows, the selection
    view's standard error, the row counts, cache, sampler and class weights."""
    config, policy = data.config, data.config.policy_object
    missing = data.selection.classes_without_training_rows
    if missing:
        print(
            f"warning: policy {policy.name!r} has classes with no training rows in {config.dataset}: "
            + ", ".join(missing),
            flush=True,
        )
    selection = data.views[data.monitor_view]
    selection_error = balanced_accuracy_standard_error(selection.labels)
    print(
        f"epochs are selected on the {selection.name} view: {len(selection.ids)} rows, standard error of its "
        f"balanced accuracy up to {100 * selection_error:.1f} points",
        flush=True,
    )
    if selection_error > SELECTION_STANDARD_ERROR_WARNING:
        print(
            f"warning: the {selection.name} view is too small to rank epochs (standard error "
            f"{100 * selection_error:.1f} points > {100 * SELECTION_STANDARD_ERROR_WARNING:.0f}); "
            + ("raise --holdout-fraction" if selection.name == "class_frequency" else "use more validation rows"),
            flush=True,
        )
    print(
        f"data: {config.dataset} policy {policy.name} ({len(data.class_names)} classes), train {data.train_count} rows, "
        + ", ".join(f"{name} {len(view.ids)}" for name, view in data.views.items())
        + f"; cache {data.cache}; sampler {config.sampler}; class weights {config.class_weight}",
        flush=True,
    )


def split_view(config: TrainConfig, source: Any, split: str, *, name: str, description: str) -> View:
    """Every row of ``split`` the policy keeps, decoded and resized as the run's views are (not cached)."""
    import tensorflow as tf

    scan = scan_split(source, split, config)
    keep = scan.keep
    rows = _rows_dataset(source, split, scan.ids[keep], config, face_crop=_crops_face_box(config, source))
    dataset = rows.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
    return View(name, split, scan.ids[keep], scan.labels[keep], dataset, description, scan.canonical[keep])
