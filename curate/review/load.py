"""Load a dataset (and optionally a training run) into a persistent FiftyOne dataset.

Scope
-----
* Sources: a raw *manual dir* read with :mod:`curate.formats` (AffectNet and RAF-DB images
  stay where they are; FERPlus pixels are written once as PNGs into a cache folder), or a
  built TFDS dataset (``--data-dir``; its encoded images are copied once into the cache).
  :func:`prepare_manual` / :func:`prepare_tfds` turn either into a :class:`ReviewTable`.
* Samples (:func:`ingest_table`): the raw canonical label (``ground_truth``), one
  ``Classification`` per shipped label policy (``gt_merge_to_neutral`` ..., missing where
  the policy drops the row), valence/arousal, FER+ votes and their entropy, the face box
  (``Detection``) and landmarks (``Keypoints``) in relative coordinates, split, source path
  and annotation id (``source_id``). Documents are built as BSON dicts and bulk-inserted in
  batches into a schema declared up front -- about 20x faster than ``Dataset.add_samples``
  on the same samples (``benchmarks/bench_review.py``); the result is checked field by field
  against ``add_samples`` in ``tests/test_review_load.py``.
* Runs (:func:`attach_run`): a run folder's ``predictions.parquet`` becomes a
  ``Classification`` field with confidence and logits plus V/A prediction fields,
  evaluated with ``evaluate_classifications`` under an identifier-style eval key per run
  and policy; :mod:`curate.review.errors` adds mistakenness, hardness and confident-learning
  scores, :mod:`curate.review.views` the saved views.
* V/A consistency (:func:`mark_va_outliers`, AffectNet only): every load scores the
  dataset's valence/arousal annotations with :func:`curate.audit.va_outliers` (``k`` =
  :data:`VA_OUTLIER_K`) and writes ``va_outlier`` (bool) and ``va_distance`` (the robust
  per-label distance; ``None`` without V/A) on each sample; the saved view ``va-outliers``
  lists the flagged rows.
* :func:`load` ties it together and never leaves a half-loaded dataset: a new or rebuilt
  dataset is built under a temporary (non-persistent) name and renamed at the end; a run
  added to an existing dataset is removed again if anything fails.

Field names: :func:`policy_field` and :class:`RunFields`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import random
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels

#: Datasets the review package can load.
DATASETS: tuple[str, ...] = tuple(labels.DATASET_TO_CANONICAL)
#: Field holding the raw canonical label.
GROUND_TRUTH_FIELD = "ground_truth"
#: Key of this package's record in ``dataset.info``.
INFO_KEY = "curate"
#: Version of the sample layout written by :func:`ingest_table`; a change forces a rebuild.
LAYOUT_VERSION = 1
#: Sample fields of the V/A consistency audit (AffectNet): the flag and the robust distance.
VA_OUTLIER_FIELD = "va_outlier"
VA_DISTANCE_FIELD = "va_distance"
#: ``k`` of :func:`curate.audit.va_outliers` used by :func:`load`.
VA_OUTLIER_K = 3.0
#: Documents per ``insert_many`` call.
DEFAULT_BATCH_SIZE = 2000
#: Prediction views of ``predictions.parquet`` that hold out-of-sample predictions, in the
#: order of preference when an id appears in several.
OUT_OF_SAMPLE_VIEWS: tuple[str, ...] = ("class_frequency", "train_oof", "balanced")

Log = Callable[[str], None]


class ReviewLoadError(ValueError):
    """A dataset or run cannot be loaded; the message says what, where and what to do."""


class RunMismatchError(ReviewLoadError):
    """A run's prediction ids do not (all) match the dataset's annotation ids."""


def _quiet(_: str) -> None:
    return None


# --------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------


def identifier(text: str) -> str:
    """A lower-case Python identifier from a run or policy name (``merge-to-neutral`` -> ``merge_to_neutral``)."""
    value = re.sub(r"[^0-9a-zA-Z_]+", "_", str(text)).strip("_").lower()
    if not value:
        raise ReviewLoadError(f"cannot make a field name from {text!r}")
    return value if not value[0].isdigit() else f"r{value}"


def policy_field(policy: str | labels.LabelPolicy, vote_mode: str | None = None) -> str:
    """Ground-truth field of a policy, e.g. ``gt_merge_to_neutral`` (FER+ vote modes add ``_<mode>``)."""
    name = policy.name if isinstance(policy, labels.LabelPolicy) else str(policy)
    suffix = f"_{identifier(vote_mode)}" if vote_mode else ""
    return f"gt_{identifier(name)}{suffix}"


@dataclasses.dataclass(frozen=True)
class RunFields:
    """Field names of one run, all derived from its identifier-style ``key``."""

    key: str

    @classmethod
    def for_run(cls, run_name: str) -> RunFields:
        return cls(identifier(run_name))

    @property
    def pred(self) -> str:
        return f"pred_{self.key}"

    @property
    def valence(self) -> str:
        return f"pred_{self.key}_valence"

    @property
    def arousal(self) -> str:
        return f"pred_{self.key}_arousal"

    @property
    def mistakenness(self) -> str:
        return f"mistakenness_{self.key}"

    @property
    def hardness(self) -> str:
        return f"hardness_{self.key}"

    @property
    def label_quality(self) -> str:
        return f"label_quality_{self.key}"

    @property
    def fused_pred(self) -> str:
        """The run's out-of-sample prediction fused with the landmark model (``curate.review.errors``)."""
        return f"pred_{self.key}_fused"

    @property
    def fused_mistakenness(self) -> str:
        return f"mistakenness_{self.key}_fused"

    @property
    def label_issue(self) -> str:
        return f"label_issue_{self.key}"

    def eval_key(self, policy: str | labels.LabelPolicy) -> str:
        name = policy.name if isinstance(policy, labels.LabelPolicy) else str(policy)
        return f"eval_{self.key}_{identifier(name)}"

    def sample_fields(self) -> tuple[str, ...]:
        return (
            self.pred,
            self.valence,
            self.arousal,
            self.mistakenness,
            self.hardness,
            self.label_quality,
            self.label_issue,
            self.fused_pred,
            self.fused_mistakenness,
        )


# --------------------------------------------------------------------------------------
# Sources -> ReviewTable
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReviewSource:
    """Where a review dataset's samples come from.

    ``key`` identifies the source (dataset, kind, resolved path, TFDS config): a FiftyOne
    dataset loaded from one source is never overwritten by a load from another.
    ``fingerprint`` changes whenever the annotations change (annotation file digests or the
    TFDS ``dataset_info.json``), which makes :func:`load` rebuild the samples.
    """

    dataset: str
    kind: str  # "manual" | "tfds" | "frame"
    path: str
    config: str | None = None
    layout: str = ""
    fingerprint: str = ""

    @property
    def key(self) -> str:
        config = f"[{self.config}]" if self.config else ""
        return f"{self.dataset}:{self.kind}:{self.path}{config}"

    def describe(self) -> str:
        return f"{self.dataset} from {self.kind} {self.path}" + (f" (config {self.config})" if self.config else "")

    def to_info(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"key": self.key}


@dataclasses.dataclass
class ReviewTable:
    """Annotations ready for ingest.

    ``frame`` holds the annotation schema's columns plus ``filepath`` (absolute image path),
    ``image_width`` / ``image_height`` (of that image; null when it could not be read),
    ``box_rel`` (x, y, w, h relative to that image, or null) and ``landmarks_rel`` (x0, y0,
    x1, y1 ... relative, or null).
    """

    frame: Any
    source: ReviewSource
    refused: int = 0
    missing_images: int = 0
    images_written: int = 0


