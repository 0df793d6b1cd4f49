"""RAF-DB copies people hold: the table of copies, and the folder-per-label reader and writer.

Copies (:data:`LAYOUTS`; :func:`curate.formats.rafdb.detect_layout` tells them apart, per copy
and never per row)
-----------------------------------------------------------------------------------------
* ``basic`` -- the release as distributed: ``basic/`` with the label list, aligned and
  original images and the three annotation folders.
* ``basic-aligned-only`` -- the same without ``basic/Image/original/`` (absent or empty):
  every annotation but the original photograph, so the face box cannot be normalised.
* ``basic-labels-only`` -- ``basic/`` without ``basic/Annotation/``: label list and aligned
  faces only (an original folder, if any, is not read: there is no box to normalise).
* ``folder-per-label`` -- ``<split>/<1-7>/<stem>_aligned.jpg`` (split ``train`` / ``test``,
  the folder is the RAF label 1-7), optionally with ``<split>_labels.csv`` (header
  ``image,label``; ``train_00001_aligned.jpg,5`` -- ``train_00001.jpg`` is accepted too):
  the aligned faces and labels, no annotations.

Folder-per-label rows
---------------------
An input row is a CSV row, an image file, or a CSV row and the image it names (one row).
Ids are the file stems (``train_00001``), as in the ``basic`` copies. A row read from the
CSV has ``source_file`` = the CSV and ``source_row`` = its line (header = line 1); an image
no CSV row names has ``source_file`` = the image path and ``source_row`` 0. Hidden entries
(names starting with ``.``) are not rows. Each split folder's sorted listing is hashed into
``files`` under ``<split>/`` (the labels live in it), each CSV under its name.

Reject reasons, first failing check wins: ``malformed row`` (a CSV row that is not
``<image>,<integer>`` with an image name ``<split>_<digits>[_aligned].jpg``), ``malformed
file name`` (an image not named ``<split>_<digits>_aligned.jpg``), ``not in a label folder``
(a file directly in ``<split>/``), ``wrong split`` (a ``test_`` name under ``train`` or the
reverse: kept out, since test images in training is the classic leak), ``label out of
range`` (a CSV label or a label folder outside 1-7), ``duplicate id`` (a CSV row naming an
image again, or, without a CSV, the same stem in a second label folder: the first is kept),
``missing image file`` (a CSV row whose image is in no label folder of its split), ``not in
label list`` (an image its split's CSV does not name). A CSV row and its image that give
two different labels stop the read with a :class:`FormatError` naming the CSV, the row and
both labels: one of the two sources is wrong and nothing tells which.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate import labels
from curate.formats import (
    AnyPath,
    FormatError,
    ParsedTables,
    concat_rejects,
    finish_annotations,
    first_reason,
    integer_text,
    list_names,
    read_lines,
    read_optional,
    sha256_hex,
    split_line_fields,
    split_rejects,
)

DATASET = "rafdb"


@dataclasses.dataclass(frozen=True)
class Copy:
    """One kind of RAF-DB copy and what a build can take from it."""

    layout: str
    #: Original photographs are read: their size normalises the face box.
    has_original: bool
    #: ``Annotation/`` files: face box (original pixels), 5 + 37 landmarks, attributes.
    has_annotations: bool
    summary: str


LAYOUTS: dict[str, Copy] = {
    copy.layout: copy
    for copy in (
        Copy("basic", True, True, "label list, aligned and original images, annotation files"),
        Copy("basic-aligned-only", False, True, "label list, aligned images, annotation files; no original images"),
        Copy("basic-labels-only", False, False, "label list and aligned images; no Annotation/ folder"),
        Copy("folder-per-label", False, False, "<split>/<1-7>/<stem>_aligned.jpg, optional <split>_labels.csv"),
    )
}

FOLDER_SPLITS: tuple[str, ...] = ("train", "test")
LABEL_FOLDERS: tuple[str, ...] = tuple(str(i) for i in range(1, len(labels.RAFDB_NAMES) + 1))
CSV_COLUMNS: tuple[str, ...] = ("image", "label")

#: Reject reasons of the folder-per-label reader.
FOLDER_REASONS: tuple[str, ...] = (
    "malformed row",
    "malformed file name",
    "not in a label folder",
    "wrong split",
    "label out of range",
    "duplicate id",
    "missing image file",
    "not in label list",
)

_IMAGE_PATTERN = r"^((train|test)_[0-9]+)_aligned\.jpg$"
_CSV_IMAGE_PATTERN = r"^((train|test)_[0-9]+)(?:_aligned)?\.jpg$"
#: Extra columns of every RAF-DB copy (null where the copy has no annotation files).
EXTRA_COLUMNS: dict[str, Any] = {
    "gender": pl.Int8,
    "race": pl.Int8,
    "age_group": pl.Int8,
    "landmarks_auto": pl.List(pl.Float32),
}


def canonical_label(raw_label: pl.Expr) -> pl.Expr:
    """RAF label 1-7 -> canonical label (:data:`curate.labels.RAFDB_TO_CANONICAL`); null outside 1-7."""
    canonical = list(labels.RAFDB_TO_CANONICAL)
    return raw_label.replace_strict(list(range(1, len(canonical) + 1)), canonical, default=None)


def labels_csv(split: str) -> str:
    """The optional label list of a split, relative to the manual dir."""
    return f"{split}_labels.csv"


def folder_image_path(split: str, raw_label: int, stem: str) -> str:
    return f"{split}/{raw_label}/{stem}_aligned.jpg"


def label_folder_splits(root: AnyPath) -> list[str]:
    """The splits of ``root`` that hold at least one label folder ``<split>/<1-7>/``."""
    return [s for s in FOLDER_SPLITS if any((root / s / label).is_dir() for label in LABEL_FOLDERS)]


def read_folder_per_label(root: AnyPath) -> ParsedTables:
    """Read a folder-per-label copy (``<split>/<1-7>/<stem>_aligned.jpg`` + optional CSVs)."""
    files: dict[str, str] = {}
    image_parts, csv_parts, with_csv = [], [], []
    for split in FOLDER_SPLITS:
        if not (root / split).is_dir():
            continue
        listing = _list_split(root, split)
        files[f"{split}/"] = sha256_hex("\n".join(sorted(listing["source_path"].to_list())).encode())
        image_parts.append(listing)
        data = read_optional(root, labels_csv(split))
        if data is not None:
            files[labels_csv(split)] = sha256_hex(data)
            csv_parts.append(_parse_csv(data, split))
            with_csv.append(split)
    images = _check_images(pl.concat(image_parts), with_csv)
    no_csv = _parse_csv(b"image,label\n", FOLDER_SPLITS[0])  # an empty table of the same columns
    csv = _check_csv(pl.concat(csv_parts) if csv_parts else no_csv)
    # A CSV row and the image it names become one row; the rest stay alone.
    csv_columns = ["split", "id", "source_file", "source_row", "_image_text", "_csv_label"]
    image_columns = ["split", "id", "source_path", "_folder_label"]
    matched = (
        csv.filter(pl.col("_reason").is_null())
        .select(csv_columns)
        .join(
            images.filter(pl.col("_reason").is_null() & pl.col("split").is_in(with_csv)).select(image_columns),
            on=["split", "id"],
            how="full",
            coalesce=True,
            maintain_order="left_right",
        )
    )
    _raise_on_disagreement(matched)
    reason, detail = first_reason(
        [
            (
                pl.col("source_path").is_null(),
                "missing image file",
                pl.format("no {}/<1-7>/{}_aligned.jpg in the label folders", "split", "id"),
            ),
            (
                pl.col("source_file").is_null(),
                "not in label list",
                pl.format("{}_labels.csv does not name it", "split"),
            ),
        ]
    )
    matched = matched.with_columns(reason, detail)
    alone = pl.concat(
        [
            csv.filter(pl.col("_reason").is_not_null()),
            images.filter(pl.col("_reason").is_not_null() | ~pl.col("split").is_in(with_csv)),
        ],
        how="diagonal_relaxed",
    )
    frame = pl.concat([matched, alone], how="diagonal_relaxed").with_columns(
        pl.col("source_file").fill_null(pl.col("source_path")),
        pl.col("source_row").fill_null(0),
        pl.coalesce("_csv_label", "_folder_label").alias("raw_label"),
    )
    frame = frame.with_columns(
        pl.lit(DATASET).alias("dataset"),
        canonical_label(pl.col("raw_label")).alias("label"),
        *(pl.lit(None, dtype=dtype).alias(name) for name, dtype in EXTRA_COLUMNS.items()),
    )
    kept, rejects = split_rejects(frame, DATASET)
    kept = kept.sort("split", "source_file", "source_row", "source_path", maintain_order=True)
    annotations = finish_annotations(kept, list(EXTRA_COLUMNS))
    return ParsedTables(annotations, concat_rejects([rejects]), dict(sorted(files.items())), "folder-per-label")


def _list_split(root: AnyPath, split: str) -> pl.DataFrame:
    """``split``, ``_folder`` (null for a file directly in ``<split>/``), ``_name``, ``source_path``."""
    folders, names = [], []
    for entry in list_names(root / split):
        if entry.startswith("."):
            continue
        if (root / split / entry).is_dir():
            inside = [name for name in list_names(root / split / entry) if not name.startswith(".")]
            folders += [entry] * len(inside)
            names += inside
        else:
            folders.append(None)
            names.append(entry)
    frame = pl.DataFrame({"_folder": pl.Series(folders, dtype=pl.String), "_name": pl.Series(names, dtype=pl.String)})
    return frame.select(
        pl.lit(split).alias("split"),
        "_folder",
        "_name",
        pl.concat_str(pl.lit(split), "_folder", "_name", separator="/", ignore_nulls=True).alias("source_path"),
    )


def _check_images(images: pl.DataFrame, with_csv: list[str]) -> pl.DataFrame:
    """Image rows with ``id``, ``_folder_label`` and the image checks as ``_reason`` / ``_detail``."""
    images = images.with_columns(
        pl.col("_name").str.extract(_IMAGE_PATTERN, 1).alias("id"),
        pl.col("_name").str.extract(_IMAGE_PATTERN, 2).alias("_prefix"),
        pl.col("_folder").cast(pl.Int64, strict=False).alias("_folder_label"),
    )
    malformed = pl.col("id").is_null()
    loose = pl.col("_folder").is_null()
    wrong_split = pl.col("_prefix") != pl.col("split")
    out_of_range = ~pl.col("_folder_label").is_between(1, len(labels.RAFDB_NAMES)).fill_null(False)
    early_ok = ~(malformed | loose | wrong_split | out_of_range).fill_null(True)
    # Without a CSV the folder alone labels an image: a stem in a second folder is a duplicate.
    # With one, both copies meet the CSV row and the one that disagrees stops the read.
    images = images.sort("source_path").with_columns(
        (early_ok & ~pl.col("split").is_in(with_csv) & ~pl.col("id").is_first_distinct().over(early_ok)).alias(
            "_duplicate"
        )
    )
    first = images.filter(early_ok).group_by("id").agg(pl.col("source_path").first().alias("_first_path"))
    images = images.join(first, on="id", how="left", maintain_order="left")
    reason, detail = first_reason(
        [
            (malformed, "malformed file name", pl.format("{}: expected <split>_<digits>_aligned.jpg", "source_path")),
            (loose, "not in a label folder", pl.format("{}: expected {}/<1-7>/<name>", "source_path", "split")),
            (wrong_split, "wrong split", pl.format("{} under {}/", "_name", "split")),
            (out_of_range, "label out of range", pl.format("label folder {}/{}/", "split", "_folder")),
            (pl.col("_duplicate"), "duplicate id", pl.format("also at {}", "_first_path")),
        ]
    )
    return images.with_columns(reason, detail)


def _parse_csv(data: bytes, split: str) -> pl.DataFrame:
    """Rows of ``<split>_labels.csv``: ``source_row``, ``_image_text``, ``_label_text``, ``id``, ..."""
    relative = labels_csv(split)
    lines = read_lines(data)
    header = lines["line"][0] if lines.height else None
    fields = tuple(f.strip().strip('"').lower() for f in (header or "").split(","))
    if fields != CSV_COLUMNS:
        raise FormatError(f"{relative}:1: bad header {header!r}; expected {','.join(CSV_COLUMNS)}")
    body = lines.slice(1).filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))
    rows = split_line_fields(body, ["_image_text", "_label_text"]) if body.height else None
    if rows is None:
        rows = pl.DataFrame(
            schema={"source_row": pl.Int64, "_n_sep": pl.UInt32, "_image_text": pl.String, "_label_text": pl.String}
        )
    return rows.with_columns(
        pl.lit(split).alias("split"),
        pl.lit(relative).alias("source_file"),
        pl.col("_image_text").str.strip_chars().alias("_image_text"),
        pl.col("_label_text").str.strip_chars().alias("_label_text"),
    )


def _check_csv(rows: pl.DataFrame) -> pl.DataFrame:
    """CSV rows with ``id``, ``_csv_label`` and the CSV checks as ``_reason`` / ``_detail``."""
    rows = rows.with_columns(
        pl.col("_image_text").str.extract(_CSV_IMAGE_PATTERN, 1).alias("id"),
        pl.col("_image_text").str.extract(_CSV_IMAGE_PATTERN, 2).alias("_prefix"),
        integer_text(pl.col("_label_text")).alias("_csv_label"),
    )
    malformed = (pl.col("_n_sep") != 1) | pl.col("id").is_null() | pl.col("_csv_label").is_null()
    wrong_split = pl.col("_prefix") != pl.col("split")
    out_of_range = ~pl.col("_csv_label").is_between(1, len(labels.RAFDB_NAMES))
    early_ok = ~(malformed | wrong_split | out_of_range).fill_null(True)
    rows = rows.with_columns((early_ok & ~pl.col("id").is_first_distinct().over(early_ok)).alias("_duplicate"))
    first = (
        rows.filter(early_ok)
        .group_by("id")
        .agg(pl.format("{}:{}", "source_file", "source_row").first().alias("_first_row"))
    )
    rows = rows.join(first, on="id", how="left", maintain_order="left")
    reason, detail = first_reason(
        [
            (malformed, "malformed row", pl.format("{},{}", "_image_text", "_label_text")),
            (wrong_split, "wrong split", pl.format("{} in {}", "_image_text", "source_file")),
            (out_of_range, "label out of range", pl.col("_label_text")),
            (pl.col("_duplicate"), "duplicate id", pl.format("first listed at {}", "_first_row")),
        ]
    )
    return rows.with_columns(reason, detail).drop("_prefix")


def _raise_on_disagreement(matched: pl.DataFrame) -> None:
    both = matched.filter(
        pl.col("source_file").is_not_null()
        & pl.col("source_path").is_not_null()
        & (pl.col("_csv_label") != pl.col("_folder_label"))
    )
    if both.height:
        row = both.row(0, named=True)
        more = f" ({both.height - 1} more such rows)" if both.height > 1 else ""
        raise FormatError(
            f"{row['source_file']}:{row['source_row']}: {row['_image_text']} has label {row['_csv_label']} in the "
            f"CSV but lies in {row['source_path']} (label folder {row['_folder_label']}){more}; "
            "fix the CSV or move the image"
        )


# --------------------------------------------------------------------------------------
# Writer (used by curate.synth and the tests; round-trips with read_folder_per_label)
# --------------------------------------------------------------------------------------


def write_labels_csv(manual_dir: str | Path, split: str, stems: list[str], raw_labels: Any) -> Path:
    """Write ``<split>_labels.csv`` (``image,label``; ``<stem>_aligned.jpg,<1-7>``) in the given order."""
    path = Path(manual_dir) / labels_csv(split)
    raw = np.asarray(raw_labels, dtype=np.int64).tolist()
    body = "".join(f"{stem}_aligned.jpg,{label}\n" for stem, label in zip(stems, raw, strict=True))
    path.write_text(",".join(CSV_COLUMNS) + "\n" + body, encoding="ascii")
    return path
