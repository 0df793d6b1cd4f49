"""AffectNet: reader and writers of the two release layouts.

Layouts (see ``docs/datasets.md`` of the shared docs)
-----------------------------------------------------
``original``
    ``Manually_Annotated_file_lists/training.csv`` and ``validation.csv`` (header
    ``subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,
    valence,arousal``; the first name may be spelled ``#subDirectory_filePath``), images under
    ``Manually_Annotated_Images/<subDirectory_filePath>``. Split ``train`` / ``validation``.
    Ids are ``subDirectory_filePath`` as written.
``cropped`` ("AffectNet-8")
    ``train_set/`` and ``val_set/``, each with ``images/<n>.jpg`` and
    ``annotations/<n>_{exp,val,aro,lnd}.npy``. Ids are ``train_set/<n>`` / ``val_set/<n>``;
    ``source_row`` is 0 and ``source_file`` the ``_exp.npy`` file. No face box (null).

Read rules (each failing row becomes one reject; the first failing check names it)
--------------------------------------------------------------------------------
1. ``malformed row`` -- not 9 comma-separated fields, an empty id, an id with a stray double
   quote (broken quoting; the layout never quotes), or a number that does not parse or is
   not finite (box, expression, valence, arousal). Layout B: ``malformed annotation`` -- an
   ``.npy`` file that does not load or has the wrong size; ``missing annotation file`` -- an id
   lacking one of its four ``.npy`` files (also an image without annotations).
2. ``label out of range`` -- expression outside the canonical 0..10.
3. ``landmarks count`` -- landmarks not exactly 136 parseable numbers.
4. ``non-positive face box`` -- ``face_width <= 0`` or ``face_height <= 0``. The release has
   a few such rows; the builders crop from the box, so such rows are rejected rather than
   kept with an unusable box.
5. ``valence out of range`` / ``arousal out of range`` -- outside [-1, 1] and not the
   sentinel -2.
6. ``duplicate id`` -- an id already seen (earlier line or the other split); the first
   occurrence is kept.

Valence/arousal -2 is AffectNet's "not annotated": the value becomes null and
``va_annotated`` is False. The release uses it with labels 9 and 10 only, but a -2 on
another label is *kept* (the label is still usable; only valence/arousal are missing).
``va_annotated`` is True only when both values are annotated.

Readers never open images. Row numbers are 1-based lines of the file (header = line 1);
blank lines are skipped but counted.

Modules: this one holds :func:`read` / :func:`detect_layout`, the original-layout CSV parser
and its writers; :mod:`curate.formats.affectnet_cropped` the cropped layout's ``.npy``
reader and writer; :mod:`curate.formats.affectnet_rules` what both share (dataset name,
landmark count, valence/arousal sentinel checks).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
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
    check_utf8,
    check_wide_encoding,
    concat_rejects,
    finish_annotations,
    finite_number,
    first_reason,
    integer_text,
    is_uri,
    read_bytes,
    read_lines,
    sha256_hex,
    sha256_utf8_file,
    split_line_fields,
    strip_bom,
)
from curate.formats.affectnet_cropped import CROPPED_DIRS, _read_cropped
from curate.formats.affectnet_rules import DATASET, NUM_LANDMARK_VALUES, VA_SENTINEL, _va_bad, _va_columns
from curate.formats.schema import FormatError, ParsedTables, reject_frame

LISTS_DIR = "Manually_Annotated_file_lists"
IMAGES_DIR = "Manually_Annotated_Images"
#: Original layout: split -> annotation file relative to the manual dir.
ORIGINAL_FILES: dict[str, str] = {
    "train": f"{LISTS_DIR}/training.csv",
    "validation": f"{LISTS_DIR}/validation.csv",
}
COLUMNS: tuple[str, ...] = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
HEADER_SPELLINGS: tuple[str, ...] = ("subDirectory_filePath", "#subDirectory_filePath")

#: Reject reasons this module emits.
REASONS: tuple[str, ...] = (
    "malformed row",
    "malformed annotation",
    "missing annotation file",
    "label out of range",
    "landmarks count",
    "non-positive face box",
    "valence out of range",
    "arousal out of range",
    "duplicate id",
)

_FIELDS = (
    "id",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)


def detect_layout(manual_dir: PathLike) -> str:
    """``"original"`` or ``"cropped"``; :class:`FormatError` naming the expected paths if neither."""
    root = as_path(manual_dir)
    if (root / LISTS_DIR).is_dir():
        return "original"
    if any((root / d).is_dir() for d in CROPPED_DIRS.values()):
        return "cropped"
    raise FormatError(
        f"{root}: no AffectNet layout found; expected {ORIGINAL_FILES['train']} and "
        f"{ORIGINAL_FILES['validation']} (original release, images under {IMAGES_DIR}/) or "
        "train_set/{images,annotations}/ and val_set/{images,annotations}/ (cropped release)"
    )


def read(manual_dir: PathLike, *, layout: str | None = None) -> ParsedTables:
    """Read an AffectNet manual dir (layout auto-detected unless given).

    Parameters
    ----------
    manual_dir : path
        The folder holding the release as received.
    layout : {"original", "cropped"}, optional
        Force a layout instead of detecting it.

    Returns
    -------
    ParsedTables
        Annotations in the common schema (no extra columns), rejects, file digests, layout.
    """
    root = as_path(manual_dir)
    layout = layout or detect_layout(root)
    if layout == "original":
        return _read_original(root)
    if layout == "cropped":
        return _read_cropped(root)
    raise ValueError(f"unknown AffectNet layout {layout!r}; known: original, cropped")


# --------------------------------------------------------------------------------------
# Original layout
# --------------------------------------------------------------------------------------


def _check_header(line: str | None, relative: str) -> None:
    fields = [f.strip().strip('"') for f in (line or "").split(",")]
    if not fields or fields[0] not in HEADER_SPELLINGS or tuple(fields[1:]) != COLUMNS[1:]:
        raise FormatError(
            f"{relative}: bad header {line!r}; expected {','.join(COLUMNS)} "
            f"(first column may be spelled #subDirectory_filePath)"
        )


_NUMBERS = ("face_x", "face_y", "face_width", "face_height", "valence", "arousal")
_TYPED_SCHEMA: dict[str, Any] = {
    "source_row": pl.Int64,
    "id": pl.String,
    **{name: pl.Float32 for name in _NUMBERS},
    "expression": pl.Int64,
    "expression_text": pl.String,
    "landmarks": pl.List(pl.Float32),
    "_n_fields": pl.Int64,
    "_n_landmarks": pl.Int64,
}
_CAREFUL_SCHEMA: dict[str, Any] = {**_TYPED_SCHEMA, "_landmarks_ok": pl.Boolean}
# Fast path: the file read with ';' as separator. Column 0 is "id,x,y,w,h,lm0", columns
# 1..134 are landmark values (parsed as floats by the CSV reader), column 135 is
# "lm135,expression,valence,arousal" and column 136 catches surplus fields.
_LAST = f"c{NUM_LANDMARK_VALUES - 1}"
_SURPLUS = f"c{NUM_LANDMARK_VALUES}"
_WIDE_SCHEMA: dict[str, Any] = {
    "c0": pl.String,
    **{f"c{i}": pl.Float32 for i in range(1, NUM_LANDMARK_VALUES - 1)},
    _LAST: pl.String,
    _SURPLUS: pl.String,
}


def parse_original_csv(
    data: bytes | str | os.PathLike[str], *, split: str, relative: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse one original-layout CSV (its bytes, or a local file path) into (kept rows, rejects).

    Kept rows carry the annotation-schema columns; rejects carry ``split``, ``source_file``,
    ``source_row``, ``id``, ``_reason`` and ``_detail``. Exposed for benchmarks;
    :func:`read` is the entry point.

    Two paths give the same typed values: a fast one for clean rows (Polars' CSV reader
    with ``;`` as separator parses the 134 inner landmark values as floats directly, and the
    short first and last fields are split on ``,``), and a careful one (the line split
    field by field) for the rows the fast path flags -- only those lines are read twice.
    Given a path, Polars maps the file itself (no copy of the bytes in Python); the bytes are
    read only when some line needs the careful path.
    """
    head = _head(data)
    check_wide_encoding(head, relative)  # UTF-16 / UTF-32: say so, not "wrong header"
    first_line = head.split(b"\n", 1)[0]
    try:
        header = strip_bom(first_line).decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        check_utf8(first_line, relative)  # raises, naming line 1 and the byte
        raise
    if not header.strip():
        raise FormatError(f"{relative}: empty file or empty first line (expected the header {','.join(COLUMNS)})")
    _check_header(header, relative)
    small, clean, full, careful = _typed_parts(data)
    reason, detail = _reasons()
    checked = [
        small.filter(clean).with_columns(reason, detail),
        careful.with_columns(reason, detail),
    ]
    rejects = pl.concat([c.filter(pl.col("_reason").is_not_null()) for c in checked], how="diagonal_relaxed")
    rejects = rejects.select(
        pl.lit(split).alias("split"),
        pl.lit(relative).alias("source_file"),
        "source_row",
        "id",
        "_reason",
        "_detail",
    ).sort("source_row")
    # Landmarks of the kept fast rows, exported once into exactly their (k, 136) array.
    keep = clean.to_numpy().copy()
    keep[np.flatnonzero(keep)] = checked[0]["_reason"].is_null().to_numpy()
    fast = (
        checked[0]
        .filter(pl.col("_reason").is_null())
        .with_columns(_landmark_rows(full, pl.Series(keep)).cast(pl.List(pl.Float32)))
    )
    kept = fast
    if careful.height:
        kept = pl.concat([fast, checked[1].filter(pl.col("_reason").is_null())], how="diagonal_relaxed").sort(
            "source_row"
        )
    kept = kept.select(
        pl.col("id"),
        pl.lit(DATASET).alias("dataset"),
        pl.lit(split).alias("split"),
        pl.lit(relative).alias("source_file"),
        "source_row",
        (pl.lit(IMAGES_DIR + "/") + pl.col("id")).alias("source_path"),
        pl.col("expression").alias("raw_label"),
        pl.col("expression").alias("label"),
        *_va_columns(pl.col("valence"), pl.col("arousal")),
        "face_x",
        "face_y",
        "face_width",
        "face_height",
        "landmarks",
    )
    return kept, rejects


