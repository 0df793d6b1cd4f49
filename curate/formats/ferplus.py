"""FERPlus: a copy of FER2013 (pixels, FER2013 label) aligned row by row with ``fer2013new.csv`` (FER+ votes).

Layout
------
The manual dir holds ``fer2013new.csv`` and one copy of FER2013, as people hold it
(:data:`COPIES`; the first one present is read, in this order):

* ``fer2013.csv`` (layout ``fer2013+ferplus``; the competition's ``fer2013.tar.gz``):
  header ``emotion,pixels,Usage``; ``pixels`` is 2,304 space-separated 0-255 values (48x48
  grey); ``emotion`` is the FER2013 code 0-6; ``Usage`` is ``Training`` / ``PublicTest`` /
  ``PrivateTest`` -> split ``train`` / ``validation`` / ``test``.
* ``icml_face_data.csv`` (layout ``icml_face_data+ferplus``; Kaggle, what torchvision's
  ``FER2013`` reads): the same rows and columns in another order, header
  ``emotion, Usage, pixels`` (blanks after the commas are accepted in any header).
* ``train.csv`` + ``test.csv`` (layout ``kaggle-train-test+ferplus``; Kaggle): ``train.csv``
  (header ``emotion,pixels``) holds the Training rows, ``test.csv`` (header ``pixels``, or
  ``emotion,pixels`` in copies that added the labels back) the PublicTest rows then the
  PrivateTest rows, each file in FER2013 order. There is no ``Usage`` column: the split
  comes from the position (``train.csv`` -> Training, the first half of ``test.csv`` ->
  PublicTest, the second half -> PrivateTest) and is checked against ``fer2013new.csv``.
  Rows without ``emotion`` have a null ``raw_label`` / ``label`` -- not a reject: their FER+
  votes label them.

Two copies in one folder are never mixed: the first in that order is read and a warning
(``logging``) names the one read and the ones ignored. A folder with none is a
:class:`FormatError` listing them all; so is half of the Kaggle pair.

``fer2013new.csv``: header ``Usage,Image name,neutral,...,NF``, ten votes per row, same row
order as ``fer2013.csv``. An empty ``Image name`` marks an image the annotators rejected;
such rows are kept (their votes say NF).

Alignment
---------
The votes belong to a pixel row by position only, so :func:`check_alignment` refuses
(one-line :class:`FormatError` naming both files, the row counts and the first row where
Usage disagrees) a pair whose data-row counts differ, or whose Usage columns disagree on
any row where both give a valid Usage (for the Kaggle pair: the Usage its position
implies). A row lost, added or moved shifts every later row, and the shift shows at the
next Training / PublicTest / PrivateTest boundary; a copy without its header line is a
bad header. A row whose ``fer2013new.csv`` Usage is not a valid one is a ``usage
mismatch`` reject (below), not a misalignment. What no check can see: rows reordered
within one split keep every Usage (for the Kaggle pair, whose Usage is the position, the
check amounts to ``train.csv`` holding as many rows as the Training block and
``test.csv``'s halves matching the PublicTest and PrivateTest blocks).

Annotations
-----------
Ids are ``fer<7-digit data-row index>`` (0-based over the whole copy -- ``test.csv``
continues ``train.csv`` -- as the FER+ image names ``fer0000000.png``), so every copy gives
the same ids. ``source_file`` / ``source_row`` are the copy's file and line. ``raw_label``
is the FER2013 ``emotion``; ``label`` its canonical label
(:data:`curate.labels.FER2013_TO_CANONICAL`); ``votes`` the ten votes in
:data:`curate.labels.FERPLUS_VOTE_COLUMNS` order. Extra column ``image_name`` (null when
empty); with ``read(..., with_pixels=True)`` also ``pixels`` (the text, quotes removed).

Reject reasons, first failing check wins, the same for every copy: ``malformed row`` (field
count or an unparsable emotion / vote, or a negative vote; ``source_file`` says which
file), ``unknown usage``, ``usage mismatch`` (``fer2013new.csv`` gives a Usage that is not
Training / PublicTest / PrivateTest for a row the copy places), ``label out of range``
(emotion outside 0-6), ``pixel count`` (not 2,304 values), ``malformed pixels`` (a value
that is not an integer 0-255).

:func:`read_votes` reads ``fer2013new.csv`` alone (studies of the real vote file); its
``raw_label`` and ``label`` are null -- derive labels with
:func:`curate.labels.ferplus_vote_targets`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate import labels
from curate.formats import (
    AnyPath,
    PathLike,
    as_path,
    concat_rejects,
    finish_annotations,
    first_reason,
    integer_text,
    read_lines,
    read_text,
    sha256_hex,
    split_line_fields,
    split_rejects,
)
from curate.formats.schema import FormatError, ParsedTables

DATASET = "ferplus"
FER2013_FILE = "fer2013.csv"
ICML_FILE = "icml_face_data.csv"
KAGGLE_TRAIN_FILE = "train.csv"
KAGGLE_TEST_FILE = "test.csv"
FERPLUS_FILE = "fer2013new.csv"
FER2013_COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")
ICML_COLUMNS: tuple[str, ...] = ("emotion", "Usage", "pixels")
KAGGLE_TRAIN_COLUMNS: tuple[str, ...] = ("emotion", "pixels")
#: ``test.csv`` as Kaggle ships it (no labels), or with the FER2013 labels added back.
KAGGLE_TEST_HEADERS: tuple[tuple[str, ...], ...] = (("pixels",), ("emotion", "pixels"))
FERPLUS_COLUMNS: tuple[str, ...] = ("Usage", "Image name", *labels.FERPLUS_VOTE_COLUMNS)
USAGE_TO_SPLIT: dict[str, str] = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SPLIT_TO_USAGE: dict[str, str] = {split: usage for usage, split in USAGE_TO_SPLIT.items()}
IMAGE_SIDE = 48
NUM_PIXELS = IMAGE_SIDE * IMAGE_SIDE
NUM_FER2013_LABELS = len(labels.FER2013_NAMES)

#: Reject reasons this module emits.
REASONS: tuple[str, ...] = (
    "malformed row",
    "unknown usage",
    "usage mismatch",
    "label out of range",
    "pixel count",
    "malformed pixels",
)

_LOG = logging.getLogger(__name__)
_VOTE_FIELDS = tuple(f"v{i}" for i in range(len(labels.FERPLUS_VOTE_COLUMNS)))


def _body(data: bytes, accepted: Sequence[Sequence[str]], relative: str) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """Data lines (``row_index`` 0-based, blank lines dropped) and which accepted header the file has.

    Header fields are compared after stripping blanks and quotes (``emotion, Usage, pixels``
    matches ``emotion,Usage,pixels``). Any other header is a :class:`FormatError`; so is a
    copy written without its header line (its first data row is not a header).
    """
    expected = " or ".join(",".join(header) for header in accepted)
    lines = read_lines(data)
    if lines.height == 0:
        raise FormatError(f"{relative}: empty file (expected the header {expected})")
    first = lines["line"][0] or ""
    fields = tuple(f.strip().strip('"').strip() for f in first.split(","))
    columns = next((tuple(header) for header in accepted if tuple(header) == fields), None)
    if columns is None:
        shown = first if len(first) <= 80 else first[:80] + "..."
        raise FormatError(f"{relative}: bad header {shown!r}; expected {expected}")
    body = lines.slice(1).filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))
    return body.with_row_index("row_index").with_columns(pl.col("row_index").cast(pl.Int64)), columns


def _parse_votes(data: bytes, relative: str) -> pl.DataFrame:
    """Typed columns of ``fer2013new.csv``: row_index, source_row, usage, image_name, votes, _bad, _detail."""
    body, _ = _body(data, [FERPLUS_COLUMNS], relative)
    frame = split_line_fields(body, ("Usage", "image_name", *_VOTE_FIELDS))
    frame = frame.with_columns(body["row_index"])
    votes = [integer_text(pl.col(v)) for v in _VOTE_FIELDS]
    wrong_count = pl.col("_n_sep") != len(FERPLUS_COLUMNS) - 1
    bad_vote = pl.any_horizontal(*(v.is_null() | (v < 0) for v in votes))
    return frame.select(
        "row_index",
        "source_row",
        pl.col("Usage").alias("usage"),
        pl.when(pl.col("image_name") != "").then(pl.col("image_name")).alias("image_name"),
        pl.when(~bad_vote).then(pl.concat_list(*votes).cast(pl.List(pl.Int16))).alias("votes"),
        (wrong_count | bad_vote).alias("_malformed"),
        pl.when(wrong_count)
        .then(pl.format("{} fields, expected {}", pl.col("_n_sep") + 1, pl.lit(len(FERPLUS_COLUMNS))))
        .otherwise(pl.lit("votes must be non-negative integers"))
        .alias("_malformed_detail"),
    )


def _parse_pixels_file(
    data: bytes, relative: str, accepted: Sequence[Sequence[str]] = (FER2013_COLUMNS,), *, first_row: int = 0
) -> pl.DataFrame:
    """Typed columns of one FER2013 pixel file (any accepted header, any column order).

    ``row_index`` counts from ``first_row`` (``test.csv`` continues ``train.csv``). A file
    without ``emotion`` gives null ``emotion`` (not a malformed row); one without ``Usage``
    gives null ``usage`` (the caller derives it from the row position).
    """
    body, columns = _body(data, accepted, relative)
    frame = split_line_fields(body, columns).with_columns(body["row_index"] + first_row)
    n_fields = len(columns)
    has_emotion = "emotion" in columns
    emotion = integer_text(pl.col("emotion")) if has_emotion else pl.lit(None, dtype=pl.Int64)
    wrong_count = pl.col("_n_sep") != n_fields - 1
    pixels = pl.col("pixels")
    n_values = pixels.str.count_matches(" ", literal=True) + 1
    empty_token = pixels.str.starts_with(" ") | pixels.str.ends_with(" ") | pixels.str.contains("  ", literal=True)
    # Any character but digits and spaces, or a number above 255 (tokens have at most 3 digits).
    bad_value = pixels.str.contains(r"[^0-9 ]|[0-9]{4}|25[6-9]|2[6-9][0-9]|[3-9][0-9][0-9]")
    return frame.select(
        "row_index",
        pl.lit(relative).alias("source_file"),
        "source_row",
        emotion.alias("emotion"),
        (pl.col("emotion") if has_emotion else pl.lit(None, dtype=pl.String)).alias("emotion_text"),
        (pl.col("Usage") if "Usage" in columns else pl.lit(None, dtype=pl.String)).alias("usage"),
        "pixels",
        (wrong_count | (emotion.is_null() if has_emotion else pl.lit(False))).alias("_malformed"),
        pl.when(wrong_count)
        .then(pl.format("{} fields, expected {}", pl.col("_n_sep") + 1, pl.lit(n_fields)))
        .otherwise(pl.format("emotion {}", pl.col("emotion") if has_emotion else pl.lit("")))
        .alias("_malformed_detail"),
        n_values.alias("_n_values"),
        (n_values != NUM_PIXELS).alias("_pixel_count_bad"),
        (empty_token | bad_value).fill_null(True).alias("_pixel_value_bad"),
    )


@dataclasses.dataclass(frozen=True)
class Fer2013Copy:
    """One way FER2013's 35,887 rows are shipped: its files, the headers each may have, its layout.

    ``headers`` has one entry per file (the headers that file may have). The rows of the
    files, read in order, are FER2013's rows in ``fer2013.csv`` order. A copy without a
    ``Usage`` column (:attr:`usage_by_position`) is two files: the Training rows, then the
    PublicTest and PrivateTest rows in two halves (:data:`KAGGLE_TEST_HALVES`).
    """

    name: str
    files: tuple[str, ...]
    headers: tuple[tuple[tuple[str, ...], ...], ...]

    @property
    def layout(self) -> str:
        return f"{self.name}+ferplus"

    @property
    def label(self) -> str:
        return " + ".join(self.files)

    @property
    def usage_by_position(self) -> bool:
        return not any("Usage" in header for accepted in self.headers for header in accepted)


#: The FER2013 copies the reader accepts, in priority order (the first one present is read).
COPIES: tuple[Fer2013Copy, ...] = (
    Fer2013Copy("fer2013", (FER2013_FILE,), ((FER2013_COLUMNS,),)),
    Fer2013Copy("icml_face_data", (ICML_FILE,), ((ICML_COLUMNS,),)),
    Fer2013Copy(
        "kaggle-train-test", (KAGGLE_TRAIN_FILE, KAGGLE_TEST_FILE), ((KAGGLE_TRAIN_COLUMNS,), KAGGLE_TEST_HEADERS)
    ),
)
COPIES_BY_NAME: dict[str, Fer2013Copy] = {copy.name: copy for copy in COPIES}
#: Usage of the second file of a copy without a Usage column (Kaggle's ``test.csv``): first half, second half.
KAGGLE_TEST_HALVES: tuple[str, str] = ("PublicTest", "PrivateTest")


def find_copy(root: AnyPath) -> Fer2013Copy:
    """The FER2013 copy in ``root`` (:data:`COPIES` order); :class:`FormatError` when there is none.

    When several copies are present the first is read, the others are ignored (never mixed),
    and a warning says so. Half of a two-file copy is an error naming the missing file.
    """
    present = {name: (root / name).exists() for copy in COPIES for name in copy.files}
    complete = [copy for copy in COPIES if all(present[name] for name in copy.files)]
    if not complete:
        for copy in COPIES:
            if any(present[name] for name in copy.files):
                have = next(name for name in copy.files if present[name])
                missing = next(name for name in copy.files if not present[name])
                raise FormatError(
                    f"{missing}: missing file (expected at {root / missing}); {have} alone is half of the "
                    f"Kaggle copy {copy.label}"
                )
        others = ", or ".join(copy.label for copy in COPIES[1:])
        raise FormatError(
            f"{FER2013_FILE}: missing file (expected at {root / FER2013_FILE}); no other FER2013 copy either ({others})"
        )
    chosen = complete[0]
    if len(complete) > 1:
        _LOG.warning(
            "%s: several FER2013 copies (%s); reading %s (priority %s), ignoring the others",
            root,
            "; ".join(copy.label for copy in complete),
            chosen.label,
            " > ".join(copy.label for copy in COPIES),
        )
    return chosen


def _parse_copy(copy: Fer2013Copy, blobs: dict[str, bytes]) -> pl.DataFrame:
    """Rows of every file of ``copy`` in order, ``row_index`` continuing across files, ``usage`` filled."""
    parts = []
    first_row = 0
    for name, accepted in zip(copy.files, copy.headers, strict=True):
        part = _parse_pixels_file(blobs[name], name, accepted, first_row=first_row)
        parts.append(part)
        first_row += part.height
    if copy.usage_by_position:  # the Training rows, then the two halves of the test rows
        train, test = parts
        position = pl.col("row_index") - train.height
        public, private = KAGGLE_TEST_HALVES
        parts = [
            train.with_columns(pl.lit(SPLIT_TO_USAGE["train"]).alias("usage")),
            test.with_columns(
                pl.when(position * 2 < test.height).then(pl.lit(public)).otherwise(pl.lit(private)).alias("usage")
            ),
        ]
    return pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]


def check_alignment(copy: Fer2013Copy, pixels: pl.DataFrame, votes: pl.DataFrame) -> None:
    """Refuse a copy and a vote file that are not aligned row by row (one-line :class:`FormatError`).

    FER+ votes belong to a pixel row by position only, so the row counts must be equal and
    the Usage of every row must agree wherever both files give a valid one (``train.csv`` +
    ``test.csv`` give it by position). A lost, added or moved row shifts every row after it;
    at the first Training / PublicTest / PrivateTest boundary after it the two Usage columns
    disagree, which is the row the message names.
    """
    known = list(USAGE_TO_SPLIT)
    paired = pixels.select("row_index", "source_file", "source_row", "usage").join(
        votes.select("row_index", pl.col("source_row").alias("votes_row"), pl.col("usage").alias("votes_usage")),
        on="row_index",
        how="inner",
        maintain_order="left",  # head(1) below is the first differing row
    )
    differ = paired.filter(
        pl.col("usage").is_in(known) & pl.col("votes_usage").is_in(known) & (pl.col("usage") != pl.col("votes_usage"))
    ).head(1)
    if pixels.height == votes.height and differ.is_empty():
        return
    by_position = " (by position)" if copy.usage_by_position else ""
    if pixels.height == votes.height:
        counts = f"{pixels.height} data rows each"
    else:
        counts = f"{pixels.height} data rows in {copy.label} but {votes.height} in {FERPLUS_FILE}"
    if differ.is_empty():
        where = f"Usage agrees on the first {min(pixels.height, votes.height)} rows"
    else:
        row = differ.row(0, named=True)
        where = (
            f"Usage first differs at data row {row['row_index']}: {row['source_file']} line {row['source_row']} "
            f"{row['usage']}{by_position}, {FERPLUS_FILE} line {row['votes_row']} {row['votes_usage']}"
        )
    raise FormatError(
        f"{copy.label} and {FERPLUS_FILE} are not aligned: {counts}; {where}; "
        "FER+ votes are matched to pixel rows by order, so the files must be aligned row by row"
    )


def read(manual_dir: PathLike, *, with_pixels: bool = False) -> ParsedTables:
    """Read a FER2013 copy + ``fer2013new.csv`` from a FERPlus manual dir.

    Parameters
    ----------
    manual_dir : path
        Folder holding ``fer2013new.csv`` and one FER2013 copy (:data:`COPIES`): a local
        path or a ``gs://``-style URI / ``epath.Path``.
    with_pixels : bool
        Add the ``pixels`` text column (the image data) to the annotations.

    Returns
    -------
    ParsedTables
        Layout ``<copy>+ferplus`` (``fer2013+ferplus``, ``icml_face_data+ferplus`` or
        ``kaggle-train-test+ferplus``); extras ``image_name`` (and ``pixels``).

    Raises
    ------
    FormatError
        No FER2013 copy or no ``fer2013new.csv``, a bad header, or a copy not aligned with
        the votes (:func:`check_alignment`).
    """
    root = as_path(manual_dir)
    copy = find_copy(root)
    names = (*copy.files, FERPLUS_FILE)
    blobs = {name: read_text(root / name, name) for name in names}
    with ThreadPoolExecutor(max_workers=1) as pool:
        digests = {name: pool.submit(sha256_hex, blob) for name, blob in blobs.items()}
        pixels = _parse_copy(copy, blobs)
        votes = _parse_votes(blobs[FERPLUS_FILE], FERPLUS_FILE)
        files = {name: future.result() for name, future in digests.items()}
    del blobs
    check_alignment(copy, pixels, votes)
    frame = pixels.join(
        votes.rename(
            {
                "source_row": "votes_row",
                "usage": "votes_usage",
                "_malformed": "_votes_malformed",
                "_malformed_detail": "_votes_malformed_detail",
            }
        ),
        on="row_index",
        how="left",
        maintain_order="left",
    )
    usage_known = pl.col("usage").is_in(list(USAGE_TO_SPLIT))
    reason, detail = first_reason(
        [
            (pl.col("_malformed"), "malformed row", pl.col("_malformed_detail")),
            (pl.col("_votes_malformed"), "malformed row", pl.col("_votes_malformed_detail")),
            (~usage_known, "unknown usage", pl.col("usage")),
            (
                pl.col("usage") != pl.col("votes_usage"),
                "usage mismatch",
                pl.format("{} has {}, {} has {}", "source_file", "usage", pl.lit(FERPLUS_FILE), "votes_usage"),
            ),
            (
                (pl.col("emotion") < 0) | (pl.col("emotion") >= NUM_FER2013_LABELS),
                "label out of range",
                pl.col("emotion_text"),
            ),
            (
                pl.col("_pixel_count_bad"),
                "pixel count",
                pl.format("{} values, expected {}", "_n_values", pl.lit(NUM_PIXELS)),
            ),
            (pl.col("_pixel_value_bad"), "malformed pixels", pl.lit("values must be integers 0-255")),
        ]
    )
    in_votes_file = pl.col("_votes_malformed") & ~pl.col("_malformed") | (
        usage_known & (pl.col("usage") != pl.col("votes_usage")) & ~pl.col("_malformed")
    )
    frame = frame.with_columns(reason, detail).with_columns(
        pl.format("fer{}", pl.col("row_index").cast(pl.String).str.zfill(7)).alias("id"),
        pl.lit(DATASET).alias("dataset"),
        pl.col("usage").replace_strict(USAGE_TO_SPLIT, default=None).alias("split"),
        pl.when(pl.col("_reason").is_not_null() & in_votes_file)
        .then(pl.lit(FERPLUS_FILE))
        .otherwise(pl.col("source_file"))
        .alias("source_file"),
        pl.when(pl.col("_reason").is_not_null() & in_votes_file)
        .then(pl.col("votes_row"))
        .otherwise(pl.col("source_row"))
        .alias("source_row"),
        pl.col("emotion").alias("raw_label"),
        pl.col("emotion")
        .replace_strict(list(range(NUM_FER2013_LABELS)), list(labels.FER2013_TO_CANONICAL), default=None)
        .alias("label"),
    )
    kept, rejects = split_rejects(frame, DATASET)
    extras = ["image_name", *(["pixels"] if with_pixels else [])]
    return ParsedTables(finish_annotations(kept, extras), concat_rejects([rejects]), files, copy.layout)


def read_votes(path: PathLike) -> ParsedTables:
    """Read a ``fer2013new.csv`` alone (e.g. the real FER+ vote file; local path or URI).

    ``raw_label`` / ``label`` are null; rejects are ``malformed row`` and ``unknown usage``.
    ``source_file`` is the file name.
    """
    path = as_path(path)
    data = read_text(path, path.name)
    votes = _parse_votes(data, path.name)
    reason, detail = first_reason(
        [
            (pl.col("_malformed"), "malformed row", pl.col("_malformed_detail")),
            (~pl.col("usage").is_in(list(USAGE_TO_SPLIT)), "unknown usage", pl.col("usage")),
        ]
    )
    frame = votes.with_columns(reason, detail).with_columns(
        pl.format("fer{}", pl.col("row_index").cast(pl.String).str.zfill(7)).alias("id"),
        pl.lit(DATASET).alias("dataset"),
        pl.col("usage").replace_strict(USAGE_TO_SPLIT, default=None).alias("split"),
        pl.lit(path.name).alias("source_file"),
    )
    kept, rejects = split_rejects(frame, DATASET)
    return ParsedTables(
        finish_annotations(kept, ["image_name"]),
        concat_rejects([rejects]),
        {path.name: sha256_hex(data)},
        "ferplus-votes",
    )


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------

_TOKEN_BYTES = np.zeros((256, 4), dtype=np.uint8)
_TOKEN_LENGTHS = np.zeros(256, dtype=np.int64)
for _value in range(256):
    _token = f"{_value} ".encode()
    _TOKEN_BYTES[_value, : len(_token)] = np.frombuffer(_token, dtype=np.uint8)
    _TOKEN_LENGTHS[_value] = len(_token)
del _value, _token


def pixels_to_text(pixels: Any, *, chunk_rows: int = 4096) -> pl.Series:
    """``(n, 48, 48)`` or ``(n, 2304)`` uint8 images -> ``n`` space-separated pixel strings.

    Vectorised: each value's digits come from a lookup table and a mask drops the padding.
    """
    import pyarrow as pa

    array = np.asarray(pixels, dtype=np.uint8).reshape(len(pixels), -1)
    parts = []
    for start in range(0, len(array), chunk_rows):
        block = array[start : start + chunk_rows]
        lengths = _TOKEN_LENGTHS[block]
        lengths[:, -1] -= 1  # no space after the last value
        keep = np.arange(4) < lengths[..., None]
        data = _TOKEN_BYTES[block][keep]
        offsets = np.zeros(len(block) + 1, dtype=np.int64)
        np.cumsum(lengths.sum(axis=1), out=offsets[1:])
        strings = pa.LargeStringArray.from_buffers(len(block), pa.py_buffer(offsets), pa.py_buffer(data.tobytes()))
        parts.append(pl.Series("pixels", strings, dtype=pl.String))
    if not parts:
        return pl.Series("pixels", [], dtype=pl.String)
    return pl.concat(parts)


def pixel_column(pixels: Any) -> pl.Series:
    """The ``pixels`` text column from a uint8 image array, pixel strings, or a String Series."""
    if isinstance(pixels, pl.Series) and pixels.dtype == pl.String:
        return pixels.alias("pixels")
    if isinstance(pixels, np.ndarray):
        return pixels_to_text(pixels)
    return pl.Series("pixels", list(pixels), dtype=pl.String)


def write_fer2013(path: str | Path, emotion: Any, pixels: Any, usage: Sequence[str]) -> Path:
    """Write ``fer2013.csv``; ``pixels`` is a uint8 image array or a sequence of pixel strings."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame(
        {
            "emotion": pl.Series(np.asarray(emotion, dtype=np.int64)),
            "pixels": pixel_column(pixels),
            "Usage": pl.Series(list(usage), dtype=pl.String),
        }
    )
    frame.write_csv(path, quote_style="never", line_terminator="\n")
    return path


