"""Where a review dataset's samples come from, read into a :class:`ReviewTable`.

* A raw *manual dir* read with :mod:`curate.formats` (:func:`read_manual_annotations`,
  :func:`prepare_manual`): AffectNet and RAF-DB images stay where they are (TIFFs get a PNG
  copy browsers can show, :func:`browser_copies`); FERPlus pixels are written once as PNGs
  into a cache folder (:func:`materialise_ferplus`).
* A built TFDS dataset (``--data-dir``; :func:`resolve_tfds`, :func:`prepare_tfds`): its
  encoded images are copied once into the cache.
* Without either, the source of the dataset's last ``curate ingest`` in the workspace
  (:func:`default_source`).

A :class:`ReviewSource` names a source (its ``key``) and fingerprints its annotations;
:class:`ReviewTable` is the annotation frame with absolute image paths, image sizes and
relative geometry, ready for :mod:`curate.review.documents`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from curate import datasets as registry
from curate.review.fields import LAYOUT_VERSION, ReviewLoadError


@dataclasses.dataclass(frozen=True)
class ReviewSource:
    """Where a review dataset's samples come from.

    ``key`` identifies the source (dataset, kind, resolved path, TFDS config): a FiftyOne
    dataset loaded from one source is never overwritten by a load from another.
    ``fingerprint`` changes whenever the annotations change (annotation file digests or the
    TFDS ``dataset_info.json``), which makes :func:`curate.review.load.load` rebuild the samples.
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
    check_dataset(dataset)
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


def check_dataset(dataset: str) -> None:
    """Raise :class:`ReviewLoadError` unless the review package can load ``dataset``."""
    if dataset not in registry.names():
        raise ReviewLoadError(f"unknown dataset {dataset!r}; known datasets: {', '.join(registry.names())}")


def read_manual_annotations(source: ReviewSource) -> tuple[Any, int, ReviewSource]:
    """Read a manual dir with the dataset's reader; returns ``(frame, refused rows, source with fingerprint)``."""
    from curate import formats
    from curate.annotations import normalize_annotations, with_vote_labels

    spec = registry.get(source.dataset)
    try:
        parsed = spec.read(source.path, **spec.images_option)
    except formats.FormatError as error:
        raise ReviewLoadError(str(error)) from None
    # Rows with FER+ votes: the FER+ majority label, as the workspace and the builders give it.
    clean, refused = normalize_annotations(with_vote_labels(parsed.annotations, source.dataset), source.dataset)
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
    if registry.get(source.dataset).images_in_annotations:  # FER2013 pixel text
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
        if not geometry_image_held(source):  # e.g. RAF-DB without Image/original/: show the face, draw no geometry
            annotations = annotations.with_columns(
                *(pl.lit(None, dtype=annotations.schema[c]).alias(c) for c in GEOMETRY_COLUMNS if c in annotations.columns)
            )
            paths = [None if p is None else str(root / p) for p in annotations["source_path"].to_list()]
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


#: Columns in the pixels of the image :func:`geometry_images` names.
GEOMETRY_COLUMNS = ("face_x", "face_y", "face_width", "face_height", "landmarks")


def geometry_image_held(source: ReviewSource) -> bool:
    """Whether the copy read holds the image its geometry refers to: False for a copy whose
    reader says it lacks it (``LAYOUTS[layout].has_original`` False: RAF-DB's
    ``basic-aligned-only``, ``basic-labels-only`` and ``folder-per-label``)."""
    copies = getattr(registry.get(source.dataset).reader_module(), "LAYOUTS", {})
    copy = copies.get(source.layout) if source.layout else None
    return copy is None or getattr(copy, "has_original", True)


def geometry_images(dataset: str, annotations: Any) -> list[str | None]:
    """Image of each row that its box and landmarks refer to, relative to the manual dir.

    ``source_path`` unless the layout keeps geometry in another image: RAF-DB's boxes and
    landmarks are in *original*-image pixels (``curate.formats.rafdb.original_path``), while
    ``source_path`` is the aligned 100x100 crop.
    """
    if "original_path" in annotations.columns:
        originals = annotations["original_path"].to_list()
    else:
        module = registry.get(dataset).reader_module()
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

    from curate.annotations import with_vote_labels
    from curate.tfds_tables import tfds_batch_to_frame

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
            if registry.get(source.dataset).tfds_geometry_in_stored_image:
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
    frame = with_vote_labels(pl.concat(frames, how="vertical"), source.dataset)  # also for a 1.x FERPlus build
    missing = frame.filter(pl.col("image_width").is_null()).height
    return ReviewTable(frame=frame, source=source, missing_images=missing, images_written=written)


def resolve_tfds(source: ReviewSource) -> tuple[ReviewSource, Path]:
    """The built TFDS folder of a ``tfds`` source, and the source with its fingerprint and layout."""
    from curate.tfds_tables import find_tfds_dir
    from curate.workspace import WorkspaceError

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
