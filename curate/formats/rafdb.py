"""RAF-DB: the ``basic`` label list and per-image annotation files, and the other copies people hold.

:func:`read` detects which copy the manual dir holds (:func:`detect_layout`, once per copy,
never per row) and records it as ``ParsedTables.layout``: ``basic``,
``basic-aligned-only``, ``basic-labels-only`` or ``folder-per-label``
(:data:`curate.formats.rafdb_copies.LAYOUTS` says what each one gives; the folder-per-label
reader lives there). A manual dir that matches none is a :class:`FormatError` naming what
was looked for and the top-level entries found.

``basic`` layout (under the manual dir)
---------------------------------------
* ``basic/EmoLabel/list_patition_label.txt`` (sic): lines ``train_00001.jpg 5`` /
  ``test_0001.jpg 1``; labels 1 Surprise ... 7 Neutral (:data:`curate.labels.RAFDB_NAMES`).
  The split comes from the name prefix (``train`` / ``test``).
* ``basic/Image/aligned/<stem>_aligned.jpg`` (100x100) -- the ``source_path`` of a row --
  and ``basic/Image/original/<name>``.
* ``basic/Annotation/boundingbox/<stem>_boundingbox.txt``: ``x1 y1 x2 y2`` -> ``face_x``,
  ``face_y``, ``face_width = x2 - x1``, ``face_height = y2 - y1`` (original-image pixels).
* ``basic/Annotation/manual/<stem>_manu_attri.txt``: five ``x y`` landmark lines (eye
  centres, nose tip, mouth corners) -> ``landmarks`` (10 floats), then gender, race and age
  group lines -> extras ``gender``, ``race``, ``age_group`` (Int8).
* ``basic/Annotation/auto/<stem>_auto_attri.txt``: 37 ``x y`` lines -> extra
  ``landmarks_auto`` (List(Float32) of 74).

Ids are the file stems (``train_00001``); ``source_row`` is the line in the label list.

Without ``basic/Image/original/`` (absent or empty) the copy is ``basic-aligned-only``: it
is read exactly as ``basic`` (the reader never opens images); a build then cannot normalise
the face box. With ``basic/Image/original/`` present, a missing original is a reject of
that row in the builder, as before. Without ``basic/Annotation/`` the copy is
``basic-labels-only``: no annotation file is read and the box, landmarks and attribute
columns are null. With ``basic/Annotation/`` present but one of its three folders absent
the read stops (:class:`FormatError`): remove ``Annotation/`` to build without annotations.

Reject reasons, first failing check wins: ``malformed row`` (a list line that is not
``<train|test>_<digits>.jpg <integer>``), ``label out of range`` (not 1-7), ``duplicate id``
(a name listed again; the first is kept), ``missing annotation file`` (any of the three
annotation files of a listed image; the detail names them), ``malformed annotation`` (wrong
number of values or a value that does not parse), ``non-positive face box``
(``x2 <= x1`` or ``y2 <= y1``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate import labels
from curate.formats import (
    AnyPath,
    FormatError,
    PathLike,
    as_path,
    concat_rejects,
    finish_annotations,
    first_reason,
    list_names,
    read_lines,
    read_many,
    read_text,
    sha256_hex,
    split_rejects,
)
from curate.formats.rafdb_copies import (
    DATASET,
    EXTRA_COLUMNS,
    FOLDER_REASONS,
    LAYOUTS,
    Copy,
    canonical_label,
    label_folder_splits,
    read_folder_per_label,
)
from curate.formats.schema import ParsedTables

__all__ = ["DATASET", "EXTRA_COLUMNS", "LAYOUTS", "Copy", "detect_layout", "read"]
LABEL_FILE = "basic/EmoLabel/list_patition_label.txt"
ANNOTATION_ROOT = "basic/Annotation"
ALIGNED_DIR = "basic/Image/aligned"
ORIGINAL_DIR = "basic/Image/original"
ANNOTATION_DIRS: dict[str, tuple[str, str]] = {
    "boundingbox": ("basic/Annotation/boundingbox", "_boundingbox.txt"),
    "manual": ("basic/Annotation/manual", "_manu_attri.txt"),
    "auto": ("basic/Annotation/auto", "_auto_attri.txt"),
}
NUM_MANUAL_LANDMARKS = 5
NUM_AUTO_LANDMARKS = 37

#: Reject reasons of the ``basic*`` copies.
BASIC_REASONS: tuple[str, ...] = (
    "malformed row",
    "label out of range",
    "duplicate id",
    "missing annotation file",
    "malformed annotation",
    "non-positive face box",
)
#: Every reject reason :func:`read` emits (``basic*`` copies, then folder-per-label).
REASONS: tuple[str, ...] = tuple(dict.fromkeys(BASIC_REASONS + FOLDER_REASONS))

_NAME_PATTERN = r"^((train|test)_[0-9]+)\.jpg$"


def aligned_path(stem: str) -> str:
    return f"{ALIGNED_DIR}/{stem}_aligned.jpg"


def original_path(stem: str) -> str:
    return f"{ORIGINAL_DIR}/{stem}.jpg"


def annotation_path(kind: str, stem: str) -> str:
    folder, suffix = ANNOTATION_DIRS[kind]
    return f"{folder}/{stem}{suffix}"


def detect_layout(manual_dir: PathLike) -> str:
    """Which copy of RAF-DB ``manual_dir`` holds: a key of :data:`LAYOUTS`.

    ``basic/EmoLabel/list_patition_label.txt`` makes it a ``basic*`` copy (which one: see
    the module docstring); otherwise label folders ``train/<1-7>/`` or ``test/<1-7>/`` make
    it ``folder-per-label``. Anything else is a one-line :class:`FormatError` listing what was
    looked for and the top-level entries found.
    """
    root = as_path(manual_dir)
    if (root / LABEL_FILE).is_file() or (root / "basic").is_dir():
        if not (root / ANNOTATION_ROOT).is_dir():
            return "basic-labels-only"
        absent = [folder for folder, _ in ANNOTATION_DIRS.values() if not (root / folder).is_dir()]
        if absent:
            raise FormatError(
                f"{absent[0]}/: missing folder ({ANNOTATION_ROOT}/ is present, so all of "
                f"{', '.join(f for f, _ in ANNOTATION_DIRS.values())} are expected; remove "
                f"{ANNOTATION_ROOT}/ to build without annotations)"
            )
        return "basic" if _has_entries(root / ORIGINAL_DIR) else "basic-aligned-only"
    if label_folder_splits(root):
        return "folder-per-label"
    found = [name for name in list_names(root) if not name.startswith(".")] if root.is_dir() else []
    shown = ", ".join(found[:20]) + (f", ... ({len(found) - 20} more)" if len(found) > 20 else "")
    raise FormatError(
        f"{root}: no RAF-DB copy found; looked for {LABEL_FILE} (basic copies) and train/<1-7>/ or "
        f"test/<1-7>/ (folder-per-label); top-level entries found: {shown or '(none)'}"
    )


def _has_entries(folder: AnyPath) -> bool:
    """True when ``folder`` is a directory with at least one entry that is not hidden."""
    if not folder.is_dir():
        return False
    if isinstance(folder, Path):
        with os.scandir(folder) as entries:
            return any(not entry.name.startswith(".") for entry in entries)
    return any(not child.name.startswith(".") for child in folder.iterdir())


def read(manual_dir: PathLike) -> ParsedTables:
    """Read a RAF-DB manual dir: any copy of :data:`LAYOUTS` (:func:`detect_layout`).

    ``manual_dir`` is a local path or a ``gs://``-style URI / ``epath.Path``; on remote
    storage the per-image annotation files are fetched by a pool of threads.

    Returns
    -------
    ParsedTables
        ``layout`` as detected; extras ``gender``, ``race``, ``age_group``,
        ``landmarks_auto`` (null, with the box and landmarks, in copies without annotations).
    """
    root = as_path(manual_dir)
    layout = detect_layout(root)
    if layout == "folder-per-label":
        return read_folder_per_label(root)
    return _read_basic(root, LAYOUTS[layout])


def _read_basic(root: AnyPath, copy: Copy) -> ParsedTables:
    """The ``basic*`` copies: the label list, and the annotation files when the copy has them."""
    data = read_text(root / LABEL_FILE, LABEL_FILE)
    files = {LABEL_FILE: sha256_hex(data)}
    lines = read_lines(data)
    body = lines.filter(pl.col("line").is_not_null() & (pl.col("line").str.strip_chars() != ""))
    tokens = pl.col("line").str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ")
    frame = body.select(
        pl.col("line_no").alias("source_row"),
        tokens.list.len().alias("_n_tokens"),
        tokens.list.get(0, null_on_oob=True).alias("_name"),
        tokens.list.get(1, null_on_oob=True).alias("_label_text"),
    ).with_columns(
        pl.col("_name").str.extract(_NAME_PATTERN, 1).alias("id"),
        pl.col("_name").str.extract(_NAME_PATTERN, 2).alias("_prefix"),
        pl.col("_label_text").cast(pl.Int64, strict=False).alias("raw_label"),
    )
    malformed = (pl.col("_n_tokens") != 2) | pl.col("id").is_null() | pl.col("raw_label").is_null()
    label_bad = (pl.col("raw_label") < 1) | (pl.col("raw_label") > len(labels.RAFDB_NAMES))
    early_ok = ~(malformed | label_bad).fill_null(True)
    frame = frame.with_columns(
        (early_ok & ~pl.col("id").is_first_distinct().over(early_ok)).alias("_duplicate"),
    )
    first_rows = frame.filter(early_ok).group_by("id").agg(pl.col("source_row").min().alias("_first_row"))
    frame = frame.join(first_rows, on="id", how="left", maintain_order="left")
    # Annotation files of the rows that passed the list checks (one read per file); none
    # in a copy without Annotation/, whose box, landmark and attribute columns stay null.
    wanted = frame.filter(early_ok & ~pl.col("_duplicate"))["id"].to_list() if copy.has_annotations else []
    contents = {kind: _read_annotation_files(root, kind, wanted, files) for kind in ANNOTATION_DIRS}
    parsed = pl.DataFrame({"id": pl.Series(wanted, dtype=pl.String)})
    for kind, texts in contents.items():
        parsed = parsed.with_columns(pl.Series(f"_{kind}", texts, dtype=pl.String))
    parsed = parsed.with_columns(
        *(_numbers(pl.col(f"_{kind}")).alias(f"_{kind}_values") for kind in ANNOTATION_DIRS),
    )
    frame = frame.join(parsed, on="id", how="left", maintain_order="left")
    missing = [
        pl.when(pl.col(f"_{kind}").is_null()).then(pl.lit(annotation_path(kind, "{id}"))) for kind in ANNOTATION_DIRS
    ]
    missing_detail = pl.concat_str(missing, separator=" ", ignore_nulls=True)
    box = pl.col("_boundingbox_values")
    manual = pl.col("_manual_values")
    auto = pl.col("_auto_values")
    n_manual = 2 * NUM_MANUAL_LANDMARKS + 3
    attributes = manual.list.slice(2 * NUM_MANUAL_LANDMARKS, 3)
    malformed_annotation = (
        _bad_count(box, 4)
        | _bad_count(manual, n_manual)
        | _bad_count(auto, 2 * NUM_AUTO_LANDMARKS)
        | (attributes.list.eval(pl.element() != pl.element().round(0)).list.any()).fill_null(True)
    )
    list_checks = [
        (malformed, "malformed row", pl.col("_name").fill_null(pl.lit(""))),
        (label_bad, "label out of range", pl.col("_label_text")),
        (pl.col("_duplicate"), "duplicate id", pl.format("first listed at line {}", "_first_row")),
    ]
    annotation_checks = [
        (
            pl.any_horizontal(*(pl.col(f"_{kind}").is_null() for kind in ANNOTATION_DIRS)),
            "missing annotation file",
            missing_detail.str.replace_all("{id}", pl.col("id"), literal=True),
        ),
        (
            malformed_annotation,
            "malformed annotation",
            pl.format(
                "{} box values (4), {} manual values ({}), {} auto values ({})",
                box.list.len(),
                manual.list.len(),
                pl.lit(n_manual),
                auto.list.len(),
                pl.lit(2 * NUM_AUTO_LANDMARKS),
            ),
        ),
        (
            (box.list.get(2) <= box.list.get(0)) | (box.list.get(3) <= box.list.get(1)),
            "non-positive face box",
            pl.col("_boundingbox").str.strip_chars(),
        ),
    ]
    reason, detail = first_reason(list_checks + (annotation_checks if copy.has_annotations else []))
    frame = frame.with_columns(reason, detail).with_columns(
        pl.lit(DATASET).alias("dataset"),
        pl.col("_prefix").replace_strict({"train": "train", "test": "test"}, default=None).alias("split"),
        pl.lit(LABEL_FILE).alias("source_file"),
        pl.format("{}/{}_aligned.jpg", pl.lit(ALIGNED_DIR), "id").alias("source_path"),
        canonical_label(pl.col("raw_label")).alias("label"),
        box.list.get(0, null_on_oob=True).alias("face_x"),
        box.list.get(1, null_on_oob=True).alias("face_y"),
        (box.list.get(2, null_on_oob=True) - box.list.get(0, null_on_oob=True)).alias("face_width"),
        (box.list.get(3, null_on_oob=True) - box.list.get(1, null_on_oob=True)).alias("face_height"),
        manual.list.slice(0, 2 * NUM_MANUAL_LANDMARKS).alias("landmarks"),
        attributes.list.get(0, null_on_oob=True).alias("gender"),
        attributes.list.get(1, null_on_oob=True).alias("race"),
        attributes.list.get(2, null_on_oob=True).alias("age_group"),
        auto.alias("landmarks_auto"),
    )
    kept, rejects = split_rejects(frame, DATASET)
    kept = kept.with_columns(pl.col(name).cast(dtype) for name, dtype in EXTRA_COLUMNS.items())
    annotations = finish_annotations(kept, list(EXTRA_COLUMNS))
    return ParsedTables(annotations, concat_rejects([rejects]), files, copy.layout)


def _numbers(text: pl.Expr) -> pl.Expr:
    """Whitespace-separated numbers -> List(Float32); a value that does not parse becomes null."""
    tokens = text.str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ")
    return tokens.list.eval(pl.element().cast(pl.Float32, strict=False))


def _bad_count(values: pl.Expr, expected: int) -> pl.Expr:
    return ((values.list.len() != expected) | (values.list.drop_nulls().list.len() != expected)).fill_null(True)


def _read_annotation_files(root: AnyPath, kind: str, stems: list[str], files: dict[str, str]) -> list[str | None]:
    """Text of one annotation file per stem (None when missing); records each file's digest."""
    relatives = [annotation_path(kind, stem) for stem in stems]
    out: list[str | None] = []
    for relative, data in zip(relatives, read_many(root, relatives), strict=True):
        if data is None:
            out.append(None)
            continue
        files[relative] = sha256_hex(data)
        out.append(data.decode("utf-8", errors="replace"))
    return out


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------


