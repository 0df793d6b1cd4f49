"""The ``tf.data`` side of training: sources, evaluation views and the training pipeline.

Scope
-----
* :class:`TFDSSource` reads the project's TFDS datasets (``import tfds_builders`` registers
  them); :class:`InMemorySource` serves builder-shaped examples from NumPy arrays (tests,
  notebooks). Both yield unbatched dicts with the features of ``docs/contracts.md``.
* :func:`scan_split` is a cheap pre-pass (no image decoding): ids, policy labels and which
  rows the policy keeps. The hold-out, balanced subsamples, class counts and class weights
  are computed from it in NumPy, then applied in ``tf.data`` by id.
* :func:`prepare_data` builds everything a run needs: the training stream and the
  evaluation views (see :class:`View`).

Views
-----
``balanced``         AffectNet: the official validation split. FERPlus: a class-balanced
                     subsample of the validation split (PublicTest). RAF-DB: a class-
                     balanced subsample of the test split. Deterministic (hashed ids).
``class_frequency``  A hold-out of train chosen by hashed id with the studies' rule
                     (``curate.studies.balance.class_frequency_holdout``); never trained on.
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
config), resize to ``image_size`` uint8 -> cache (memory or file, sizes <= 128 px) ->
shuffle -> repeat -> [balanced: per-class rejection sampling] -> augment (stateless: flip, small
rotation/translation/zoom, brightness/contrast/saturation; per-element seeds from
``Dataset.random``) -> batch -> prefetch. Every ``map`` uses ``AUTOTUNE`` and only stateless
random ops, so the stream is deterministic given the seed.
``PreparedData.train_subset`` builds the same stream over a subset of the training rows and
``PreparedData.train_view`` a prediction view of some training rows, both filtered by id
from the same cached rows (cross-fitting, :mod:`train.oof`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels as _labels
from curate import readtime
from train.config import (
    CACHE_MAX_IMAGE_SIZE,
    CACHE_MEMORY_LIMIT_BYTES,
    MissingDatasetError,
    TrainConfig,
    TrainError,
)

#: Raw layouts the user places in the manual dir, for the "dataset not built" message.
MANUAL_DIR_HINT = {
    "affectnet": "<folder with Manually_Annotated_file_lists/ or train_set/ + val_set/>",
    "ferplus": "<folder with fer2013.csv and fer2013new.csv>",
    "rafdb": "<folder with basic/>",
}
#: Splits per dataset: (train, balanced-view source, test-view source or None).
VIEW_SPLITS = {
    "affectnet": ("train", "validation", None),
    "ferplus": ("train", "validation", "test"),
    "rafdb": ("train", "test", "test"),
}
VIEWS = ("balanced", "class_frequency", "test")


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------


class TFDSSource:
    """The project's TFDS datasets in ``data_dir`` (default: TFDS's own default)."""

    def __init__(self, dataset: str, *, data_dir: str | None = None, config: str | None = None) -> None:
        import tensorflow_datasets as tfds

        try:
            import tfds_builders  # noqa: F401  (registers affectnet, ferplus, rafdb)
        except ImportError as error:  # pragma: no cover - the package ships with the project
            raise TrainError(f"cannot import the project's TFDS builders (tfds_builders): {error}") from None
        self.dataset = dataset
        self.config = config
        name = f"{dataset}/{config}" if config else dataset
        try:
            self.builder = tfds.builder(name, data_dir=data_dir)
        except Exception as error:  # unknown name or config
            raise TrainError(f"cannot open TFDS dataset {name!r}: {error}") from None
        if not self.builder.is_prepared():
            where = data_dir or "~/tensorflow_datasets"
            raise MissingDatasetError(
                f"TFDS dataset {name!r} is not built in {where}; build it with: "
                f"tfds build {name} --imports tfds_builders --data_dir {where} "
                f"--manual_dir {MANUAL_DIR_HINT[dataset]}"
            )
        self.config = self.builder.builder_config.name if self.builder.builder_config else None

    def splits(self) -> list[str]:
        return list(self.builder.info.splits.keys())

    def describe(self) -> dict[str, Any]:
        """Dataset version, config and annotation-file hashes (for the data fingerprint)."""
        metadata = dict(self.builder.info.metadata or {})
        return {
            "source": "tfds",
            "name": self.builder.name,
            "config": self.config,
            "version": str(self.builder.info.version),
            "data_dir": str(self.builder.data_dir),
            "layout": metadata.get("layout"),
            "annotation_sha256": dict(metadata.get("annotation_files_sha256") or {}),
        }

    def load(self, split: str, *, images: bool, features: tuple[str, ...] = ()) -> Any:
        import tensorflow_datasets as tfds

        if images:
            decoders: Any = {"image": tfds.decode.SkipDecoding()}
        else:
            wanted = {f: True for f in features if f in self.builder.info.features}
            decoders = tfds.decode.PartialDecoding(wanted)
        read_config = tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
        return self.builder.as_dataset(split=split, decoders=decoders, shuffle_files=False, read_config=read_config)


class InMemorySource:
    """Builder-shaped examples from arrays: ``{split: {feature: array}}``.

    Images may be uint8 arrays (``(N, H, W, C)``) or encoded bytes; used by tests and for
    trying the trainer on data that is not built as TFDS.
    """

    def __init__(self, dataset: str, splits: dict[str, dict[str, Any]], *, config: str | None = None) -> None:
        self.dataset = dataset
        self.config = config
        self._splits = splits

    def splits(self) -> list[str]:
        return list(self._splits)

    def describe(self) -> dict[str, Any]:
        return {
            "source": "in-memory",
            "name": self.dataset,
            "config": self.config,
            "version": "in-memory",
            "annotation_sha256": {},
        }

    def load(self, split: str, *, images: bool, features: tuple[str, ...] = ()) -> Any:
        import tensorflow as tf

        data = self._splits[split]
        if images:
            selected = dict(data)
        else:
            selected = {key: value for key, value in data.items() if key in features}
        return tf.data.Dataset.from_tensor_slices(selected)


def open_source(config: TrainConfig) -> Any:
    return TFDSSource(config.dataset, data_dir=config.data_dir, config=config.config)


# --------------------------------------------------------------------------------------
# The pre-pass
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class SplitScan:
    """Per-row facts of one split under a policy: ``ids``, ``labels`` (hard class index;
    argmax for soft targets), ``keep`` (bool) and ``canonical`` labels."""

    split: str
    ids: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    canonical: np.ndarray


def scan_split(source: Any, split: str, config: TrainConfig) -> SplitScan:
    """Read ids and labels of every row of ``split`` (images untouched) and apply the policy
    with :func:`curate.readtime.policy_targets_numpy` (the NumPy twin of the TF path)."""
    feature = readtime.label_feature(config.dataset)
    ds = source.load(split, images=False, features=("id", feature))
    ids, raw = [], []
    for batch in ds.batch(8192).as_numpy_iterator():
        ids.append(batch["id"])
        raw.append(batch[feature])
    if not ids:
        raise TrainError(f"{config.dataset} split {split!r} is empty")
    targets = readtime.policy_targets_numpy(
        {feature: np.concatenate(raw)}, config.dataset, config.policy_object, vote_mode=config.resolved_vote_mode
    )
    label = targets["label"]
    return SplitScan(
        split=split,
        ids=np.array([i.decode() if isinstance(i, bytes) else str(i) for i in np.concatenate(ids)], dtype=object),
        labels=(label.argmax(axis=-1) if label.ndim == 2 else label).astype(np.int64),
        keep=targets["keep"].astype(bool),
        canonical=targets["canonical"].astype(np.int64),
    )


def stable_hash(text: str, seed: int = 0) -> int:
    """A platform-independent 64-bit hash of ``text`` (blake2b), salted by ``seed``."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest(), "big")