def _head(data: bytes | str | os.PathLike[str], size: int = 1 << 16) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data[:size])
    with open(data, "rb") as handle:
        return handle.read(size)


def _whole(data: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    with open(data, "rb") as handle:
        return handle.read()


def _typed_rows(data: bytes) -> pl.DataFrame:
    """All data rows as typed columns (both paths merged, file order); used by the tests."""
    small, clean, full, careful = _typed_parts(data)
    fast = small.filter(clean).with_columns(_landmark_rows(full, clean).cast(pl.List(pl.Float32)))
    typed = pl.concat([fast.select(*_TYPED_SCHEMA), careful.select(*_TYPED_SCHEMA)], how="vertical")
    return typed.sort("source_row")


def _landmark_rows(values: pl.DataFrame, keep: pl.Series) -> pl.Series:
    """The kept rows' 136 landmark values (one column each in ``values``) as one row-major
    ``Array(Float32, 136)`` column: a single parallel pass of Polars' C-order export, no
    per-column copies (nulls become NaN, only in rows the checks already rejected)."""
    rows = values.filter(keep).to_numpy(order="c")
    return pl.Series("landmarks", rows.reshape(-1, NUM_LANDMARK_VALUES))


def _typed_parts(
    data: bytes | str | os.PathLike[str],
) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame, pl.DataFrame]:
    """``(small, clean, full, careful)``: the fast path's typed rows without landmarks, which
    of them are clean, their 136 landmark values (one Float32 column each, see
    :func:`_landmark_rows`), and the careful path's typed rows (with landmarks) for the lines
    the fast path could not take."""
    empty = pl.DataFrame(schema={k: v for k, v in _CAREFUL_SCHEMA.items() if k != "landmarks"})
    try:
        wide = pl.read_csv(
            data if isinstance(data, bytes) else os.fspath(data),
            separator=";",
            has_header=False,
            skip_lines=1,
            quote_char=None,
            schema=_WIDE_SCHEMA,
            missing_columns="insert",
            ignore_errors=True,
            truncate_ragged_lines=True,
        )
    except pl.exceptions.NoDataError:
        return empty, pl.Series([], dtype=pl.Boolean), pl.DataFrame(), pl.DataFrame(schema=_CAREFUL_SCHEMA)
    except pl.exceptions.PolarsError:  # e.g. invalid UTF-8: every row the careful way
        careful = _typed_careful(read_lines(_whole(data)).slice(1))
        return empty, pl.Series([], dtype=pl.Boolean), pl.DataFrame(), careful
    small, clean, full = _typed_fast(wide)
    del wide
    suspicious = small.filter(~clean & ~pl.col("_blank"))["source_row"]
    careful = pl.DataFrame(schema=_CAREFUL_SCHEMA)
    if not suspicious.is_empty():
        lines = read_lines(_whole(data)).filter(pl.col("line_no").is_in(suspicious.implode()))
        careful = _typed_careful(lines)
    return small.drop("_blank"), clean, full, careful