def write_label_list(manual_dir: str | Path, names: list[str], raw_labels: Any) -> Path:
    """Write ``list_patition_label.txt`` lines ``<name> <label>`` in the given order."""
    path = Path(manual_dir) / LABEL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = np.asarray(raw_labels, dtype=np.int64).tolist()
    path.write_text("".join(f"{name} {label}\n" for name, label in zip(names, raw, strict=True)), encoding="ascii")
    return path


def _pairs(points: np.ndarray) -> str:
    return "".join(f"{x:.2f} {y:.2f}\n" for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist())


def write_annotations(
    manual_dir: str | Path,
    stems: list[str],
    boxes: Any,
    landmarks5: Any,
    gender: Any,
    race: Any,
    age_group: Any,
    landmarks37: Any,
) -> int:
    """Write the three annotation files per stem; ``boxes`` are ``(n, 4)`` x1 y1 x2 y2.

    Returns the number of files written.
    """
    root = Path(manual_dir)
    for kind in ANNOTATION_DIRS:
        (root / ANNOTATION_DIRS[kind][0]).mkdir(parents=True, exist_ok=True)
    boxes = np.asarray(boxes, dtype=np.float64)
    landmarks5 = np.asarray(landmarks5, dtype=np.float64).reshape(len(stems), -1)
    landmarks37 = np.asarray(landmarks37, dtype=np.float64).reshape(len(stems), -1)
    attributes = np.stack([np.asarray(a, dtype=np.int64) for a in (gender, race, age_group)], axis=1).tolist()
    for i, stem in enumerate(stems):
        x1, y1, x2, y2 = boxes[i].tolist()
        (root / annotation_path("boundingbox", stem)).write_text(f"{x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}\n")
        manual = _pairs(landmarks5[i]) + "".join(f"{a}\n" for a in attributes[i])
        (root / annotation_path("manual", stem)).write_text(manual)
        (root / annotation_path("auto", stem)).write_text(_pairs(landmarks37[i]))
    return 3 * len(stems)