def holdout_mask(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The class-frequency hold-out of train: the studies' hashed-id rule, so a study and a
    run agree on which rows were never trained on (``curate.studies.holdout``)."""
    from curate.studies.holdout import class_frequency_holdout

    return np.asarray(class_frequency_holdout(list(ids), fraction, seed), dtype=bool)


def balanced_subsample(
    ids: np.ndarray, labels_: np.ndarray, mask: np.ndarray, seed: int, *, per_class_cap: int = 0
) -> np.ndarray:
    """Among the rows in ``mask``: the same number per present class (the smallest class
    count, at most ``per_class_cap`` when set), the rows with the smallest salted id hashes.
    Deterministic and independent of row order."""
    out = np.zeros(len(ids), dtype=bool)
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return out
    classes, counts = np.unique(labels_[rows], return_counts=True)
    per_class = int(counts.min())
    if per_class_cap:
        per_class = min(per_class, per_class_cap)
    for class_index in classes:
        class_rows = rows[labels_[rows] == class_index]
        order = sorted(class_rows, key=lambda r: stable_hash(ids[r], seed))
        out[order[:per_class]] = True
    return out


def cap_rows(ids: np.ndarray, mask: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Keep at most ``limit`` of the selected rows (smallest salted id hashes); 0 = no cap."""
    if not limit or mask.sum() <= limit:
        return mask
    rows = np.flatnonzero(mask)
    order = sorted(rows, key=lambda r: stable_hash(ids[r], seed + 7919))
    capped = np.zeros_like(mask)
    capped[order[:limit]] = True
    return capped


def class_weights(counts: np.ndarray, method: str) -> np.ndarray:
    """Per-class loss weights, the same as ``curate balance`` (``curate.studies.balance``):
    mean weight over training rows is 1, empty classes get 0."""
    from curate.studies.balance import class_weights as study_weights

    return np.asarray(study_weights(np.asarray(counts, dtype=np.float64), method), dtype=np.float64)


# --------------------------------------------------------------------------------------
# Per-row tf.data steps
# --------------------------------------------------------------------------------------


def _id_table(ids: np.ndarray) -> Any:
    import tensorflow as tf

    keys = tf.constant([str(i) for i in ids] or [""], dtype=tf.string)
    values = tf.constant(np.arange(len(ids) or 1, dtype=np.int64))
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


def decode_resize(image: Any, image_size: int, *, face_box: Any = None, landmarks: Any = None, margin: float = 0.2) -> Any:
    """Encoded bytes or a uint8 tensor -> uint8 ``(S, S, 3)``; grey is tiled to RGB.

    ``landmarks`` (68 points in the stored image's pixels) align the face by its eyes
    (:func:`align_by_eyes`; ``--align``); else ``face_box`` (normalised ymin, xmin, ymax,
    xmax) crops before resizing, grown by ``margin`` of its size on every side and clamped
    (AffectNet ``original`` config; the builder's ``crop224`` uses the same 20% margin)."""
    import tensorflow as tf

    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    else:
        image = tf.cond(
            tf.shape(image)[-1] == 1,
            lambda: tf.tile(image, [1, 1, 3]),
            lambda: image[..., :3],
        )
    image = tf.ensure_shape(image, [None, None, 3])

    def plain() -> Any:
        size = tf.shape(image)[:2]
        return tf.cond(
            tf.reduce_all(size == image_size),
            lambda: tf.cast(image, tf.float32),
            lambda: tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True),
        )

    if landmarks is not None:
        points = tf.reshape(tf.cast(landmarks, tf.float32), [-1, 2])
        usable = tf.logical_and(
            tf.shape(points)[0] >= 48,
            tf.reduce_all(tf.math.is_finite(points)),
        )
        eyes = tf.cond(
            usable,
            lambda: tf.norm(tf.reduce_mean(points[42:48], 0) - tf.reduce_mean(points[36:42], 0)),
            lambda: tf.constant(0.0),
        )
        resized = tf.cond(eyes > 1e-3, lambda: align_by_eyes(image, points, image_size), plain)
    elif face_box is not None:
        box = tf.reshape(tf.cast(face_box, tf.float32), [1, 4])
        valid = tf.logical_and(box[0, 2] > box[0, 0], box[0, 3] > box[0, 1])
        grow = tf.tile((box[:, 2:] - box[:, :2]) * margin, [1, 2]) * tf.constant([[-1.0, -1.0, 1.0, 1.0]])
        box = tf.clip_by_value(box + grow, 0.0, 1.0)
        box = tf.where(valid, box, tf.constant([[0.0, 0.0, 1.0, 1.0]]))
        resized = tf.image.crop_and_resize(
            tf.cast(image[None], tf.float32), box, [0], [image_size, image_size], method="bilinear"
        )[0]
    else:
        resized = plain()
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


