"""Glue shared by the ``affectnet``, ``ferplus`` and ``rafdb`` TFDS builders.

Scope
-----
* Image I/O with Pillow: read the bytes (plain ``open`` on local disks, ``etils.epath`` for
  ``gs://``-style URIs), decode them *fully* (so a truncated file fails here, not later in
  a training job), convert to RGB or grey, crop a face box with a margin, resize,
  re-encode, and map landmark coordinates into the stored image.
* The outcome of one input row: an example ``(key, features)`` or a reject record. Every
  row a reader returned ends as exactly one of the two.
* The rejects ledger: reader rejects (``curate.formats``) plus builder rejects (missing or
  undecodable images, boxes outside the image, duplicate ids), written as JSON lines
  ``rejects-<split>.jsonl`` into the dataset's data dir next to ``dataset_info.json``;
  their counts, the per-split ``rows_in`` / ``examples`` / ``rejects`` and the SHA-256 of
  every annotation file go into the dataset metadata (``metadata.json``); the ledger lives in
  :mod:`tfds_builders.ledger`, the messages of a failed build in :mod:`tfds_builders.build_errors`.
* :class:`ManualDownloadBuilder`, the base class of the three builders: reads the manual
  dir through the dataset's reader, drives either a plain generator or a Beam pipeline
  (when the build was given Beam options), and asserts
  ``rows_in == examples + rejects`` for every split before the dataset is published. The
  plain path makes examples on a small thread pool (:func:`ordered_map`: chunks of rows,
  a bounded number in flight, results consumed in input order), so the GIL-free image
  work of Pillow uses every core while TFDS serialises in the main thread; the output
  is the same, example for example, as with one thread.

Assumptions
-----------
* Coordinates are continuous with pixel *centres* at integer positions (as the readers and
  the synthetic generator write them). A crop box ``(x0, y0, x1, y1)`` covers pixels
  ``x0 .. x1 - 1``; a point maps as ``x' = (x + 0.5 - x0) * scale - 0.5``.
* EXIF orientation is ignored: annotations refer to the stored pixel grid.
* Row dicts are the rows of :data:`curate.formats.schema.ANNOTATION_SCHEMA` (plus a
  dataset's extras) as ``polars.DataFrame.iter_rows(named=True)`` yields them.

Nothing here parses a raw annotation file: the readers in :mod:`curate.formats` do.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import io
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import polars as pl
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from curate import exclusions
from curate.formats.schema import FormatError
from tfds_builders import build_errors
from tfds_builders.ledger import (  # noqa: F401  (re-exported: the builders' and tests' names)
    LEDGER_FIELDS,
    LEDGER_TEMPLATE,
    UNASSIGNED_SPLIT,
    Ledger,
    read_json_lines,
    read_ledger,
    reject_record,
    write_json_lines,
)

build_errors.install_excepthook()

# --------------------------------------------------------------------------------------
# Reject reasons added by the builders (the readers add their own, see curate.formats)
# --------------------------------------------------------------------------------------

MISSING_IMAGE = "missing image file"
EMPTY_IMAGE = "empty image file"
TRUNCATED_IMAGE = "truncated image"
UNDECODABLE_IMAGE = "undecodable image"
BOX_OUTSIDE_IMAGE = "face box outside image"
INVALID_BOX = "invalid face box"
INVALID_LANDMARKS = "invalid landmarks"
INVALID_PIXELS = "invalid pixels"
INVALID_VOTES = "invalid votes"
INVALID_LABEL = "invalid label"
DUPLICATE_ID = "duplicate id"
#: Rows whose id the manual dir's exclusion list names (``curate.exclusions``, as ``curate ingest --exclusions``).
EXCLUDED_DUPLICATE = exclusions.EXCLUDED_AS_DUPLICATE

#: Optional exclusion list in the manual dir: the Parquet file of
#: ``curate audit duplicates --exclusions-out`` (columns ``id`` and, optionally, ``dataset``
#: and ``group``), copied there under this name. Absent: the build is unchanged.
EXCLUSIONS_FILE = "curate_exclusions.parquet"
#: Appended to every builder's MANUAL_DOWNLOAD_INSTRUCTIONS (same 4-space indent).
EXCLUSIONS_INSTRUCTIONS = f"""
    Optional ignore list (see docs/building.md):
      <manual_dir>/{EXCLUSIONS_FILE}
          the Parquet of `curate audit duplicates --exclusions-out`, copied there;
          its ids become rejects "{EXCLUDED_DUPLICATE}". Without it nothing changes.
    """

#: Every reason a builder may add, for documentation and tests.
BUILDER_REJECT_REASONS: tuple[str, ...] = (
    MISSING_IMAGE,
    EMPTY_IMAGE,
    TRUNCATED_IMAGE,
    UNDECODABLE_IMAGE,
    BOX_OUTSIDE_IMAGE,
    INVALID_BOX,
    INVALID_LANDMARKS,
    INVALID_PIXELS,
    INVALID_VOTES,
    INVALID_LABEL,
    DUPLICATE_ID,
    EXCLUDED_DUPLICATE,
)

#: Beam side output of builder rejects, merged into the ledger after the pipeline.
_BEAM_REJECTS_TEMPLATE = "beam-rejects-{split}.jsonl"

_EXAMPLE = "example"
_REJECT = "reject"


class RowReject(Exception):
    """Raised by an example function: the row becomes a reject with this reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------