def _typed_fast(wide: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    head = pl.col("c0").str.splitn(",", 6).struct.rename_fields(["id", "x", "y", "w", "h", "lm0"])
    tail = (
        pl.col(_LAST).str.splitn(",", 4).struct.rename_fields(["lm135", "expression_text", "valence", "arousal"])
    )
    small = wide.select(
        pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("source_row"),
        pl.col("c0").is_null().alias("_blank"),
        # A comma too many or too few leaves a field unparsable: the last field of each split
        # keeps the rest of its text (``splitn``) and is a number, as are the others but the id.
        pl.col(_SURPLUS).is_null().alias("_shape_ok"),
        head.alias("_head"),
        tail.alias("_tail"),
    ).unnest("_head", "_tail")
    small = small.select(
        "source_row",
        "_blank",
        "_shape_ok",
        "id",
        *(finite_number(pl.col(src)).alias(name) for src, name in zip("xywh", _NUMBERS[:4], strict=True)),
        finite_number(pl.col("valence")).alias("valence"),
        finite_number(pl.col("arousal")).alias("arousal"),
        integer_text(pl.col("expression_text")).alias("expression"),
        "expression_text",
        pl.col("lm0").cast(pl.Float32, strict=False).alias("_lm0"),
        pl.col("lm135").cast(pl.Float32, strict=False).alias("_lm135"),
    )
    # The 136 values as columns: the two edge values around the inner columns (no copies).
    full = pl.DataFrame([small["_lm0"], *(wide[f"c{i}"] for i in range(1, NUM_LANDMARK_VALUES - 1)), small["_lm135"]])
    # Every value present and finite: a null, NaN or inf makes the row's sum so.
    finite = full.select(pl.sum_horizontal(pl.all(), ignore_nulls=False).is_finite()).to_series()
    clean = small.select(
        (
            ~pl.col("_blank")
            & pl.col("_shape_ok")
            & pl.all_horizontal(pl.col(*_NUMBERS, "expression").is_not_null())
            & (pl.col("id").str.len_bytes() > 0)
            & ~pl.col("id").str.contains(r'^[\s"]|[\s"]$')
            & pl.lit(finite)
        ).fill_null(False)
    ).to_series()
    small = small.select(
        "source_row",
        "_blank",
        "id",
        *_NUMBERS,
        "expression",
        "expression_text",
        pl.lit(True).alias("_landmarks_ok"),
        pl.lit(len(_FIELDS), dtype=pl.Int64).alias("_n_fields"),
        pl.lit(NUM_LANDMARK_VALUES, dtype=pl.Int64).alias("_n_landmarks"),
    )
    return small, clean, full


def _typed_careful(lines: pl.DataFrame) -> pl.DataFrame:
    """Typed columns of arbitrary (possibly broken) lines, one field at a time."""
    body = lines.filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))
    if body.is_empty():
        return pl.DataFrame(schema=_CAREFUL_SCHEMA)
    frame = split_line_fields(body, _FIELDS)
    return (
        frame.select(
            "source_row",
            "id",
            *(finite_number(pl.col(c)).alias(c) for c in _NUMBERS),
            integer_text(pl.col("expression")).alias("expression"),
            pl.col("expression").alias("expression_text"),
            _parse_landmarks(frame["facial_landmarks"]),
            (pl.col("_n_sep") + 1).alias("_n_fields"),
            (pl.col("facial_landmarks").str.count_matches(";", literal=True) + 1).alias("_n_landmarks"),
        )
        .cast(_TYPED_SCHEMA)
        .with_columns(pl.col("landmarks").is_not_null().alias("_landmarks_ok"))
    )