#: Where face alignment puts the eye centres, as fractions of the output side: the mean of
#: 68-point landmarks 36-41 (image-left eye) at (0.3, 0.35), of 42-47 at (0.7, 0.35).
ALIGNED_LEFT_EYE = (0.3, 0.35)
ALIGNED_RIGHT_EYE = (0.7, 0.35)


def eye_alignment(left: np.ndarray, right: np.ndarray, size: int) -> tuple[float, ...]:
    """The affine map (output pixel -> input pixel) ``(a0, a1, a2, b0, b1, b2)`` of the
    similarity transform that puts eye centres ``left`` and ``right`` (input pixels) at
    :data:`ALIGNED_LEFT_EYE` / :data:`ALIGNED_RIGHT_EYE` of a ``size`` square (NumPy; the TF
    pipeline computes the same in :func:`align_by_eyes`)."""
    span = np.asarray(right, np.float64) - np.asarray(left, np.float64)
    scale = (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]) * size / float(np.linalg.norm(span))
    angle = float(np.arctan2(span[1], span[0]))
    ca, sa = np.cos(angle) / scale, np.sin(angle) / scale
    u0, v0 = ALIGNED_LEFT_EYE[0] * size, ALIGNED_LEFT_EYE[1] * size
    return (ca, -sa, left[0] - ca * u0 + sa * v0, sa, ca, left[1] - sa * u0 - ca * v0)