def source_for(
    dataset: str,
    *,
    manual_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tfds_config: str | None = None,
) -> ReviewSource:
    """The :class:`ReviewSource` of the arguments (without reading anything yet)."""
    _check_dataset(dataset)
    if (manual_dir is None) == (data_dir is None):
        raise ReviewLoadError("give exactly one of --manual-dir (raw files) or --data-dir (built TFDS datasets)")
    if manual_dir is not None:
        path = Path(manual_dir).resolve()
        if not path.is_dir():
            raise ReviewLoadError(f"manual dir {path} does not exist or is not a folder")
        return ReviewSource(dataset, "manual", str(path))
    path = Path(data_dir).resolve()  # type: ignore[arg-type]
    if not path.is_dir():
        raise ReviewLoadError(f"TFDS data dir {path} does not exist or is not a folder")
    return ReviewSource(dataset, "tfds", str(path), config=tfds_config)


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ReviewLoadError(f"unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")


def read_manual_annotations(source: ReviewSource) -> tuple[Any, int, ReviewSource]:
    """Read a manual dir with the dataset's reader; returns ``(frame, refused rows, source with fingerprint)``."""
    from curate import formats
    from curate.workspace import normalize_annotations

    options = {"with_pixels": True} if source.dataset == "ferplus" else {}
    try:
        parsed = formats.read(source.dataset, source.path, **options)
    except formats.FormatError as error:
        raise ReviewLoadError(str(error)) from None
    clean, refused = normalize_annotations(parsed.annotations, source.dataset)
    digest = hashlib.sha256(json.dumps(sorted(parsed.files.items())).encode()).hexdigest()
    source = dataclasses.replace(source, layout=parsed.layout, fingerprint=f"{digest}:{LAYOUT_VERSION}")
    return clean, parsed.rejects.height + refused.height, source


def prepare_manual(
    source: ReviewSource,
    *,
    cache_dir: str | os.PathLike[str],
    annotations: Any | None = None,
    refused: int = 0,
    workers: int = 8,
) -> ReviewTable:
    """Annotations of a manual dir with image paths, sizes and relative geometry.

    AffectNet and RAF-DB images are used where they are (RAF-DB: the original image, the one
    its box and landmarks refer to, when the reader gives ``original_path``); FERPlus pixels
    are written once to ``<cache_dir>/ferplus-<digest>/<id>.png`` and reused afterwards; TIFF
    images, which browsers cannot show, get a PNG copy in the cache (also written once).
    """
    import polars as pl

    if annotations is None:
        annotations, refused, source = read_manual_annotations(source)
    root = Path(source.path)
    written = 0
    if source.dataset == "ferplus":
        if "pixels" not in annotations.columns:
            raise ReviewLoadError("the FERPlus reader returned no pixels column; cannot materialise images")
        folder = Path(cache_dir) / f"ferplus-{source.fingerprint[:16]}"
        paths, written = materialise_ferplus(annotations["id"].to_list(), annotations["pixels"].to_list(), folder)
        frame = annotations.drop("pixels").with_columns(
            pl.Series("filepath", paths, dtype=pl.String),
            pl.lit(48, dtype=pl.Int32).alias("image_width"),
            pl.lit(48, dtype=pl.Int32).alias("image_height"),
            pl.lit(1, dtype=pl.Int32).alias("image_channels"),
        )
        frame = frame.with_columns(
            pl.when(pl.col("filepath").is_null()).then(None).otherwise(pl.col("image_width")).alias("image_width")
        )
    else:
        paths = [None if p is None else str(root / p) for p in geometry_images(source.dataset, annotations)]
        sizes = image_sizes(paths, workers=workers)
        folder = Path(cache_dir) / f"{source.dataset}-browser-{hashlib.sha256(source.path.encode()).hexdigest()[:8]}"
        paths, written = browser_copies(annotations["id"].to_list(), paths, folder, workers=workers)
        frame = annotations.with_columns(
            pl.Series("filepath", paths, dtype=pl.String),
            pl.Series("image_width", [s[0] if s else None for s in sizes], dtype=pl.Int32),
            pl.Series("image_height", [s[1] if s else None for s in sizes], dtype=pl.Int32),
            pl.Series("image_channels", [s[2] if s else None for s in sizes], dtype=pl.Int32),
        )
    frame = with_relative_geometry(frame)
    missing = frame.filter(pl.col("image_width").is_null()).height
    return ReviewTable(frame=frame, source=source, refused=refused, missing_images=missing, images_written=written)


def geometry_images(dataset: str, annotations: Any) -> list[str | None]:
    """Image of each row that its box and landmarks refer to, relative to the manual dir.

    ``source_path`` unless the layout keeps geometry in another image: RAF-DB's boxes and
    landmarks are in *original*-image pixels (``curate.formats.rafdb.original_path``), while
    ``source_path`` is the aligned 100x100 crop.
    """
    import importlib

    if "original_path" in annotations.columns:
        originals = annotations["original_path"].to_list()
    else:
        module = importlib.import_module(f"curate.formats.{dataset}")
        to_original = getattr(module, "original_path", None)
        if to_original is None:
            return annotations["source_path"].to_list()
        originals = [to_original(i) for i in annotations["id"].to_list()]
    return [o if o is not None else s for o, s in zip(originals, annotations["source_path"].to_list(), strict=True)]


def with_relative_geometry(frame: Any) -> Any:
    """Add ``box_rel`` and ``landmarks_rel`` from the pixel columns and the image size."""
    import polars as pl

    width = pl.col("image_width").cast(pl.Float32)
    height = pl.col("image_height").cast(pl.Float32)
    if "box_rel" not in frame.columns:
        has_box = (
            pl.all_horizontal(
                [pl.col(c).is_not_null() for c in ("face_x", "face_y", "face_width", "face_height", "image_width")]
            )
            & (pl.col("face_width") > 0)
            & (pl.col("face_height") > 0)
        )
        box = pl.concat_list(
            pl.col("face_x") / width,
            pl.col("face_y") / height,
            pl.col("face_width") / width,
            pl.col("face_height") / height,
        )
        frame = frame.with_columns(
            pl.when(has_box).then(box).otherwise(None).cast(pl.List(pl.Float32)).alias("box_rel")
        )
    if "landmarks_rel" not in frame.columns:
        frame = frame.with_columns(
            pl.Series(
                "landmarks_rel",
                relative_points(
                    frame["landmarks"].to_list(), frame["image_width"].to_list(), frame["image_height"].to_list()
                ),
                dtype=pl.List(pl.Float32),
            )
        )
    return frame