def sha256_file(path: epath.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with epath.Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class DecodedImage:
    """A fully decoded image and the bytes it came from."""

    image: Image.Image  # mode RGB or L
    data: bytes
    format: str  # Pillow's format name: JPEG, PNG, BMP, TIFF, ...
    original_mode: str

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def read_image_bytes(manual_dir: epath.PathLike, relative_path: str | None) -> bytes:
    """The bytes of ``manual_dir / relative_path``; :class:`RowReject` when absent or empty."""
    if not relative_path:
        raise RowReject(MISSING_IMAGE, "no image path in the annotation row")
    root = str(manual_dir)
    try:
        if "://" in root:  # gs://, s3://, ... through etils.epath
            data = (epath.Path(root) / relative_path).read_bytes()
        else:  # local disk: plain open(), cheaper per file than epath
            with open(f"{root.rstrip('/')}/{relative_path}", "rb") as handle:
                data = handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise RowReject(MISSING_IMAGE, relative_path) from None
    if not data:
        raise RowReject(EMPTY_IMAGE, relative_path)
    return data


def decode_image(data: bytes, *, mode: str = "RGB", where: str = "") -> DecodedImage:
    """Decode image bytes with Pillow (every format Pillow reads: JPEG, PNG, BMP, TIFF...).

    The pixels are loaded immediately, so truncated files raise here. ``mode`` is the
    mode of the returned image (``"RGB"`` or ``"L"``); 16-bit and float images are scaled
    to 8 bits. Raises :class:`RowReject` with ``truncated image`` or ``undecodable image``.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image_format = image.format or "UNKNOWN"
        image.load()
    except Image.DecompressionBombError as error:
        raise RowReject(UNDECODABLE_IMAGE, f"{where}: {error}") from None
    except Image.UnidentifiedImageError:
        raise RowReject(UNDECODABLE_IMAGE, f"{where}: not an image Pillow can identify") from None
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError...
        text = str(error)
        reason = TRUNCATED_IMAGE if "truncat" in text.lower() or isinstance(error, EOFError) else UNDECODABLE_IMAGE
        raise RowReject(reason, f"{where}: {type(error).__name__}: {text}") from None
    original_mode = image.mode
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) if array.size else 0.0
        scale = 255.0 / top if top > 255.0 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode != mode:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image)
        image = image.convert(mode)
    if image.width < 1 or image.height < 1:
        raise RowReject(UNDECODABLE_IMAGE, f"{where}: empty image {image.size}")
    return DecodedImage(image=image, data=data, format=image_format, original_mode=original_mode)


def load_image(manual_dir: epath.PathLike, relative_path: str | None, *, mode: str = "RGB") -> DecodedImage:
    """:func:`read_image_bytes` then :func:`decode_image`."""
    return decode_image(read_image_bytes(manual_dir, relative_path), mode=mode, where=relative_path or "")


def image_size(manual_dir: epath.PathLike, relative_path: str | None) -> tuple[int, int]:
    """``(width, height)`` from an image file's header, without decoding its pixels."""
    data = read_image_bytes(manual_dir, relative_path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception as error:  # pylint: disable=broad-except
        raise RowReject(UNDECODABLE_IMAGE, f"{relative_path}: {type(error).__name__}: {error}") from None


def encode_jpeg(image: Image.Image, *, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def passthrough_or_encode(decoded: DecodedImage) -> bytes:
    """Original bytes when TensorFlow decodes them to the same pixels, else lossless PNG.

    JPEG and PNG files in RGB or grey pass through unchanged (no generation loss); BMP,
    TIFF, palette, CMYK, alpha or 16-bit files are re-encoded as PNG from the decoded image.
    """
    if decoded.format in ("JPEG", "PNG") and decoded.original_mode in ("RGB", "L"):
        return decoded.data
    return encode_png(decoded.image)


@dataclasses.dataclass(frozen=True)
class CropBox:
    """Integer pixel bounds of a crop: columns ``x0 .. x1 - 1``, rows ``y0 .. y1 - 1``."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def face_box_is_valid(box: Sequence[float | None] | None) -> bool:
    """True when ``box`` is ``(x, y, w, h)`` of finite numbers with positive sizes."""
    if box is None or len(box) != 4 or any(v is None for v in box):
        return False
    values = [float(v) for v in box]  # type: ignore[arg-type]
    return all(math.isfinite(v) for v in values) and values[2] > 0 and values[3] > 0


def margin_crop_box(box: Sequence[float], image_size: tuple[int, int], *, margin: float) -> CropBox:
    """The face box ``(x, y, w, h)`` grown by ``margin`` x its size on every side, clamped.

    Raises :class:`RowReject` (``face box outside image``) when nothing of it is inside.
    """
    x, y, w, h = (float(v) for v in box)
    width, height = image_size
    x0 = max(0, math.floor(x - margin * w))
    y0 = max(0, math.floor(y - margin * h))
    x1 = min(width, math.ceil(x + w + margin * w))
    y1 = min(height, math.ceil(y + h + margin * h))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise RowReject(BOX_OUTSIDE_IMAGE, f"box {x:g},{y:g},{w:g},{h:g} in image {width}x{height}")
    return CropBox(x0, y0, x1, y1)


def crop_resize(image: Image.Image, crop: CropBox, size: int) -> Image.Image:
    """Crop and resize in one Pillow pass (bilinear with antialiasing) to ``size x size``."""
    return image.resize((size, size), resample=Image.Resampling.BILINEAR, box=(crop.x0, crop.y0, crop.x1, crop.y1))


def points_into_crop(points: np.ndarray, crop: CropBox, size: int) -> np.ndarray:
    """Map ``(N, 2)`` source pixel coordinates into the ``size x size`` crop."""
    scale = np.array([size / crop.width, size / crop.height], dtype=np.float64)
    origin = np.array([crop.x0, crop.y0], dtype=np.float64)
    return ((points.astype(np.float64) + 0.5 - origin) * scale - 0.5).astype(np.float32)


def normalized_bbox(box: Sequence[float], frame: CropBox) -> tfds.features.BBox:
    """A ``tfds.features.BBox`` of the box ``(x, y, w, h)`` relative to ``frame``, clamped to [0, 1]."""
    x, y, w, h = (float(v) for v in box)

    def clamp(value: float) -> float:
        return float(min(1.0, max(0.0, value)))

    xmin = clamp((x - frame.x0) / frame.width)
    xmax = clamp((x + w - frame.x0) / frame.width)
    ymin = clamp((y - frame.y0) / frame.height)
    ymax = clamp((y + h - frame.y0) / frame.height)
    return tfds.features.BBox(ymin=ymin, xmin=xmin, ymax=ymax, xmax=xmax)


def landmark_array(values: Sequence[float] | None, n_points: int, *, what: str = "landmarks") -> np.ndarray:
    """``(n_points, 2)`` float32 from an interleaved ``x0, y0, x1, y1, ...`` list."""
    if values is None:
        raise RowReject(INVALID_LANDMARKS, f"{what}: missing")
    array = np.asarray(values, dtype=np.float32)  # None -> nan
    if array.shape != (2 * n_points,):
        raise RowReject(INVALID_LANDMARKS, f"{what}: {array.size} values, expected {2 * n_points}")
    if not np.all(np.isfinite(array)):
        raise RowReject(INVALID_LANDMARKS, f"{what}: non-finite value")
    return array.reshape(n_points, 2)


# --------------------------------------------------------------------------------------
# Row outcomes
# --------------------------------------------------------------------------------------

ExampleFn = Callable[..., tuple[str, dict[str, Any]]]


def run_example_fn(fn: ExampleFn, row: Mapping[str, Any], fn_kwargs: Mapping[str, Any]) -> tuple:
    """``("example", key, features)`` or ``("reject", record)`` for one annotation row."""
    try:
        key, features = fn(row, **fn_kwargs)
    except RowReject as reject:
        return (_REJECT, reject_record(row, reject.reason, reject.detail))
    return (_EXAMPLE, key, features)


# --------------------------------------------------------------------------------------
# Ordered, bounded thread pool (the plain path's parallel image work)
# --------------------------------------------------------------------------------------


def default_workers(*, cap: int = 4) -> int:
    """Worker threads for the plain path: the CPUs this process may use, at most ``cap``.

    Beyond about four threads the Python (GIL-holding) part of each example and TFDS's
    serialisation in the main thread dominate; more cores are a job for the Beam path.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cap, cpus))


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int, window: int) -> Iterator[Any]:
    """``fn(item)`` for every item, computed on ``workers`` threads, yielded in input order.

    At most ``window`` calls are submitted and not yet consumed (bounded memory: ``items``
    is read lazily, never materialised). ``workers <= 1`` runs ``fn`` inline, in this
    thread. An exception raised by ``fn`` is re-raised here, at that item's turn. Closing
    the generator early (TFDS's ``--max_examples_per_split``) cancels what has not started
    and waits for the calls already running.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    window = max(window, workers)
    pending: collections.deque[concurrent.futures.Future] = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfds-builders") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def run_example_chunk(
    start: int, *, rows: pl.DataFrame, size: int, fn: ExampleFn, fn_kwargs: Mapping[str, Any]
) -> list[tuple]:
    """Outcomes (see :func:`run_example_fn`) of ``rows[start : start + size]``, in order.

    Runs in a worker thread: the slice (zero-copy) and the row dicts are made there too.
    """
    return [run_example_fn(fn, row, fn_kwargs) for row in rows.slice(start, size).iter_rows(named=True)]


# --------------------------------------------------------------------------------------
# Beam path (module-level functions: Beam pickles them by reference)
# --------------------------------------------------------------------------------------


def _beam_process(
    row: Mapping[str, Any], *, example_fn: ExampleFn, fn_kwargs: Mapping[str, Any], namespace: str, split: str
):
    beam = tfds.core.lazy_imports.apache_beam
    outcome = run_example_fn(example_fn, row, fn_kwargs)
    if outcome[0] == _EXAMPLE:
        beam.metrics.Metrics.counter(namespace, f"{split}/examples").inc()
        yield outcome[1], outcome[2]
    else:
        beam.metrics.Metrics.counter(namespace, f"{split}/rejects/{outcome[1]['reason']}").inc()
        yield beam.pvalue.TaggedOutput("rejects", outcome[1])


def _beam_write_rejects(records: list[dict[str, Any]], *, path: str) -> int:
    return write_json_lines(records, path)


def beam_examples(
    rows: list[dict[str, Any]],
    *,
    fn: ExampleFn,
    fn_kwargs: Mapping[str, Any],
    namespace: str,
    split: str,
    rejects_path: str,
):
    """The Beam form of a split: ``beam.Create(rows) | beam.FlatMap(process)``.

    Examples are the main output. Rejects go to a tagged side output that is gathered
    and written as JSON lines to ``rejects_path`` inside the same pipeline; every outcome
    also increments a ``beam.metrics`` counter in ``namespace`` (``<split>/examples``,
    ``<split>/rejects/<reason>``), which the builder cross-checks with the ledger.
    """
    beam = tfds.core.lazy_imports.apache_beam

    @beam.ptransform_fn
    def _split_transform(pbegin):
        outputs = (
            pbegin
            | "CreateRows" >> beam.Create(rows)
            | "Reshuffle" >> beam.Reshuffle()  # spread the decoding over the workers
            | "MakeExamples"
            >> beam.FlatMap(
                _beam_process, example_fn=fn, fn_kwargs=dict(fn_kwargs), namespace=namespace, split=split
            ).with_outputs("rejects", main="examples")
        )
        _ = (
            outputs.rejects
            | "GatherRejects" >> beam.combiners.ToList()
            | "WriteRejects" >> beam.Map(_beam_write_rejects, path=rejects_path)
        )
        return outputs.examples

    return _split_transform()  # pylint: disable=no-value-for-parameter


# --------------------------------------------------------------------------------------
# The base builder
# --------------------------------------------------------------------------------------


class ManualDownloadBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared build logic of the three manual-download builders.

    Subclasses set ``SPLIT_NAMES`` and implement ``_read_tables(manual_dir)`` (a
    :class:`curate.formats.schema.ParsedTables`), ``_example_fn()`` (a module-level
    function ``fn(row, **kwargs) -> (key, features)`` raising :class:`RowReject`, and its
    picklable keyword arguments) and the usual ``_info``.
    """

    SPLIT_NAMES: ClassVar[tuple[str, ...]] = ()
    #: Plain path: threads making examples (None: :func:`default_workers`, the usable CPUs up
    #: to 4; 1: inline, no thread). Pillow releases the GIL while decoding, resizing and
    #: encoding, so the image work of several rows runs on several cores while the main
    #: thread hands finished examples to TFDS, in input order.
    WORKERS: ClassVar[int | None] = None
    #: Plain path: rows per task given to a worker, and tasks in flight per worker (memory
    #: stays bounded at about ``WORKERS * IN_FLIGHT * CHUNK_ROWS`` finished examples).
    CHUNK_ROWS: ClassVar[int] = 16
    IN_FLIGHT: ClassVar[int] = 2

    # -- hooks for subclasses ------------------------------------------------------------

    def _read_tables(self, manual_dir: epath.Path) -> Any:
        raise NotImplementedError

    def _example_fn(self, manual_dir: epath.Path) -> tuple[ExampleFn, dict[str, Any]]:
        raise NotImplementedError

    def _row_columns(self, columns: Sequence[str]) -> list[str]:
        """Columns of the annotation table the example function needs (default: all)."""
        return list(columns)

    # -- TFDS entry points ---------------------------------------------------------------

    def _download_and_prepare(self, dl_manager, download_config):  # pylint: disable=arguments-renamed
        self._use_beam = download_config.beam_runner is not None or download_config.beam_options is not None
        self._capped = download_config.max_examples_per_split is not None
        self._beam_counters: dict[str, int] | None = None
        self._ledger: Ledger | None = None
        self._manual_dir = None
        # self.data_dir is TFDS's temporary incomplete.* folder here: mark it ours, and remove
        # the ones killed builds left beside it.
        build_errors.claim(self.data_dir)
        build_errors.sweep_incomplete_dirs(self.data_dir)
        try:
            super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
        except (AssertionError, ValueError) as error:  # TFDS's writers on a Beam split with no examples
            split = self._empty_split_in(error)
            if split is None:
                raise
            self._merge_beam_rejects()
            raise self._split_failure(split) from None
        if self._ledger is not None:
            self._finish_build()

    def _split_generators(self, dl_manager):
        try:
            manual_dir = dl_manager.manual_dir
        except AssertionError:  # TFDS: absent or empty (its message repeats the instructions)
            raise build_errors.fail(
                f"{self.name}: the manual dir {dl_manager._manual_dir} does not exist or is empty; put the files "
                "described below there (or pass --manual_dir)",
                self.MANUAL_DOWNLOAD_INSTRUCTIONS,
            ) from None
        self._manual_dir = manual_dir
        try:
            tables = self._read_tables(manual_dir)
        except FormatError as error:
            raise build_errors.fail(
                build_errors.manual_dir_message(self.name, error, manual_dir), self.MANUAL_DOWNLOAD_INSTRUCTIONS
            ) from None
        self._ledger = ledger = Ledger(self.name, tables, self.SPLIT_NAMES)
        excluded = None
        exclusions_path = epath.Path(manual_dir) / EXCLUSIONS_FILE
        if exclusions_path.exists():  # its hash joins the annotation hashes: a new list, a new fingerprint
            try:
                listed = exclusions.read_exclusion_list(exclusions_path, name=EXCLUSIONS_FILE)
            except exclusions.ExclusionListError as error:  # an ignore list silently ignored would be worse
                raise AssertionError(str(error)) from None
            excluded, ledger.files[EXCLUSIONS_FILE] = listed.for_dataset(self.name), listed.sha256
            ledger.files = dict(sorted(ledger.files.items()))
        fn, fn_kwargs = self._example_fn(manual_dir)
        table = self._ordered_unique(tables.annotations, ledger, excluded)
        del tables  # only the ordered table (one copy of the annotations) stays alive

        generators = {}
        left = table.get_column("split").value_counts()
        left = dict(zip(left.get_column("split").to_list(), left.get_column("count").to_list(), strict=True))
        for split in self.SPLIT_NAMES:
            if ledger.rows_in.get(split, 0) == 0:
                continue  # the manual dir has no rows for this split at all
            if not left.get(split):  # the reader (or the exclusion list) rejected every row
                raise self._split_failure(split)
            generators[split] = self._generate_examples(table=table, split=split, fn=fn, fn_kwargs=fn_kwargs)
        return generators

    def _empty_split_in(self, error: Exception) -> str | None:
        """The split TFDS's writer found empty (``No examples were yielded`` on the plain path,
        ``The total number of generated examples is 0`` under Beam), or None for other errors."""
        if isinstance(error, build_errors.ManualDirError) or self._ledger is None:
            return None
        found = re.search(r'split "(\w+)": No examples were yielded|examples is 0 for split (\w+)', str(error))
        split = found and (found.group(1) or found.group(2))
        return split if split in self.SPLIT_NAMES else None

    def _split_failure(self, split: str) -> build_errors.ManualDirError:
        """The error for a split whose every row was rejected; its rejects go to a file that outlives
        the build's temporary folder (``<data_dir>/<name>/[<config>/]rejects-<split>.failed.jsonl``)."""
        ledger = self._ledger
        records = ledger.records.get(split, [])
        failed = epath.Path(self.data_path).parent / f"rejects-{split}.failed.jsonl"
        try:
            write_json_lines(records, failed)
        except OSError:
            failed = None
        hint = build_errors.missing_folder_hint(records, self._manual_dir) if self._manual_dir else ""
        message = build_errors.split_failure_message(
            self.name, split, ledger.rows_in.get(split, 0), ledger.reasons(split), hint, failed
        )
        return build_errors.fail(message)

    def _ordered_unique(self, annotations, ledger: Ledger, excluded=None):
        """The annotation rows in split / source-file / row order, later duplicates of an id rejected.

        The readers already reject duplicate ids; this guards the TFDS keys (which must be
        unique) should a reader ever let one through. Rows whose id ``excluded`` (the
        ``id, detail`` rows of the manual dir's exclusion list) names are rejected as
        ``excluded as duplicate``.
        """
        order = {split: i for i, split in enumerate(self.SPLIT_NAMES)}
        table = annotations.filter(pl.col("split").is_in(list(self.SPLIT_NAMES)))
        table = table.with_columns(pl.col("split").replace_strict(order, return_dtype=pl.Int32).alias("_split_order"))
        table = table.sort(["_split_order", "source_file", "source_row", "id"], nulls_last=True, maintain_order=True)
        first = table.get_column("id").is_first_distinct()
        if not first.all():
            for row in table.filter(~first).iter_rows(named=True):
                ledger.add(reject_record(row, DUPLICATE_ID, f"id {row['id']!r} already used by an earlier row"))
            table = table.filter(first)
        if excluded is not None and excluded.height:
            table, matched = exclusions.match(table, excluded)
            for row in matched.iter_rows(named=True):
                ledger.add(reject_record(row, EXCLUDED_DUPLICATE, row[exclusions.DETAIL_COLUMN]))
        return table.select(self._row_columns([c for c in table.columns if c != "_split_order"]))

    def _generate_examples(self, table, split, fn, fn_kwargs):
        """A Beam PTransform when the build has Beam options, else a plain generator."""
        if getattr(self, "_use_beam", False):
            rows = table.filter(table.get_column("split") == split)
            return beam_examples(
                list(rows.iter_rows(named=True)),
                fn=fn,
                fn_kwargs=fn_kwargs,
                namespace=self.name,
                split=split,
                rejects_path=str(epath.Path(self.data_dir) / _BEAM_REJECTS_TEMPLATE.format(split=split)),
            )
        return self._iter_examples(table, split, fn, fn_kwargs)

    def _iter_examples(self, table, split, fn, fn_kwargs) -> Iterator[tuple[str, dict[str, Any]]]:
        """Examples of ``split`` in table order; rejects go to the ledger as they come."""
        rows = table.filter(table.get_column("split") == split)  # filtered when TFDS starts this split
        workers = self.WORKERS if self.WORKERS is not None else default_workers()
        size = max(1, self.CHUNK_ROWS)
        task = functools.partial(run_example_chunk, rows=rows, size=size, fn=fn, fn_kwargs=fn_kwargs)
        starts = range(0, rows.height, size)
        yielded = 0
        for outcomes in ordered_map(task, starts, workers=workers, window=workers * max(1, self.IN_FLIGHT)):
            for outcome in outcomes:
                if outcome[0] == _EXAMPLE:
                    yielded += 1
                    yield outcome[1], outcome[2]
                else:
                    self._ledger.add(outcome[1])
        if not yielded and not getattr(self, "_capped", False):  # before TFDS's writer fails on it
            raise self._split_failure(split)

    def _process_pipeline_result(self, pipeline_result) -> None:
        beam = tfds.core.lazy_imports.apache_beam
        try:
            results = pipeline_result.metrics().query(beam.metrics.MetricsFilter().with_namespace(self.name))
        except Exception:  # pylint: disable=broad-except  # some runners do not report metrics
            return
        counters: dict[str, int] = {}
        for counter in results.get("counters", ()):
            value = counter.committed if counter.committed is not None else counter.attempted
            counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(value or 0)
        self._beam_counters = counters

    # -- after the examples are written --------------------------------------------------

    def _finish_build(self) -> None:
        ledger = self._ledger
        data_dir = epath.Path(self.data_dir)
        if self._use_beam:
            self._merge_beam_rejects()
            if self._beam_counters is not None:
                self._check_beam_counters()
        examples = {name: split.num_examples for name, split in self.info.splits.items()}
        if not self._capped:  # --max_examples_per_split stops generators early on purpose
            ledger.check(examples)
            self._warn_on_reject_share()
        ledger_files = ledger.write(data_dir)
        metadata = self.info.metadata
        metadata.clear()
        metadata.update(ledger.metadata(examples, ledger_files))
        metadata["config"] = self.builder_config.name if self.builder_config else None
        metadata["capped_by_max_examples_per_split"] = self._capped
        metadata["generated_with"] = "apache_beam" if self._use_beam else "python_generator"
        if self._use_beam and self._beam_counters is not None:
            metadata["beam_counters"] = dict(sorted(self._beam_counters.items()))

    def _merge_beam_rejects(self) -> None:
        """Move the Beam workers' side outputs of builder rejects into the ledger."""
        for split in self.SPLIT_NAMES:
            side_output = epath.Path(self.data_dir) / _BEAM_REJECTS_TEMPLATE.format(split=split)
            for record in read_json_lines(side_output):
                self._ledger.add(record)
            if side_output.exists():
                side_output.unlink()

    def _warn_on_reject_share(self) -> None:
        """A warning per split with more than :data:`build_errors.REJECT_WARNING_SHARE` of its rows rejected."""
        ledger = self._ledger
        for split in ledger.all_splits():
            rows_in, rejected = ledger.rows_in.get(split, 0), ledger.reject_count(split)
            if rows_in and rejected / rows_in > build_errors.REJECT_WARNING_SHARE:
                records = ledger.records.get(split, [])
                hint = build_errors.missing_folder_hint(records, self._manual_dir) if self._manual_dir else ""
                build_errors.log.warning(
                    build_errors.share_warning(self.name, split, rows_in, ledger.reasons(split), hint)
                )

    def _check_beam_counters(self) -> None:
        counters = self._beam_counters or {}
        problems = []
        for split in self.SPLIT_NAMES:
            builder_reasons = collections.Counter(
                r["reason"] for r in self._ledger.records.get(split, ()) if r["stage"] == "builder"
            )
            builder_reasons.pop(DUPLICATE_ID, None)  # decided before the pipeline
            builder_reasons.pop(EXCLUDED_DUPLICATE, None)
            for reason, count in builder_reasons.items():
                if counters.get(f"{split}/rejects/{reason}", 0) != count:
                    problems.append(
                        f"{split}/{reason}: ledger {count}, counter {counters.get(f'{split}/rejects/{reason}', 0)}"
                    )
            for name, value in counters.items():
                prefix = f"{split}/rejects/"
                if name.startswith(prefix) and builder_reasons.get(name[len(prefix) :], 0) != value:
                    problems.append(f"{name}: counter {value}, ledger {builder_reasons.get(name[len(prefix) :], 0)}")
        if problems:
            raise AssertionError(
                f"{self.name}: Beam counters disagree with the rejects ledger: {sorted(set(problems))}"
            )