def align_by_eyes(image: Any, landmarks: Any, size: int) -> Any:
    """A float32 ``(size, size, 3)`` face aligned by its 68-point landmarks (TF, in a
    ``tf.data`` map): rotation, scale and shift put the eye centres where
    :func:`eye_alignment` puts them (sampled at twice the size, then reduced by area
    averaging). :func:`decode_resize` calls it only for usable landmarks (both eyes apart)."""
    import tensorflow as tf

    points = tf.reshape(tf.cast(landmarks, tf.float32), [-1, 2])
    left = tf.reduce_mean(points[36:42], axis=0)
    right = tf.reduce_mean(points[42:48], axis=0)
    span = right - left
    distance = tf.norm(span)
    work = 2 * size
    scale = (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]) * work / tf.maximum(distance, 1e-6)
    angle = tf.atan2(span[1], span[0])
    ca, sa = tf.cos(angle) / scale, tf.sin(angle) / scale
    u0, v0 = ALIGNED_LEFT_EYE[0] * work, ALIGNED_LEFT_EYE[1] * work
    transform = tf.stack(
        [ca, -sa, left[0] - ca * u0 + sa * v0, sa, ca, left[1] - sa * u0 - ca * v0, 0.0, 0.0]
    )[None]
    aligned = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform,
        output_shape=tf.constant([work, work]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]
    return tf.image.resize(aligned, [size, size], method="area")