def relative_points(points: Sequence[Any], widths: Sequence[Any], heights: Sequence[Any]) -> list[list[float] | None]:
    """Flat ``x0, y0, x1, y1 ...`` pixel lists divided by each row's image size (vectorised per length)."""
    out: list[list[float] | None] = [None] * len(points)
    groups: dict[int, list[int]] = {}
    for i, (p, w, h) in enumerate(zip(points, widths, heights, strict=True)):
        if p is not None and len(p) >= 2 and len(p) % 2 == 0 and w and h:
            groups.setdefault(len(p), []).append(i)
    for length, rows in groups.items():
        values = np.asarray([points[i] for i in rows], dtype=np.float32).reshape(len(rows), length // 2, 2)
        scale = np.asarray([[widths[i], heights[i]] for i in rows], dtype=np.float32)[:, None, :]
        for i, row in zip(rows, (values / scale).reshape(len(rows), length).tolist(), strict=True):
            out[i] = row
    return out


#: Image formats browsers (and so the FiftyOne App) cannot show; converted once to PNG.
BROWSER_UNSUPPORTED = (".tif", ".tiff")


def browser_copies(
    ids: Sequence[str], paths: Sequence[str | None], folder: Path, *, workers: int = 8
) -> tuple[list[str | None], int]:
    """Replace paths of TIFF images by PNG copies in ``folder`` (written once); returns ``(paths, written)``.

    Browsers do not display TIFF (AffectNet has some), so the App would show an error tile.
    Unreadable files keep their original path (the App shows them as broken).
    """
    from PIL import Image

    todo = [i for i, p in enumerate(paths) if p is not None and p.lower().endswith(BROWSER_UNSUPPORTED)]
    if not todo:
        return list(paths), 0
    folder.mkdir(parents=True, exist_ok=True)
    existing = {entry.name for entry in os.scandir(folder)}

    def convert(i: int) -> tuple[str | None, int]:
        target = folder / (safe_filename(ids[i]) + ".png")
        if target.name in existing:
            return str(target), 0
        try:
            with Image.open(paths[i]) as image:
                buffer = io.BytesIO()
                image.convert("RGB" if image.mode not in ("L", "RGB", "RGBA") else image.mode).save(buffer, "PNG")
        except (OSError, ValueError, SyntaxError):
            return paths[i], 0
        _atomic_write(target, buffer.getvalue())
        return str(target), 1

    out = list(paths)
    written = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, (path, count) in zip(todo, pool.map(convert, todo), strict=True):
            out[i] = path
            written += count
    return out, written


def image_sizes(paths: Sequence[str | None], *, workers: int = 8) -> list[tuple[int, int, int] | None]:
    """``(width, height, channels)`` of each image from its header (no decode); ``None`` if unreadable."""

    def size(path: str | None) -> tuple[int, int, int] | None:
        if path is None:
            return None
        from PIL import Image

        try:
            with Image.open(path) as image:
                return (image.width, image.height, len(image.getbands()))
        except (OSError, ValueError, SyntaxError):
            return None

    if len(paths) < 64 or workers <= 1:
        return [size(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(size, paths, chunksize=256))


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


def materialise_ferplus(ids: Sequence[str], pixels: Sequence[str | None], folder: Path) -> tuple[list[str | None], int]:
    """Write each row's 48x48 grey pixels as ``<folder>/<id>.png`` unless already there.

    Returns the absolute paths (``None`` for rows whose pixels do not parse) and how many
    files were written this time.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    existing = {entry.name for entry in os.scandir(folder)}
    paths: list[str | None] = []
    written = 0
    for row_id, text in zip(ids, pixels, strict=True):
        name = safe_filename(row_id) + ".png"
        path = folder / name
        if name in existing:
            paths.append(str(path))
            continue
        try:
            values = np.array(text.split(), dtype=np.uint8) if text else np.zeros(0, np.uint8)
        except (ValueError, OverflowError):
            values = np.zeros(0, np.uint8)
        if values.size != 48 * 48:
            paths.append(None)
            continue
        buffer = io.BytesIO()
        Image.fromarray(values.reshape(48, 48), mode="L").save(buffer, format="PNG")
        _atomic_write(path, buffer.getvalue())
        written += 1
        paths.append(str(path))
    return paths, written


def safe_filename(row_id: str) -> str:
    """A file name for an annotation id (``689/abc.jpg`` -> ``689_abc_jpg-<hash>``), unique per id."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", row_id) and "." not in row_id:
        return row_id
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', row_id)}-{hashlib.sha1(row_id.encode()).hexdigest()[:8]}"


def _image_extension(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    return ".img"


def prepare_tfds(source: ReviewSource, *, cache_dir: str | os.PathLike[str], batch_size: int = 1024) -> ReviewTable:
    """A built TFDS dataset's examples, their encoded images copied once into the cache.

    Geometry is drawn only where it refers to the stored image: AffectNet's ``face_box``
    (normalised) and ``landmarks`` (stored-image pixels). RAF-DB's box and landmarks refer
    to the original image, which a TFDS dataset does not hold, so they are not drawn.
    """
    import polars as pl

    from curate.workspace import tfds_batch_to_frame

    source, folder = resolve_tfds(source)
    info_digest = source.fingerprint.split(":")[0]
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(folder))
    cache = (
        Path(cache_dir)
        / f"tfds-{source.dataset}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}-{info_digest[:8]}"
    )
    frames = []
    written = 0
    for split in builder.info.splits:
        split_dir = cache / split
        split_dir.mkdir(parents=True, exist_ok=True)
        existing = {entry.name for entry in os.scandir(split_dir)}
        ds = builder.as_dataset(
            split=split, decoders={"image": tfds.decode.SkipDecoding()}, batch_size=batch_size, shuffle_files=False
        )
        for batch in tfds.as_numpy(ds):
            images = batch.pop("image")
            frame = tfds_batch_to_frame(source.dataset, split, batch, source=str(folder))
            ids = frame["id"].to_list()
            paths, widths, heights, channels = [], [], [], []
            for row_id, data in zip(ids, images, strict=True):
                data = bytes(data)
                name = safe_filename(row_id) + _image_extension(data)
                if name not in existing:
                    _atomic_write(split_dir / name, data)
                    written += 1
                paths.append(str(split_dir / name))
                size = _encoded_size(data)
                widths.append(size[0] if size else None)
                heights.append(size[1] if size else None)
                channels.append(size[2] if size else None)
            extra = {
                "filepath": pl.Series(paths, dtype=pl.String),
                "image_width": pl.Series(widths, dtype=pl.Int32),
                "image_height": pl.Series(heights, dtype=pl.Int32),
                "image_channels": pl.Series(channels, dtype=pl.Int32),
            }
            n = len(ids)
            box_rel: list[Any] = [None] * n
            landmarks_rel: list[Any] = [None] * n
            if source.dataset == "affectnet":
                if "face_box" in batch:  # ymin, xmin, ymax, xmax, normalised in the stored image
                    b = np.asarray(batch["face_box"], dtype=np.float32).reshape(n, 4)
                    box_rel = np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1).tolist()
                if "landmarks" in batch:
                    points = np.asarray(batch["landmarks"], dtype=np.float32).reshape(n, -1, 2)
                    scale = np.array(
                        [[w or np.nan, h or np.nan] for w, h in zip(widths, heights, strict=True)], np.float32
                    )
                    landmarks_rel = [
                        None if not np.isfinite(s).all() else (p / s).reshape(-1).tolist()
                        for p, s in zip(points, scale, strict=True)
                    ]
            extra["box_rel"] = pl.Series(box_rel, dtype=pl.List(pl.Float32))
            extra["landmarks_rel"] = pl.Series(landmarks_rel, dtype=pl.List(pl.Float32))
            frames.append(frame.with_columns(**extra))
    if not frames:
        raise ReviewLoadError(f"{folder}: the TFDS dataset has no examples")
    frame = pl.concat(frames, how="vertical")
    missing = frame.filter(pl.col("image_width").is_null()).height
    return ReviewTable(frame=frame, source=source, missing_images=missing, images_written=written)


def resolve_tfds(source: ReviewSource) -> tuple[ReviewSource, Path]:
    """The built TFDS folder of a ``tfds`` source, and the source with its fingerprint and layout."""
    from curate.workspace import WorkspaceError, find_tfds_dir

    try:
        folder = find_tfds_dir(source.path, source.dataset, source.config)
    except WorkspaceError as error:
        raise ReviewLoadError(str(error)) from None
    info_digest = hashlib.sha256((folder / "dataset_info.json").read_bytes()).hexdigest()
    layout = "tfds:" + (str(folder.relative_to(source.path)) if folder != Path(source.path) else folder.name)
    return dataclasses.replace(source, layout=layout, fingerprint=f"{info_digest}:{LAYOUT_VERSION}"), folder