def _reasons() -> tuple[pl.Expr, pl.Expr]:
    """The ordered checks of the original layout as ``_reason`` / ``_detail`` expressions."""
    unparsable = pl.any_horizontal(*(pl.col(c).is_null() for c in (*_NUMBERS, "expression")))
    wrong_count = pl.col("_n_fields") != len(_FIELDS)
    no_id = pl.col("id").fill_null("") == ""
    stray_quote = pl.col("id").str.contains('"', literal=True).fill_null(False)
    malformed_detail = (
        pl.when(wrong_count)
        .then(pl.format("{} fields, expected {}", "_n_fields", pl.lit(len(_FIELDS))))
        .when(no_id)
        .then(pl.lit("empty subDirectory_filePath"))
        .when(stray_quote)
        .then(pl.lit("broken quoting"))
        .otherwise(pl.lit("unparsable number"))
    )
    label_bad = (pl.col("expression") < 0) | (pl.col("expression") >= labels.NUM_CANONICAL)
    box_bad = (pl.col("face_width") <= 0) | (pl.col("face_height") <= 0)
    return first_reason(
        [
            (wrong_count | no_id | stray_quote | unparsable, "malformed row", malformed_detail),
            (label_bad, "label out of range", pl.col("expression_text")),
            (
                ~pl.col("_landmarks_ok"),
                "landmarks count",
                pl.format("{} values, expected {}", "_n_landmarks", pl.lit(NUM_LANDMARK_VALUES)),
            ),
            (box_bad, "non-positive face box", pl.format("width {} height {}", "face_width", "face_height")),
            (_va_bad(pl.col("valence")), "valence out of range", pl.col("valence")),
            (_va_bad(pl.col("arousal")), "arousal out of range", pl.col("arousal")),
        ]
    )