def augment(image: Any, seed: Any) -> Any:
    """Stateless augmentation of one uint8 image -> float32 [0, 255].

    Horizontal flip; rotation up to +-10 degrees, translation up to +-8% and zoom 0.9-1.1
    combined in one projective transform (edge pixels repeated); brightness +-0.1,
    contrast 0.8-1.2 and saturation 0.8-1.2. ``seed`` is an int64 pair-able scalar.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.stack([seed, seed // 7 + 1]), num=8)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.stateless_random_flip_left_right(x, seeds[0])
    angle = tf.random.stateless_uniform([], seeds[1], -math.pi / 18, math.pi / 18)
    zoom = tf.random.stateless_uniform([], seeds[2], 0.9, 1.1)
    shift = tf.random.stateless_uniform([2], seeds[3], -0.08, 0.08) * size
    centre = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # output (x, y) -> input: rotate/scale about the centre, then translate.
    tx = centre - cos * centre + sin * centre - shift[0]
    ty = centre - sin * centre - cos * centre - shift[1]
    transform = tf.stack([cos, -sin, tx, sin, cos, ty, 0.0, 0.0])[None]
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None],
        transforms=transform,
        output_shape=tf.shape(x)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]
    x = tf.image.stateless_random_brightness(x, 0.1, seeds[4])
    x = tf.image.stateless_random_contrast(x, 0.8, 1.2, seeds[5])
    x = tf.image.stateless_random_saturation(x, 0.8, 1.2, seeds[6])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


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


@dataclasses.dataclass
class PreparedData:
    """Everything a run reads: the training stream, the views and resolved facts."""

    train: Any  # infinite (x, y, sample_weight) batches
    train_ids: np.ndarray
    steps_per_epoch: int
    train_count: int
    train_counts: np.ndarray
    class_weights: np.ndarray
    views: dict[str, View]
    monitor_view: str
    target_kind: str
    class_names: tuple[str, ...]
    cache: str
    representative: Callable[[], Any]  # images for int8 calibration
    cleanup: Callable[[], None]
    #: ``--exclude``: ids listed for the dataset, SHA-256 of the file and train rows dropped.
    exclusions: dict[str, Any] | None = None
    #: Hard labels of ``train_ids`` (same order).
    train_labels: np.ndarray | None = None
    #: ``train_subset(ids, seed) -> (stream, steps, counts)``: training stream of some rows.
    train_subset: Callable[[np.ndarray, int], tuple[Any, int, np.ndarray]] | None = None
    #: ``train_view(name, ids, description) -> View``: some training rows, for prediction.
    train_view: Callable[[str, np.ndarray, str], View] | None = None

    @property
    def selection_standard_error(self) -> float:
        """Standard error of balanced accuracy on the monitored view, at its worst (every
        class recall 0.5): ``sqrt(sum_c 0.25 / n_c) / K``. Epochs whose scores differ by less
        than about twice this cannot be told apart."""
        return balanced_accuracy_standard_error(self.views[self.monitor_view].labels)

    def describe(self) -> dict[str, Any]:
        return {
            "train_count": self.train_count,
            "classes_without_training_rows": [
                n for n, c in zip(self.class_names, self.train_counts, strict=True) if c == 0
            ],
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


def balanced_accuracy_standard_error(labels: np.ndarray, recall: float = 0.5) -> float:
    """Standard error of balanced accuracy on rows with ``labels`` when every class's recall is
    ``recall`` (0.5 is the worst case): ``sqrt(sum_c recall (1 - recall) / n_c) / K``."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    if counts.size == 0:
        return float("nan")
    return float(np.sqrt((recall * (1 - recall) / counts).sum()) / counts.size)


#: A selection view whose balanced-accuracy standard error exceeds this cannot rank epochs.
SELECTION_STANDARD_ERROR_WARNING = 0.05


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