def _encoded_size(data: bytes) -> tuple[int, int, int] | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return (image.width, image.height, len(image.getbands()))
    except (OSError, ValueError, SyntaxError):
        return None


# --------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------


def vote_entropy(votes: Any) -> np.ndarray:
    """Shannon entropy (bits) of each row's raw FER+ vote distribution over the ten columns."""
    counts = np.asarray(votes, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=1)


def declare_fields(ds: Any, dataset: str, policies: Sequence[labels.LabelPolicy]) -> None:
    """Declare every sample field :func:`ingest_table` writes (so raw inserts need no schema expansion)."""
    import fiftyone as fo

    def add(name: str, ftype: Any, **kwargs: Any) -> None:
        if not ds.has_sample_field(name):
            ds.add_sample_field(name, ftype, **kwargs)

    for name in ("source_id", "dataset", "split", "source_path"):
        add(name, fo.StringField)
    add("label_index", fo.IntField)
    add(GROUND_TRUTH_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    for policy in policies:
        add(policy_field(policy), fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    add("policy_merged", fo.ListField, subfield=fo.StringField)
    add("policy_dropped", fo.ListField, subfield=fo.StringField)
    add("face", fo.EmbeddedDocumentField, embedded_doc_type=fo.Detection)
    add("landmarks", fo.EmbeddedDocumentField, embedded_doc_type=fo.Keypoints)
    if dataset == "affectnet":
        add("valence", fo.FloatField)
        add("arousal", fo.FloatField)
        add("va_annotated", fo.BooleanField)
    if dataset == "ferplus":
        add("votes", fo.ListField, subfield=fo.IntField)
        add("vote_entropy", fo.FloatField)
        add("ferplus_majority", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)


def sample_fields(frame: Any, dataset: str, policies: Sequence[labels.LabelPolicy]) -> Iterator[dict[str, Any]]:
    """Each row's sample fields as plain Python values (``None`` = field absent).

    Labels are dicts ``{"label": ...}`` (Classification), ``{"bounding_box": [...]}``
    (Detection) and ``{"points": [[x, y], ...]}`` (Keypoints); :func:`to_documents` turns
    them into BSON, :func:`to_samples` into FiftyOne objects, so both paths carry the same
    content.
    """
    names = (
        "id",
        "split",
        "source_path",
        "label",
        "filepath",
        "image_width",
        "image_height",
        "box_rel",
        "landmarks_rel",
    )
    columns = {name: frame[name].to_list() for name in names}
    n = frame.height
    pairs = point_pairs(columns["landmarks_rel"])
    channels = frame["image_channels"].to_list() if "image_channels" in frame.columns else [None] * n
    canonical = labels.CANONICAL_NAMES
    per_policy = [(policy_field(p), [None if t is None else p.classes[t] for t in p.mapping]) for p in policies]
    merged_by_label = [
        [p.name for p in policies if p.mapping[c] is not None and p.classes[p.mapping[c]] != canonical[c]]
        for c in range(labels.NUM_CANONICAL)
    ]
    dropped_by_label = [[p.name for p in policies if p.mapping[c] is None] for c in range(labels.NUM_CANONICAL)]
    va = dataset == "affectnet"
    if va:
        valence, arousal, annotated = (frame[c].to_list() for c in ("valence", "arousal", "va_annotated"))
    ferplus = dataset == "ferplus"
    if ferplus:
        votes_list = frame["votes"].to_list()
        vote_array = np.array([v if v is not None else [0] * 10 for v in votes_list], dtype=np.int64).reshape(n, 10)
        entropy = vote_entropy(vote_array).tolist()
        majority = labels.ferplus_vote_targets(vote_array, "majority").label.tolist()
    for i in range(n):
        label = columns["label"][i]
        width, height = columns["image_width"][i], columns["image_height"][i]
        fields: dict[str, Any] = {
            "filepath": columns["filepath"][i],
            "metadata": None if width is None else _metadata(width, height, channels[i]),
            "source_id": columns["id"][i],
            "dataset": dataset,
            "split": columns["split"][i],
            "source_path": columns["source_path"][i],
            "label_index": label,
            GROUND_TRUTH_FIELD: {"label": canonical[label]},
            "policy_merged": merged_by_label[label],
            "policy_dropped": dropped_by_label[label],
        }
        for name, names in per_policy:
            target = names[label]
            fields[name] = None if target is None else {"label": target}
        box = columns["box_rel"][i]
        fields["face"] = None if box is None else {"label": "face", "bounding_box": box}
        points = pairs[i]
        fields["landmarks"] = None if points is None else {"label": "landmarks", "points": points}
        if va:
            fields["valence"] = valence[i]
            fields["arousal"] = arousal[i]
            fields["va_annotated"] = bool(annotated[i])
        if ferplus:
            fields["votes"] = votes_list[i]
            fields["vote_entropy"] = None if votes_list[i] is None else entropy[i]
            fields["ferplus_majority"] = None if votes_list[i] is None else {"label": canonical[majority[i]]}
        yield fields


def point_pairs(flat: Sequence[Any]) -> list[list[list[float]] | None]:
    """``[x0, y0, x1, y1 ...]`` lists -> ``[[x0, y0], [x1, y1] ...]`` (vectorised per list length)."""
    out: list[list[list[float]] | None] = [None] * len(flat)
    groups: dict[int, list[int]] = {}
    for i, values in enumerate(flat):
        if values is not None and len(values) >= 2:
            groups.setdefault(len(values), []).append(i)
    for length, rows in groups.items():
        shaped = np.asarray([flat[i] for i in rows], dtype=np.float64).reshape(len(rows), length // 2, 2)
        for i, row in zip(rows, shaped.tolist(), strict=True):
            out[i] = row
    return out


def _metadata(width: int, height: int, channels: int | None) -> dict[str, int]:
    return (
        {"width": width, "height": height}
        if channels is None
        else {"width": width, "height": height, "num_channels": channels}
    )


def _rand_generator() -> Callable[[], float]:
    try:  # the same distribution FiftyOne gives new samples
        from fiftyone.core.odm.sample import _generate_rand

        return _generate_rand
    except ImportError:  # pragma: no cover - FiftyOne moved it
        return lambda: random.random() * 0.001 + 0.999


def to_documents(rows: Iterator[dict[str, Any]], dataset_id: Any) -> Iterator[dict[str, Any]]:
    """BSON sample documents, exactly as ``Dataset.add_samples`` writes them."""
    from bson import ObjectId

    rand = _rand_generator()
    now = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    for fields in rows:
        doc: dict[str, Any] = {
            "filepath": fields.pop("filepath"),
            "tags": [],
            "_media_type": "image",
            "_rand": rand(),
            "_dataset_id": dataset_id,
            "created_at": now,
            "last_modified_at": now,
        }
        for name, value in fields.items():
            if value is None:
                continue
            if name == "metadata":
                doc[name] = {"_cls": "ImageMetadata", **value}
            elif name == "face":
                doc[name] = {"_id": ObjectId(), "_cls": "Detection", "tags": [], "attributes": {}, **value}
            elif name == "landmarks":
                doc[name] = {
                    "_cls": "Keypoints",
                    "keypoints": [
                        {
                            "_id": ObjectId(),
                            "_cls": "Keypoint",
                            "tags": [],
                            "attributes": {},
                            "confidence": None,
                            **value,
                        }
                    ],
                }
            elif isinstance(value, dict):
                doc[name] = {"_id": ObjectId(), "_cls": "Classification", "tags": [], **value}
            else:
                doc[name] = value
        yield doc


def to_samples(rows: Iterator[dict[str, Any]]) -> Iterator[Any]:
    """``fiftyone.Sample`` objects with the same content (the slow, reference path)."""
    import fiftyone as fo

    for fields in rows:
        kwargs: dict[str, Any] = {}
        for name, value in fields.items():
            if value is None:
                continue
            if name == "metadata":
                kwargs[name] = fo.ImageMetadata(**value)
            elif name == "face":
                kwargs[name] = fo.Detection(**value)
            elif name == "landmarks":
                kwargs[name] = fo.Keypoints(keypoints=[fo.Keypoint(**value)])
            elif isinstance(value, dict):
                kwargs[name] = fo.Classification(**value)
            else:
                kwargs[name] = value
        yield fo.Sample(**kwargs)


def insert_samples(
    ds: Any,
    frame: Any,
    dataset: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    policies: Sequence[labels.LabelPolicy] | None = None,
) -> int:
    """Bulk-insert a :class:`ReviewTable` frame into ``ds`` (fields declared first); returns rows inserted.

    The frame is converted ``batch_size`` rows at a time, so Python objects exist for one
    batch only (AffectNet's 420k rows x 68 landmarks would not fit as Python lists at once).
    """
    policies = list(labels.BUILTIN_POLICIES.values()) if policies is None else list(policies)
    if ds.media_type is None:
        ds.media_type = "image"
    declare_fields(ds, dataset, policies)
    collection = ds._sample_collection  # FiftyOne's own bulk path (Dataset._add_samples_batch) does the same
    inserted = 0
    for offset in range(0, frame.height, max(1, batch_size)):
        chunk = frame.slice(offset, batch_size)
        documents = list(to_documents(sample_fields(chunk, dataset, policies), ds._doc.id))
        collection.insert_many(documents, ordered=False)
        inserted += len(documents)
    return inserted


def configure_dataset(ds: Any, dataset: str, policies: Sequence[labels.LabelPolicy]) -> None:
    """Classes per field, index on ``source_id``, and App defaults (visible fields, sidebar groups)."""
    ds.create_index("source_id", unique=True)
    ds.default_classes = list(labels.CANONICAL_NAMES)
    ds.classes = {policy_field(p): list(p.classes) for p in policies} | {
        GROUND_TRUTH_FIELD: list(labels.CANONICAL_NAMES)
    }
    update_app_config(ds)
    ds.save()


def update_app_config(ds: Any) -> None:
    """Show ground truth, face and landmarks (plus the active run's predictions) on the tiles."""
    import fiftyone as fo

    info = ds.info.get(INFO_KEY, {})
    active = info.get("active_run")
    paths = [GROUND_TRUTH_FIELD, "face", "landmarks"]
    if active:
        paths.append(RunFields(active).pred)
    ds.app_config.active_fields = fo.ActiveFields(paths=[p for p in paths if ds.has_sample_field(p)])
    schema = ds.get_field_schema()
    groups: dict[str, list[str]] = {"annotation": [], "policies": [], "runs": [], "metadata": [], "other": []}
    for name in schema:
        if name in ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at"):
            groups["metadata"].append(name)
        elif name.startswith("gt_") or name.startswith("policy_"):
            groups["policies"].append(name)
        elif name.startswith(("pred_", "eval_", "mistakenness_", "hardness_", "label_quality_", "label_issue_")):
            groups["runs"].append(name)
        elif name in (
            GROUND_TRUTH_FIELD,
            "face",
            "landmarks",
            "ferplus_majority",
            "source_id",
            "dataset",
            "split",
            "source_path",
            "label_index",
            "valence",
            "arousal",
            "va_annotated",
            "votes",
            "vote_entropy",
            "duplicate_group",
            "duplicate_group_size",
            VA_OUTLIER_FIELD,
            VA_DISTANCE_FIELD,
        ):
            groups["annotation"].append(name)
        else:
            groups["other"].append(name)
    ds.description = describe_dataset(info)
    ds.app_config.sidebar_groups = [
        fo.SidebarGroupDocument(name="tags", paths=[]),
        fo.SidebarGroupDocument(name="label tags", paths=[]),
        *[
            fo.SidebarGroupDocument(name=group, paths=paths, expanded=group in ("annotation", "runs"))
            for group, paths in groups.items()
            if paths
        ],
    ]
    ds.save()


def describe_dataset(info: Mapping[str, Any]) -> str:
    """The dataset description the App shows: the source, each run's protocol and data fingerprint."""
    lines = [f"curate review of {info.get('dataset', '?')} ({info.get('source', {}).get('key', '?')})"]
    for record in info.get("runs", {}).values():
        lines.append(
            f"run {record.get('name')}: protocol {record.get('protocol') or 'none'}, "
            f"data {record.get('data_fingerprint') or 'unknown'}"
        )
    return "\n".join(lines)


def ingest_table(table: ReviewTable, *, name: str, batch_size: int = DEFAULT_BATCH_SIZE) -> Any:
    """Create a *non-persistent* dataset ``name`` with the table's samples; the caller persists it."""
    import fiftyone as fo

    policies = list(labels.BUILTIN_POLICIES.values())
    ds = fo.Dataset(name, persistent=False)
    try:
        insert_samples(ds, table.frame, table.source.dataset, batch_size=batch_size, policies=policies)
        configure_dataset(ds, table.source.dataset, policies)
        ds.info[INFO_KEY] = {
            "dataset": table.source.dataset,
            "source": table.source.to_info(),
            "layout_version": LAYOUT_VERSION,
            "runs": {},
            "active_run": None,
            "loaded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        ds.description = describe_dataset(ds.info[INFO_KEY])
        ds.save()
    except BaseException:
        _delete_quietly(ds)
        raise
    return ds


def _delete_quietly(ds: Any) -> None:
    try:
        ds.delete()
    except Exception:  # noqa: BLE001 - best effort cleanup after another error
        pass


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A training run folder (``docs/contracts.md``) and its ``config.json``."""

    name: str
    path: Path
    config: Mapping[str, Any]

    @property
    def predictions_path(self) -> Path:
        return self.path / "predictions.parquet"

    def provenance(self) -> tuple[str | None, str | None]:
        """``(protocol card key, data fingerprint)`` the run recorded (``docs/protocols.md``).

        ``config.json`` holds both (``protocol``, ``data_fingerprint``); ``metrics.json`` is
        the fallback for a run whose config lacks them. ``None`` where the run has none
        (a custom policy has no protocol card; runs older than the cards have neither).
        """
        protocol, fingerprint = self.config.get("protocol"), self.config.get("data_fingerprint")
        if protocol is None or fingerprint is None:
            try:
                metrics = json.loads((self.path / "metrics.json").read_text())
            except (OSError, ValueError):
                metrics = {}
            if isinstance(metrics, dict):
                protocol = protocol if protocol is not None else metrics.get("protocol")
                fingerprint = fingerprint if fingerprint is not None else metrics.get("data_fingerprint")
        return (None if protocol is None else str(protocol), None if fingerprint is None else str(fingerprint))


def resolve_run(run: str | os.PathLike[str], *, workspace: Any | None = None) -> RunInfo:
    """A run by folder path, or by name from the workspace's registered runs / ``runs/`` folder."""
    candidates: list[Path] = []
    path = Path(run)
    if path.is_dir():
        candidates.append(path)
    known: list[str] = []
    if workspace is not None:
        try:
            registered = workspace.runs()
        except Exception:  # noqa: BLE001 - a broken workspace should not hide a run folder
            registered = []
        known = [r["name"] for r in registered]
        for record in registered:
            if record["name"] == str(run) and record.get("path"):
                candidates.append(Path(record["path"]))
        candidates.append(workspace.runs_dir / str(run))
    for folder in candidates:
        if (folder / "predictions.parquet").is_file():
            break
    else:
        where = f"; runs registered in {workspace.root}: {', '.join(known) or 'none'}" if workspace is not None else ""
        raise ReviewLoadError(f"run {str(run)!r} not found (no folder with predictions.parquet){where}")
    folder = folder.resolve()
    if not (folder / "COMPLETE").exists():
        raise ReviewLoadError(f"run {folder} is not complete (no COMPLETE marker): training may still be running")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ReviewLoadError(f"{folder / 'config.json'}: cannot read the run's config: {error}") from None
    return RunInfo(name=str(config.get("name") or folder.name), path=folder, config=config)


_PREDICTION_COLUMNS = ("id", "view", "label", "predicted", "confidence", "probabilities", "logits")


def read_predictions(run: RunInfo) -> Any:
    """The run's predictions, one row per id (out-of-sample views preferred in :data:`OUT_OF_SAMPLE_VIEWS` order)."""
    import polars as pl

    try:
        frame = pl.read_parquet(run.predictions_path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        raise ReviewLoadError(f"{run.predictions_path}: cannot read predictions: {error}") from None
    missing = [c for c in _PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ReviewLoadError(f"{run.predictions_path}: missing column(s) {', '.join(missing)} (see docs/contracts.md)")
    rank = {view: i for i, view in enumerate(OUT_OF_SAMPLE_VIEWS)}
    frame = frame.with_columns(
        pl.col("view").replace_strict(rank, default=len(rank), return_dtype=pl.Int32).alias("_rank")
    )
    return frame.sort("_rank", maintain_order=True).unique("id", keep="first", maintain_order=True).drop("_rank")


def run_policy(run: RunInfo) -> tuple[labels.LabelPolicy, str | None]:
    """The run's label policy (checked against its ``class_names``) and FER+ vote mode."""
    config = run.config
    name = config.get("policy")
    if not name:
        raise ReviewLoadError(f"{run.path / 'config.json'}: no 'policy'")
    try:
        policy = labels.get_policy(name)
    except labels.PolicyError:
        fallback = config.get("policy_name")
        if fallback and fallback in labels.BUILTIN_POLICIES:
            policy = labels.BUILTIN_POLICIES[fallback]
        else:
            raise ReviewLoadError(
                f"run {run.name}: label policy {name!r} cannot be found (a TOML policy file that moved?)"
            ) from None
    class_names = config.get("class_names")
    if class_names is not None and tuple(class_names) != policy.classes:
        raise ReviewLoadError(
            f"run {run.name}: class_names {list(class_names)} differ from policy {policy.name}'s classes "
            f"{list(policy.classes)}; the run's label order does not match the policy"
        )
    vote_mode = config.get("vote_mode")
    if vote_mode is not None:
        labels.get_vote_mode(vote_mode)
    return policy, vote_mode


def ensure_gt_field(ds: Any, policy: labels.LabelPolicy, vote_mode: str | None) -> str:
    """The ground-truth field of a policy (and FER+ vote mode), created from the stored labels if missing."""
    import fiftyone as fo

    field = policy_field(policy, vote_mode)
    if ds.has_sample_field(field):
        return field
    ids = ds.values("source_id")
    if vote_mode is None:
        canonical = np.asarray(ds.values("label_index"), dtype=np.int64)
        keep = np.ones(len(canonical), dtype=bool)
    else:
        votes = np.array([v if v is not None else [0] * 10 for v in ds.values("votes")], dtype=np.int64).reshape(-1, 10)
        targets = labels.ferplus_vote_targets(votes, vote_mode)
        canonical, keep = targets.label, targets.keep
    mapped = policy.apply(canonical)
    values = {
        sid: fo.Classification(label=policy.classes[m])
        for sid, m, k in zip(ids, mapped.tolist(), keep.tolist(), strict=True)
        if m >= 0 and k
    }
    ds.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.set_values(field, values, key_field="source_id")
    classes = dict(ds.classes)
    classes[field] = list(policy.classes)
    ds.classes = classes
    ds.save()
    return field


@dataclasses.dataclass
class RunSummary:
    """What :func:`attach_run` did."""

    name: str
    key: str
    policy: str
    vote_mode: str | None
    gt_field: str
    eval_key: str
    predictions: int
    matched: int
    unmatched: int
    label_disagreements: int
    accuracy: float | None
    flagged: int
    scores: dict[str, Any] = dataclasses.field(default_factory=dict)
    protocol: str | None = None
    data_fingerprint: str | None = None


def attach_run(
    ds: Any,
    run: RunInfo,
    *,
    allow_partial: bool = False,
    top_k: int | None = None,
    landmark_model: bool = True,
    log: Log = _quiet,
) -> RunSummary:
    """Add a run's predictions, evaluation and error scores to ``ds``.

    Everything is validated before the first write; if anything fails afterwards the run's
    fields, evaluation and brain runs are removed again (the dataset is as before).

    Raises:
        RunMismatchError: prediction ids missing from the dataset (all of them, or some
            without ``allow_partial``)
        ReviewLoadError: a run of another dataset, an unknown policy, unreadable files
    """
    import fiftyone as fo
    import polars as pl

    from curate.review import errors

    info = ds.info.get(INFO_KEY) or {}
    dataset = info.get("dataset")
    run_dataset = run.config.get("dataset")
    if run_dataset and dataset and run_dataset != dataset:
        raise ReviewLoadError(
            f"run {run.name} was trained on {run_dataset}, but FiftyOne dataset {ds.name!r} holds {dataset}"
        )
    policy, vote_mode = run_policy(run)
    predictions = read_predictions(run)
    num_classes = len(policy.classes)
    bad_width = predictions.filter(pl.col("probabilities").list.len() != num_classes).height
    if bad_width:
        raise ReviewLoadError(f"run {run.name}: {bad_width} prediction rows do not have {num_classes} probabilities")
    bad_class = predictions.filter(~pl.col("predicted").is_between(0, num_classes - 1)).height
    if bad_class:
        raise ReviewLoadError(f"run {run.name}: {bad_class} predicted class indices outside 0..{num_classes - 1}")
    dataset_ids = set(ds.values("source_id"))
    in_dataset = predictions["id"].is_in(list(dataset_ids))
    matched = predictions.filter(in_dataset)
    unmatched = predictions.height - matched.height
    if matched.height == 0:
        raise RunMismatchError(
            f"none of the {predictions.height} prediction ids of run {run.name} is in FiftyOne dataset {ds.name!r} "
            f"(e.g. {predictions['id'][0]!r}); the run was trained on another dataset or source"
        )
    if unmatched and not allow_partial:
        example = predictions.filter(~in_dataset)["id"].head(3).to_list()
        raise RunMismatchError(
            f"{unmatched} of {predictions.height} prediction ids of run {run.name} are not in FiftyOne dataset "
            f"{ds.name!r} (e.g. {', '.join(map(repr, example))}); nothing was loaded. "
            f"Pass --allow-partial to load the {matched.height} predictions that match"
        )
    fields = RunFields.for_run(run.name)
    protocol, fingerprint = run.provenance()
    # Shown in the App on every prediction (tooltip, sidebar filter) and in the eval config.
    provenance = {
        name: value for name, value in (("protocol", protocol), ("data_fingerprint", fingerprint)) if value is not None
    }
    remove_run(ds, fields.key)  # reloading a run replaces it
    before = set(ds.get_field_schema())
    log(
        f"run {run.name}: {matched.height} predictions ({unmatched} unmatched ids skipped)"
        if unmatched
        else f"run {run.name}: {matched.height} predictions"
    )
    try:
        gt_field = ensure_gt_field(ds, policy, vote_mode)
        ids = matched["id"].to_list()
        predicted = matched["predicted"].to_list()
        confidence = matched["confidence"].to_list()
        logits = matched["logits"].to_list()
        ds.add_sample_field(fields.pred, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
        ds.set_values(
            fields.pred,
            {
                sid: fo.Classification(
                    label=policy.classes[p], confidence=float(c), logits=np.asarray(lg, np.float32), **provenance
                )
                for sid, p, c, lg in zip(ids, predicted, confidence, logits, strict=True)
            },
            key_field="source_id",
        )
        if provenance:
            ds.add_dynamic_sample_fields(fields=fields.pred)
        for column, field in (("valence_pred", fields.valence), ("arousal_pred", fields.arousal)):
            if column in matched.columns and matched[column].null_count() < matched.height:
                values = {sid: float(v) for sid, v in zip(ids, matched[column].to_list(), strict=True) if v is not None}
                ds.add_sample_field(field, fo.FloatField)
                ds.set_values(field, values, key_field="source_id")
        # Cross-check the run's own labels with the dataset's: a mismatch means a label-order bug.
        truth = dict(zip(*ds.values(["source_id", f"{gt_field}.label"]), strict=True))
        run_labels = [
            policy.classes[v] if v is not None and 0 <= v < num_classes else None for v in matched["label"].to_list()
        ]
        disagreements = sum(1 for sid, lab in zip(ids, run_labels, strict=True) if truth.get(sid) != lab)
        if disagreements:
            log(f"warning: {disagreements} of {len(ids)} rows: the run's label differs from {gt_field}")
        eval_key = fields.eval_key(policy)
        view = ds.exists(fields.pred).exists(gt_field)
        accuracy = None
        if len(view):
            results = view.evaluate_classifications(
                fields.pred,
                gt_field=gt_field,
                eval_key=eval_key,
                classes=list(policy.classes),
                progress=False,
                protocol=protocol,  # stored in the evaluation's config (the App's Model Evaluation panel)
                data_fingerprint=fingerprint,
            )
            accuracy = float(results.metrics()["accuracy"])
        scores = errors.score_run(
            ds,
            fields,
            gt_field=gt_field,
            predictions=matched,
            classes=policy.classes,
            landmarks=landmark_model,
            log=log,
        )
        record = {
            "name": run.name,
            "path": str(run.path),
            "policy": policy.name,
            "vote_mode": vote_mode,
            "gt_field": gt_field,
            "eval_key": eval_key,
            "matched": matched.height,
            "unmatched": unmatched,
            "allow_partial": allow_partial,
            "accuracy": accuracy,
            "top_k": top_k,
            "landmark_model": landmark_model,
            "scores": scores,
            "protocol": protocol,
            "data_fingerprint": fingerprint,
        }
        info = ds.info.get(INFO_KEY) or {}
        info.setdefault("runs", {})[fields.key] = record
        info["active_run"] = fields.key
        ds.info[INFO_KEY] = info
        ds.save()
        update_app_config(ds)
    except BaseException:
        remove_run(ds, fields.key, created=set(ds.get_field_schema()) - before)
        raise
    return RunSummary(
        name=run.name,
        key=fields.key,
        policy=policy.name,
        vote_mode=vote_mode,
        gt_field=gt_field,
        eval_key=eval_key,
        predictions=predictions.height,
        matched=matched.height,
        unmatched=unmatched,
        label_disagreements=disagreements,
        accuracy=accuracy,
        flagged=int(scores.get("label_issues", 0)),
        scores=scores,
        protocol=protocol,
        data_fingerprint=fingerprint,
    )


def remove_run(ds: Any, key: str, *, created: set[str] | None = None) -> None:
    """Delete a run's fields, evaluations and brain runs (and ``created`` fields) from ``ds``."""
    fields = RunFields(key)
    for eval_key in list(ds.list_evaluations()):
        if eval_key.startswith(f"eval_{key}_"):
            ds.delete_evaluation(eval_key)
    for brain_key in list(ds.list_brain_runs()):
        if brain_key in (fields.mistakenness, fields.hardness, fields.fused_mistakenness):
            ds.delete_brain_run(brain_key)
    names = set(fields.sample_fields()) | set(created or ())
    present = [n for n in names if ds.has_sample_field(n) and not n.startswith("gt_")]
    if present:
        ds.delete_sample_fields(present)
    info = ds.info.get(INFO_KEY)
    if info and key in info.get("runs", {}):
        del info["runs"][key]
        if info.get("active_run") == key:
            info["active_run"] = next(reversed(info["runs"]), None) if info["runs"] else None
        ds.info[INFO_KEY] = info
        ds.description = describe_dataset(info)
        ds.save()


# --------------------------------------------------------------------------------------
# The whole load
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class LoadSummary:
    """What :func:`load` did."""

    name: str
    source: str
    samples: int
    built: bool
    seconds_ingest: float = 0.0
    refused: int = 0
    missing_images: int = 0
    images_written: int = 0
    tags_carried: int = 0
    runs: list[RunSummary] = dataclasses.field(default_factory=list)
    views: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    duplicates: dict[str, int] = dataclasses.field(default_factory=dict)
    va_outliers: dict[str, Any] = dataclasses.field(default_factory=dict)


def default_source(dataset: str, workspace: Any) -> dict[str, str]:
    """``{"manual_dir": ...}`` or ``{"data_dir": ...}`` of the dataset's last ingest in the workspace."""
    if workspace is None or not workspace.exists:
        where = f" (workspace {workspace.root} has no database)" if workspace is not None else ""
        raise ReviewLoadError(f"give --manual-dir or --data-dir{where}")
    with workspace.connect() as con:
        try:
            row = con.execute("SELECT source FROM ingests WHERE dataset = ?", [dataset]).fetchone()
        except Exception:  # noqa: BLE001 - no ingests table yet
            row = None
    if row is None or not row[0]:
        raise ReviewLoadError(
            f"{dataset} is not ingested in workspace {workspace.root}; give --manual-dir or --data-dir"
        )
    source = str(row[0])
    if source.startswith("tfds:"):
        return {"data_dir": source.removeprefix("tfds:")}
    if source.startswith("votes:"):
        raise ReviewLoadError(
            f"{dataset} was ingested from a FER+ vote file alone ({source}), which has no images; give --manual-dir"
        )
    return {"manual_dir": source}


def check_name(fo: Any, name: str, source: ReviewSource) -> Any | None:
    """The existing dataset ``name`` if it was loaded from ``source``; raise if another source owns it."""
    if not fo.dataset_exists(name):
        return None
    ds = fo.load_dataset(name)
    info = ds.info.get(INFO_KEY)
    if not info:
        raise ReviewLoadError(
            f"FiftyOne dataset name {name!r} is already used by a dataset curate did not create; "
            f"choose another --name (or delete it with `curate review delete {name}`)"
        )
    owner = info.get("source", {}).get("key")
    if owner != source.key:
        raise ReviewLoadError(
            f"FiftyOne dataset name {name!r} is already used by another source ({owner}); "
            f"choose another --name, or delete it with `curate review delete {name}`"
        )
    return ds


def load(
    dataset: str,
    *,
    manual_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tfds_config: str | None = None,
    run: str | os.PathLike[str] | None = None,
    name: str | None = None,
    workspace: Any | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_partial: bool = False,
    refresh: bool = False,
    top_k: int | None = None,
    landmark_model: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: Log = _quiet,
) -> LoadSummary:
    """Create or update the persistent FiftyOne dataset ``name`` (default: the dataset's name).

    Without ``manual_dir``/``data_dir`` the source of the dataset's last ``curate ingest`` in
    the workspace is used. An existing dataset from the same source is rebuilt only when its
    annotations changed (or ``refresh``): its sample tags and previous runs are carried
    over. ``run`` (a run folder, or a run name registered in the workspace) is attached.
    """
    import time

    from curate.review import db, views

    _check_dataset(dataset)
    notes: list[str] = []
    pairs = _duplicate_pairs(workspace, dataset, notes)
    keep_groups = bool(notes)  # the pairs table could not be read: leave the groups as they are
    if manual_dir is None and data_dir is None:
        defaults = default_source(dataset, workspace)
        manual_dir, data_dir = defaults.get("manual_dir"), defaults.get("data_dir")
    source = source_for(dataset, manual_dir=manual_dir, data_dir=data_dir, tfds_config=tfds_config)
    run_info = resolve_run(run, workspace=workspace) if run is not None else None
    fo = db.connect()
    name = name or dataset
    existing = check_name(fo, name, source)
    if cache_dir is None:
        cache_dir = (workspace.root if workspace is not None else Path(".")) / "review-cache"

    if source.kind == "manual":
        annotations, refused, source = read_manual_annotations(source)
    else:
        (source, _), annotations, refused = resolve_tfds(source), None, 0
    old_info = existing.info.get(INFO_KEY, {}) if existing is not None else {}
    unchanged = (
        existing is not None
        and old_info.get("source", {}).get("fingerprint") == source.fingerprint
        and old_info.get("layout_version") == LAYOUT_VERSION
    )
    summary = LoadSummary(name=name, source=source.describe(), samples=0, built=False, refused=refused, notes=notes)
    if unchanged and not refresh:
        ds = existing
        log(f"{name}: samples up to date ({len(ds)}); not rebuilt")
    else:
        log(f"{name}: reading images of {source.describe()}")
        table = (
            prepare_manual(source, cache_dir=cache_dir, annotations=annotations, refused=refused)
            if source.kind == "manual"
            else prepare_tfds(source, cache_dir=cache_dir)
        )
        summary.missing_images, summary.images_written = table.missing_images, table.images_written
        start = time.perf_counter()
        ds = ingest_table(table, name=f"{name}-loading-{uuid.uuid4().hex[:8]}", batch_size=batch_size)
        summary.seconds_ingest = time.perf_counter() - start
        summary.built = True
        log(f"{name}: {len(ds)} samples ingested in {summary.seconds_ingest:.1f} s")
        try:
            if existing is not None:
                summary.tags_carried = carry_tags(existing, ds)
                summary.runs += reattach_runs(ds, old_info, skip=run_info, notes=summary.notes, log=log)
            if run_info is not None:
                summary.runs.append(
                    attach_run(
                        ds, run_info, allow_partial=allow_partial, top_k=top_k, landmark_model=landmark_model, log=log
                    )
                )
            summary.va_outliers = mark_va_outliers(ds, dataset, log=log)
            if not keep_groups:
                summary.duplicates = _mark_duplicates(ds, pairs, dataset, log)
            summary.views = views.create_views(ds)
            _swap_in(ds, existing, name)
        except BaseException:
            _delete_quietly(ds)
            raise
        summary.samples = len(ds)
        return summary

    if run_info is not None:
        summary.runs.append(
            attach_run(ds, run_info, allow_partial=allow_partial, top_k=top_k, landmark_model=landmark_model, log=log)
        )
    summary.va_outliers = mark_va_outliers(ds, dataset, log=log)
    if not keep_groups:
        summary.duplicates = _mark_duplicates(ds, pairs, dataset, log)
    summary.views = views.create_views(ds)
    summary.samples = len(ds)
    return summary


def mark_va_outliers(ds: Any, dataset: str, *, k: float = VA_OUTLIER_K, log: Log = _quiet) -> dict[str, Any]:
    """Score the V/A annotations of ``ds`` with :func:`curate.audit.va_outliers`; write the flags.

    Every sample gets ``va_outlier`` (bool; false where the row is not scored) and
    ``va_distance`` (float; ``None`` without valence/arousal). Labels are the canonical
    ``label_index``. Returns (and records in ``ds.info``) ``k``, ``scored`` and
    ``flagged``; an empty dict -- nothing written -- for datasets without V/A (not AffectNet).
    """
    if dataset != "affectnet" or not ds.has_sample_field("valence"):
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


def _duplicate_pairs(workspace: Any, dataset: str, notes: list[str]) -> Any | None:
    """The workspace's ``duplicate_pairs`` rows of ``dataset`` (``None``: no table, or unreadable -> a note)."""
    import duckdb

    from curate.review import duplicates
    from curate.workspace import WorkspaceError

    try:
        return duplicates.read_pairs(workspace, dataset)
    except (WorkspaceError, OSError, duckdb.Error) as error:  # busy workspace, a table of another layout
        notes.append(f"duplicate groups not updated: {error}")
        return None


def _mark_duplicates(ds: Any, pairs: Any | None, dataset: str, log: Log) -> dict[str, int]:
    """Write the duplicate groups of ``pairs`` on ``ds`` and record them in ``ds.info``."""
    from curate.review import duplicates

    result = duplicates.mark_duplicates(ds, pairs, dataset)
    info = ds.info.get(INFO_KEY) or {}
    info["duplicates"] = result.to_info()
    ds.info[INFO_KEY] = info
    ds.save()
    update_app_config(ds)
    if result.samples:
        log(f"duplicate groups: {result.samples} samples in {result.groups} groups ({result.pairs} pairs)")
    return result.to_info()


def reattach_runs(
    ds: Any, old_info: Mapping[str, Any], *, skip: RunInfo | None, notes: list[str], log: Log
) -> list[RunSummary]:
    """Attach the runs a rebuilt dataset had before (those whose folders still exist)."""
    summaries = []
    skip_key = RunFields.for_run(skip.name).key if skip is not None else None
    for key, record in old_info.get("runs", {}).items():
        if key == skip_key:
            continue
        try:
            previous = resolve_run(record["path"])
            summaries.append(
                attach_run(
                    ds,
                    previous,
                    allow_partial=bool(record.get("allow_partial")),
                    top_k=record.get("top_k"),
                    landmark_model=bool(record.get("landmark_model", True)),
                    log=log,
                )
            )
        except ReviewLoadError as error:
            notes.append(f"previous run {record.get('name', key)} not re-attached: {error}")
    return summaries


def carry_tags(old: Any, new: Any) -> int:
    """Copy sample tags and ``ground_truth`` label tags from ``old`` to ``new`` by ``source_id``."""
    from fiftyone import ViewField as F

    tagged = old.match((F("tags").length() > 0) | (F(f"{GROUND_TRUTH_FIELD}.tags").length() > 0))
    if not len(tagged):
        return 0
    ids, tags, label_tags = tagged.values(["source_id", "tags", f"{GROUND_TRUTH_FIELD}.tags"])
    present = set(new.values("source_id"))
    sample_tags = {s: t for s, t in zip(ids, tags, strict=True) if t and s in present}
    gt_tags = {s: t for s, t in zip(ids, label_tags, strict=True) if t and s in present}
    if sample_tags:
        new.set_values("tags", sample_tags, key_field="source_id")
    if gt_tags:
        new.set_values(f"{GROUND_TRUTH_FIELD}.tags", gt_tags, key_field="source_id")
    return len(set(sample_tags) | set(gt_tags))


def _swap_in(ds: Any, existing: Any | None, name: str) -> None:
    """Make ``ds`` the persistent dataset ``name``, replacing ``existing``."""
    backup = None
    if existing is not None:
        backup = f"{name}-replaced-{uuid.uuid4().hex[:8]}"
        existing.name = backup
    try:
        ds.name = name
        ds.persistent = True
    except BaseException:
        if existing is not None:
            existing.name = name
        raise
    if existing is not None:
        existing.delete()
