"""FERPlus: ``fer2013.csv`` (pixels + FER2013 label) aligned with ``fer2013new.csv`` (FER+ votes).

Layout
------
The manual dir holds both files side by side:

* ``fer2013.csv``: header ``emotion,pixels,Usage``; ``pixels`` is 2,304 space-separated
  0-255 values (48x48 grey); ``emotion`` is the FER2013 code 0-6; ``Usage`` is
  ``Training`` / ``PublicTest`` / ``PrivateTest`` -> split ``train`` / ``validation`` /
  ``test``.
* ``fer2013new.csv``: header ``Usage,Image name,neutral,...,NF``, ten votes per row, same
  row order as ``fer2013.csv``. An empty ``Image name`` marks an image the annotators
  rejected; such rows are kept (their votes say NF).

Both files are required and must have the same number of data rows (otherwise
:class:`FormatError`). Ids are ``fer<7-digit data-row index>`` (0-based, as the FER+ image
names ``fer0000000.png``). ``raw_label`` is the FER2013 ``emotion``; ``label`` its canonical
label (:data:`curate.labels.FER2013_TO_CANONICAL`); ``votes`` the ten votes in
:data:`curate.labels.FERPLUS_VOTE_COLUMNS` order. Extra column ``image_name`` (null when
empty); with ``read(..., with_pixels=True)`` also ``pixels`` (the text as written).

Reject reasons, first failing check wins: ``malformed row`` (field count or an unparsable
emotion / vote, or a negative vote; ``source_file`` says which file), ``unknown usage``,
``usage mismatch`` (the two files disagree on the row's Usage), ``label out of range``
(emotion outside 0-6), ``pixel count`` (not 2,304 values), ``malformed pixels`` (a value
that is not an integer 0-255).

:func:`read_votes` reads ``fer2013new.csv`` alone (studies of the real vote file); its
``raw_label`` and ``label`` are null -- derive labels with
:func:`curate.labels.ferplus_vote_targets`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate import labels
from curate.formats import (
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
FERPLUS_FILE = "fer2013new.csv"
FER2013_COLUMNS: tuple[str, ...] = ("emotion", "pixels", "Usage")
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

_VOTE_FIELDS = tuple(f"v{i}" for i in range(len(labels.FERPLUS_VOTE_COLUMNS)))


def _check_header(line: str | None, expected: Sequence[str], relative: str) -> None:
    fields = tuple(f.strip().strip('"') for f in (line or "").split(","))
    if fields != tuple(expected):
        raise FormatError(f"{relative}: bad header {line!r}; expected {','.join(expected)}")


def _body(data: bytes, expected: Sequence[str], relative: str) -> pl.DataFrame:
    lines = read_lines(data)
    if lines.height == 0:
        raise FormatError(f"{relative}: empty file (expected the header {','.join(expected)})")
    _check_header(lines["line"][0], expected, relative)
    body = lines.slice(1).filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))
    return body.with_row_index("row_index").with_columns(pl.col("row_index").cast(pl.Int64))


def _parse_votes(data: bytes, relative: str) -> pl.DataFrame:
    """Typed columns of ``fer2013new.csv``: row_index, source_row, usage, image_name, votes, _bad, _detail."""
    body = _body(data, FERPLUS_COLUMNS, relative)
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


def _parse_pixels_file(data: bytes, relative: str) -> pl.DataFrame:
    body = _body(data, FER2013_COLUMNS, relative)
    frame = split_line_fields(body, FER2013_COLUMNS).with_columns(body["row_index"])
    pixels = pl.col("pixels")
    n_values = pixels.str.count_matches(" ", literal=True) + 1
    empty_token = pixels.str.starts_with(" ") | pixels.str.ends_with(" ") | pixels.str.contains("  ", literal=True)
    # Any character but digits and spaces, or a number above 255 (tokens have at most 3 digits).
    bad_value = pixels.str.contains(r"[^0-9 ]|[0-9]{4}|25[6-9]|2[6-9][0-9]|[3-9][0-9][0-9]")
    return frame.select(
        "row_index",
        "source_row",
        integer_text(pl.col("emotion")).alias("emotion"),
        pl.col("emotion").alias("emotion_text"),
        pl.col("Usage").alias("usage"),
        "pixels",
        ((pl.col("_n_sep") != len(FER2013_COLUMNS) - 1) | integer_text(pl.col("emotion")).is_null()).alias(
            "_malformed"
        ),
        pl.when(pl.col("_n_sep") != len(FER2013_COLUMNS) - 1)
        .then(pl.format("{} fields, expected {}", pl.col("_n_sep") + 1, pl.lit(len(FER2013_COLUMNS))))
        .otherwise(pl.format("emotion {}", pl.col("emotion")))
        .alias("_malformed_detail"),
        n_values.alias("_n_values"),
        (n_values != NUM_PIXELS).alias("_pixel_count_bad"),
        (empty_token | bad_value).fill_null(True).alias("_pixel_value_bad"),
    )


def read(manual_dir: PathLike, *, with_pixels: bool = False) -> ParsedTables:
    """Read ``fer2013.csv`` + ``fer2013new.csv`` from a FERPlus manual dir.

    Parameters
    ----------
    manual_dir : path
        Folder holding both files: a local path or a ``gs://``-style URI / ``epath.Path``.
    with_pixels : bool
        Add the ``pixels`` text column (the image data) to the annotations.

    Returns
    -------
    ParsedTables
        Layout ``fer2013+ferplus``; extras ``image_name`` (and ``pixels``).
    """
    root = as_path(manual_dir)
    blobs = {name: read_text(root / name, name) for name in (FER2013_FILE, FERPLUS_FILE)}
    with ThreadPoolExecutor(max_workers=1) as pool:
        digests = {name: pool.submit(sha256_hex, blob) for name, blob in blobs.items()}
        pixels = _parse_pixels_file(blobs[FER2013_FILE], FER2013_FILE)
        votes = _parse_votes(blobs[FERPLUS_FILE], FERPLUS_FILE)
        files = {name: future.result() for name, future in digests.items()}
    del blobs
    if pixels.height != votes.height:
        raise FormatError(
            f"{FERPLUS_FILE}: {votes.height} data rows but {FER2013_FILE} has {pixels.height}; "
            "the two files must be aligned row by row"
        )
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
                pl.format("{} has {}, {} has {}", pl.lit(FER2013_FILE), "usage", pl.lit(FERPLUS_FILE), "votes_usage"),
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
        .otherwise(pl.lit(FER2013_FILE))
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
    annotations = finish_annotations(kept.with_columns(pl.lit(FER2013_FILE).alias("source_file")), extras)
    return ParsedTables(annotations, concat_rejects([rejects]), files, "fer2013+ferplus")


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


def write_fer2013(path: str | Path, emotion: Any, pixels: Any, usage: Sequence[str]) -> Path:
    """Write ``fer2013.csv``; ``pixels`` is a uint8 image array or a sequence of pixel strings."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(pixels, pl.Series) and pixels.dtype == pl.String:
        text = pixels
    elif isinstance(pixels, np.ndarray):
        text = pixels_to_text(pixels)
    else:
        text = pl.Series("pixels", list(pixels), dtype=pl.String)
    frame = pl.DataFrame(
        {
            "emotion": pl.Series(np.asarray(emotion, dtype=np.int64)),
            "pixels": text,
            "Usage": pl.Series(list(usage), dtype=pl.String),
        }
    )
    frame.write_csv(path, quote_style="never", line_terminator="\n")
    return path


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