def prepare_data(
    config: TrainConfig, *, source: Any = None, work_dir: Path | None = None, verbose: bool = True
) -> PreparedData:
    """Scan the splits, choose the rows of each view and build the ``tf.data`` pipelines.

    Raises :class:`TrainError` when the policy leaves the training split (or a view) empty,
    and :class:`MissingDatasetError` when the TFDS dataset is not built.
    """
    import tensorflow as tf

    source = source if source is not None else open_source(config)
    policy = config.policy_object
    num_classes = policy.num_classes
    train_split, balanced_split, test_split = VIEW_SPLITS[config.dataset]
    available = source.splits()
    for split in {train_split, balanced_split} | ({test_split} if test_split else set()):
        if split not in available:
            raise TrainError(f"{config.dataset} has no {split!r} split (splits: {', '.join(available)})")

    seed = config.seed
    # Which rows a run trains and is evaluated on depends on the data and the hold-out rule,
    # never on --seed: the seeds of one recipe differ in their training luck only, so a
    # comparison scores them on the same rows (balanced subsamples and caps included).
    rows_seed = config.holdout_seed
    train_scan = scan_split(source, train_split, config)
    held = holdout_mask(train_scan.ids, config.holdout_fraction, config.holdout_seed)
    exclusions = config.exclusions()
    exclude_ids = np.asarray(exclusions[0] if exclusions else (), dtype=object)
    # --exclude: listed ids leave the training rows and the hold-out (which stays the same
    # hashed-id rule for every other row); the balanced and test views keep them.
    listed = np.isin(train_scan.ids, exclude_ids) if exclude_ids.size else np.zeros(len(train_scan.ids), dtype=bool)
    train_rows = cap_rows(train_scan.ids, train_scan.keep & ~held & ~listed, config.max_train_examples, rows_seed)
    if not train_rows.any():
        kept_names = sorted(
            {_labels.CANONICAL_NAMES[c] for c in train_scan.canonical if 0 <= c < _labels.NUM_CANONICAL}
        )
        raise TrainError(
            f"policy {policy.name!r} leaves no training rows in {config.dataset} "
            f"(labels present: {', '.join(kept_names) or 'none'}; policy classes: {', '.join(policy.classes)})"
        )
    freq_rows = cap_rows(train_scan.ids, train_scan.keep & held & ~listed, config.max_eval_examples, rows_seed)
    train_counts = np.bincount(train_scan.labels[train_rows], minlength=num_classes)
    if verbose and (train_counts == 0).any():
        missing = ", ".join(policy.classes[i] for i in np.flatnonzero(train_counts == 0))
        print(
            f"warning: policy {policy.name!r} has classes with no training rows in {config.dataset}: {missing}",
            flush=True,
        )

    scans = {train_split: train_scan}
    for split in (balanced_split, test_split):
        if split and split not in scans:
            scans[split] = scan_split(source, split, config)
    view_rows: dict[str, tuple[str, np.ndarray, str]] = {}
    bal_scan = scans[balanced_split]
    if config.dataset == "affectnet":
        bal_mask = cap_rows(bal_scan.ids, bal_scan.keep, config.max_eval_examples, rows_seed)
        bal_text = "official validation split (policy applied)"
    else:
        present = max(1, len(np.unique(bal_scan.labels[bal_scan.keep])))
        cap = config.max_eval_examples // present if config.max_eval_examples else 0
        bal_mask = balanced_subsample(
            bal_scan.ids, bal_scan.labels, bal_scan.keep, rows_seed, per_class_cap=max(cap, 1) if cap else 0
        )
        bal_text = f"class-balanced subsample of the {balanced_split} split"
    view_rows["balanced"] = (balanced_split, bal_mask, bal_text)
    view_rows["class_frequency"] = (
        train_split,
        freq_rows,
        f"hashed-id hold-out ({config.holdout_fraction:.0%}) of train, natural class frequencies",
    )
    if test_split:
        test_scan = scans[test_split]
        test_mask = cap_rows(test_scan.ids, test_scan.keep, config.max_eval_examples, rows_seed)
        view_rows["test"] = (test_split, test_mask, f"whole {test_split} split (protocol figure; never selects)")
    for name, (split, mask, _) in view_rows.items():
        if not mask.any():
            raise TrainError(f"policy {policy.name!r} leaves the {name} view ({split} split) of {config.dataset} empty")

    total_rows = int(train_rows.sum()) + sum(int(mask.sum()) for _, mask, _ in view_rows.values())
    cache = resolve_cache(config, total_rows)
    work_dir = Path(work_dir) if work_dir is not None else None
    cache_dir = (work_dir / "cache") if (work_dir is not None and cache == "file") else None
    if cache == "file" and cache_dir is None:
        cache = "memory"
    face_crop = config.dataset == "affectnet" and (source.config or "") == "original"
    soft = readtime.target_kind(config.dataset, config.resolved_vote_mode) == "soft"
    sample_draw = soft and _labels.get_vote_mode(config.resolved_vote_mode).target == "sample"

    weights_np = class_weights(train_counts, config.class_weight)
    weights = tf.constant(weights_np, tf.float32)

    targets_fn = target_function(config)
    views: dict[str, View] = {}
    for name, (split, mask, text) in view_rows.items():
        scan = scans[split]
        ds = _rows_dataset(
            source,
            split,
            scan.ids[mask],
            config,
            face_crop=face_crop,
            targets_fn=targets_fn,
            exclude_ids=exclude_ids if name == "class_frequency" else None,
        )
        ds = _cache(ds, cache, cache_dir / name if cache_dir else None)
        ds = ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
        views[name] = View(name, split, scan.ids[mask], scan.labels[mask], ds, text, scan.canonical[mask])

    train_ids = train_scan.ids[train_rows]
    base = _rows_dataset(
        source, train_split, train_ids, config, face_crop=face_crop, targets_fn=targets_fn, exclude_ids=exclude_ids
    )
    base = _cache(base, cache, cache_dir / "train" if cache_dir else None)
    train_count = int(train_rows.sum())

    def build_stream(rows: Any, count: int, counts: np.ndarray, weights: Any, stream_seed: int) -> Any:
        """Shuffled, repeated, (balanced-sampled,) augmented ``(x, y, w)`` batches of ``rows``."""
        stream = rows.shuffle(min(count, 20_000), seed=stream_seed, reshuffle_each_iteration=True).repeat()
        if config.sampler == "balanced":
            # Rejection sampling to a uniform class distribution (tf.data's rejection_resample
            # rule without its mixing and console warnings): class c is accepted with
            # probability min_k n_k / n_c, decided by a per-element stateless draw.
            present = counts > 0
            accept = np.where(present, counts[present].min() / np.maximum(counts, 1), 0.0)
            accept_t = tf.constant(accept, tf.float32)

            def accepted(row: dict[str, Any], draw_seed: Any) -> Any:
                label = row["label"]
                class_index = tf.argmax(label, axis=-1) if soft else label
                uniform = tf.random.stateless_uniform([], tf.stack([draw_seed, 3]))
                return uniform < tf.gather(accept_t, class_index)

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
            lambda row: keras_batch(row, va_head=config.va_head, weights=weights, soft=soft),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        return stream.prefetch(tf.data.AUTOTUNE)

    stream = build_stream(base, train_count, train_counts, weights, seed)
    steps = max(1, math.ceil(train_count / config.batch_size))
    train_labels = train_scan.labels[train_rows]
    train_canonical = train_scan.canonical[train_rows]

    def train_subset(ids: np.ndarray, stream_seed: int) -> tuple[Any, int, np.ndarray]:
        """The training stream of a subset of the training rows (cross-fitting): ``(stream,
        steps per epoch, class counts)``; class weights recomputed from the subset's counts."""
        chosen = np.isin(train_ids, np.asarray(ids, dtype=object))
        counts = np.bincount(train_labels[chosen], minlength=num_classes)
        subset_weights = tf.constant(class_weights(counts, config.class_weight), tf.float32)
        count = int(chosen.sum())
        if count == 0:
            raise TrainError("cross-fitting: a fold leaves no training rows")
        rows = _filter_ids(base, train_ids[chosen])
        steps_per_epoch = max(1, math.ceil(count / config.batch_size))
        return build_stream(rows, count, counts, subset_weights, stream_seed), steps_per_epoch, counts

    def train_view(name: str, ids: np.ndarray, description: str) -> View:
        """A :class:`View` of some training rows (decoded, not augmented), for predicting them."""
        chosen = np.isin(train_ids, np.asarray(ids, dtype=object))
        rows = _filter_ids(base, train_ids[chosen]).batch(config.batch_size).prefetch(tf.data.AUTOTUNE)
        return View(
            name, train_split, train_ids[chosen], train_labels[chosen], rows, description, train_canonical[chosen]
        )

    def representative() -> Any:
        for row in base.take(min(train_count, 128)).batch(1):
            yield [tf.cast(row["image"], tf.float32)]

    def cleanup() -> None:
        if cache_dir is not None and cache_dir.exists():
            shutil.rmtree(cache_dir, ignore_errors=True)

    selection = views[config.monitor_view]
    selection_error = balanced_accuracy_standard_error(selection.labels)
    if verbose:
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
            f"data: {config.dataset} policy {policy.name} ({num_classes} classes), train {train_count} rows, "
            + ", ".join(f"{name} {len(view.ids)}" for name, view in views.items())
            + f"; cache {cache}; sampler {config.sampler}; class weights {config.class_weight}",
            flush=True,
        )
    return PreparedData(
        train=stream,
        train_ids=train_ids,
        train_labels=train_labels,
        train_subset=train_subset,
        train_view=train_view,
        steps_per_epoch=steps,
        train_count=train_count,
        train_counts=train_counts,
        class_weights=weights_np,
        views=views,
        monitor_view=config.monitor_view,
        target_kind="soft" if soft else "hard",
        class_names=policy.classes,
        cache=cache,
        representative=representative,
        cleanup=cleanup,
        exclusions=(
            {
                "file": str(config.exclude),
                "sha256": exclusions[1],
                "ids_listed": len(exclusions[0]),
                "train_rows_excluded": int(listed.sum()),
            }
            if exclusions is not None
            else None
        ),
    )