def write_fer2013_copy(out: str | Path, copy: str, emotion: Any, pixels: Any, usage: Sequence[str]) -> list[Path]:
    """Write FER2013 rows into the folder ``out`` as the copy ``copy`` (a :data:`COPIES` name).

    ``fer2013`` writes ``fer2013.csv`` (:func:`write_fer2013`); ``icml_face_data`` writes
    ``icml_face_data.csv`` with Kaggle's header ``emotion, Usage, pixels``;
    ``kaggle-train-test`` writes ``train.csv`` (``emotion,pixels``: the Training rows) and
    ``test.csv`` (``pixels`` only, as Kaggle ships it: the PublicTest then the PrivateTest
    rows), which needs the rows in that order with two halves of equal size. Returns the
    files written; :class:`ValueError` for an unknown copy or rows the copy cannot hold.
    """
    if copy not in COPIES_BY_NAME:
        raise ValueError(f"unknown FER2013 copy {copy!r}; expected one of {', '.join(COPIES_BY_NAME)}")
    out = Path(out)
    if copy == "fer2013":
        return [write_fer2013(out / FER2013_FILE, emotion, pixels, usage)]
    out.mkdir(parents=True, exist_ok=True)
    text = pixel_column(pixels)
    frame = pl.DataFrame(
        {
            "emotion": pl.Series(np.asarray(emotion, dtype=np.int64)),
            "Usage": pl.Series(list(usage), dtype=pl.String),
            "pixels": text,
        }
    )
    options: dict[str, Any] = {"quote_style": "never", "line_terminator": "\n"}
    if copy == "icml_face_data":
        path = out / ICML_FILE
        frame.rename({"Usage": " Usage", "pixels": " pixels"}).write_csv(path, **options)
        return [path]
    n_train = int((frame["Usage"] == "Training").sum())
    n_half = (frame.height - n_train) // 2
    order = ["Training"] * n_train + list(KAGGLE_TEST_HALVES[:1]) * n_half + list(KAGGLE_TEST_HALVES[1:]) * n_half
    if frame["Usage"].to_list() != order:
        raise ValueError(
            "train.csv + test.csv hold the Training rows, then PublicTest, then PrivateTest rows in two halves "
            "of equal size; these rows are not in that order"
        )
    train_path, test_path = out / KAGGLE_TRAIN_FILE, out / KAGGLE_TEST_FILE
    frame.head(n_train).select("emotion", "pixels").write_csv(train_path, **options)
    frame.slice(n_train).select("pixels").write_csv(test_path, **options)
    return [train_path, test_path]


def write_ferplus_votes(path: str | Path, usage: Sequence[str], image_names: Sequence[str | None], votes: Any) -> Path:
    """Write ``fer2013new.csv`` (empty ``Image name`` for ``None`` / ``""``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    votes = np.asarray(votes, dtype=np.int64)
    columns: dict[str, Any] = {
        "Usage": pl.Series(list(usage), dtype=pl.String),
        "Image name": pl.Series([name or "" for name in image_names], dtype=pl.String),
    }
    for j, name in enumerate(labels.FERPLUS_VOTE_COLUMNS):
        columns[name] = votes[:, j]
    pl.DataFrame(columns).write_csv(path, quote_style="never", line_terminator="\n")
    return path


def image_name(row_index: int) -> str:
    """FER+ image name of a data row (``fer0000000.png``)."""
    return f"fer{row_index:07d}.png"