def _parse_landmarks(text: pl.Series) -> pl.Series:
    """``;``-separated text -> List(Float32) of 136, null where the count or a value is wrong."""
    values = text.str.split(";").list.eval(finite_number(pl.element().str.strip_chars()))
    frame = pl.DataFrame({"v": values})
    count = pl.col("v").list.len()
    ok = (count == NUM_LANDMARK_VALUES) & (pl.col("v").list.drop_nulls().list.len() == count)
    return frame.select(pl.when(ok).then(pl.col("v")).alias("landmarks")).to_series()


def _split_duplicates(kept: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Move later occurrences of an id (in file order, training first) to the rejects."""
    ids = kept["id"]
    if ids.n_unique() == kept.height:
        return kept, pl.DataFrame()
    later = ~ids.is_first_distinct()
    firsts = kept.filter(ids.is_duplicated() & ~later).select(
        "id", pl.format("first seen at {}:{}", "source_file", "source_row").alias("_detail")
    )
    rejects = (
        kept.filter(later)
        .select("split", "source_file", "source_row", "id", pl.lit("duplicate id").alias("_reason"))
        .join(firsts, on="id", how="left", maintain_order="left")
    )
    return kept.filter(~later), rejects


def _local_file(path: AnyPath, relative: str) -> bytes | str:
    """A local file's path (parsed and hashed in place, never copied into Python), else its bytes."""
    if not is_uri(path) and os.path.isfile(path):
        return os.fspath(path)
    return read_bytes(path, relative)


def _checked_sha256(source: bytes | str, relative: str) -> str:
    """SHA-256 of a CSV's bytes or local file, raising :class:`FormatError` unless it is UTF-8."""
    if isinstance(source, bytes):
        check_utf8(source, relative)
        return sha256_hex(source)
    return sha256_utf8_file(source, relative)


def _parse_and_hash(
    pool: ThreadPoolExecutor, path: AnyPath, split: str, relative: str
) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    """(kept, rejects, SHA-256) of one CSV; the hash runs in ``pool`` beside the parse (it
    takes the CPU the CSV reader leaves idle, then a core of the typing)."""
    source = _local_file(path, relative)
    digest = pool.submit(_checked_sha256, source, relative)  # the encoding check rides on the hash's read
    kept, rejects = parse_original_csv(source, split=split, relative=relative)
    return kept, rejects, digest.result()  # raises the encoding's FormatError before the rows are used


def _read_original(root: AnyPath) -> ParsedTables:
    kept_parts, reject_parts = [], []
    files: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:  # hashing overlaps parsing (both release the GIL)
        for split, relative in ORIGINAL_FILES.items():
            kept, rejects, files[relative] = _parse_and_hash(pool, root / relative, split, relative)
            kept_parts.append(kept)
            reject_parts.append(rejects)
    kept, duplicates = _split_duplicates(pl.concat(kept_parts, how="vertical"))
    if duplicates.height:
        reject_parts.append(duplicates)
    rejects = [
        reject_frame(part.with_columns(pl.lit(DATASET).alias("dataset")), reason=pl.col("_reason"),
                     detail=pl.col("_detail").cast(pl.String))  # fmt: skip
        for part in reject_parts
        if part.height
    ]
    return ParsedTables(finish_annotations(kept), concat_rejects(rejects), files, "original")


# --------------------------------------------------------------------------------------
# Original-layout writers (used by curate.synth; round-trip with read)
# --------------------------------------------------------------------------------------


def _number_text(expr: pl.Expr) -> pl.Expr:
    """Numbers as AffectNet writes them: integral values without a decimal point."""
    value = expr.cast(pl.Float64)
    return pl.when(value == value.round(0)).then(value.cast(pl.Int64).cast(pl.String)).otherwise(expr.cast(pl.String))


def original_rows(annotations: pl.DataFrame) -> pl.DataFrame:
    """Text columns of original-layout CSV rows from a frame in the annotation schema.

    Needs ``id``, ``face_x``, ``face_y``, ``face_width``, ``face_height``, ``landmarks``
    (List of 136 floats, written with their shortest exact text) or a ready
    ``facial_landmarks`` string column, ``label`` and ``valence`` / ``arousal`` (null -> -2).
    """
    if "facial_landmarks" in annotations.columns:
        landmark_text = pl.col("facial_landmarks")
    else:
        landmark_text = pl.col("landmarks").cast(pl.List(pl.String)).list.join(";")
    return annotations.select(
        pl.col("id").alias("subDirectory_filePath"),
        *(_number_text(pl.col(c)).alias(c) for c in ("face_x", "face_y", "face_width", "face_height")),
        landmark_text.alias("facial_landmarks"),
        pl.col("label").cast(pl.Int64).cast(pl.String).alias("expression"),
        *(_number_text(pl.col(c).fill_null(VA_SENTINEL)).alias(c) for c in ("valence", "arousal")),
    )


def write_original_csv(
    path: str | Path, chunks: Iterable[pl.DataFrame] | pl.DataFrame, *, header: str = HEADER_SPELLINGS[0]
) -> Path:
    """Write one original-layout CSV (``training.csv`` / ``validation.csv``).

    ``chunks`` are frames accepted by :func:`original_rows` (or already converted by it),
    written in order after the header; ``header`` is the spelling of the first column.
    """
    if header not in HEADER_SPELLINGS:
        raise ValueError(f"header must be one of {HEADER_SPELLINGS}, got {header!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(chunks, pl.DataFrame):
        chunks = [chunks]
    with path.open("wb") as handle:
        handle.write((",".join((header, *COLUMNS[1:])) + "\n").encode())
        for chunk in chunks:
            rows = chunk if "subDirectory_filePath" in chunk.columns else original_rows(chunk)
            rows.write_csv(handle, include_header=False, quote_style="never", line_terminator="\n")
    return path


def write_original(
    manual_dir: str | Path, annotations: pl.DataFrame, *, header: str = HEADER_SPELLINGS[0]
) -> dict[str, Path]:
    """Write both original-layout CSVs from an annotation table (``split`` picks the file)."""
    root = Path(manual_dir)
    return {
        split: write_original_csv(root / relative, annotations.filter(pl.col("split") == split), header=header)
        for split, relative in ORIGINAL_FILES.items()
    }
