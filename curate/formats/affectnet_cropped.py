"""AffectNet cropped layout ("AffectNet-8"): reader of the ``.npy`` annotation files and writer.

``train_set/`` and ``val_set/``, each with ``images/<n>.jpg`` and
``annotations/<n>_{exp,val,aro,lnd}.npy``. The read rules and the reject reasons are those
of :mod:`curate.formats.affectnet` (its docstring); :func:`curate.formats.affectnet.read`
is the entry point for both layouts.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate import labels
from curate.formats import (
    AnyPath,
    concat_rejects,
    finish_annotations,
    first_reason,
    integer_text,
    list_names,
    read_bytes,
    read_many,
    sha256_hex,
    split_rejects,
)
from curate.formats.affectnet_rules import DATASET, NUM_LANDMARK_VALUES, VA_SENTINEL, _va_bad, _va_columns
from curate.formats.schema import FormatError, ParsedTables

#: Cropped layout: split -> folder.
CROPPED_DIRS: dict[str, str] = {"train": "train_set", "validation": "val_set"}
CROPPED_KINDS: tuple[str, ...] = ("exp", "val", "aro", "lnd")

_ANNOTATION_NAME = re.compile(r"^(\d+)_(exp|val|aro|lnd)\.npy$")
_IMAGE_NAME = re.compile(r"^(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


def _npy_payload_offset(blob: bytes) -> int | None:
    if len(blob) < 10 or not blob.startswith(b"\x93NUMPY"):
        return None
    major = blob[6]
    if major == 1:
        return 10 + int.from_bytes(blob[8:10], "little")
    if major in (2, 3):
        return 12 + int.from_bytes(blob[8:12], "little")
    return None


def _load_npy_batch(blobs: list[bytes]) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Decode many small ``.npy`` blobs, batching those that share one header.

    Returns ``(groups, index)``: ``groups`` holds, per distinct header, an array of shape
    ``(n_group, *shape)``; ``index[i]`` is ``(group, row)`` of blob ``i`` (``-1`` = malformed).
    """
    by_prefix: dict[bytes, list[int]] = {}
    bad: list[int] = []
    for i, blob in enumerate(blobs):
        offset = _npy_payload_offset(blob)
        if offset is None:
            bad.append(i)
            continue
        by_prefix.setdefault(blob[:offset], []).append(i)
    index = np.full((len(blobs), 2), -1, dtype=np.int64)
    groups: list[np.ndarray | None] = []
    for prefix, members in by_prefix.items():
        try:
            probe = np.load(io.BytesIO(blobs[members[0]]), allow_pickle=False)
        except (ValueError, OSError, EOFError):
            continue
        size = probe.dtype.itemsize * int(np.prod(probe.shape, dtype=np.int64))
        good = [i for i in members if len(blobs[i]) == len(prefix) + size]
        if not good:
            continue
        payload = b"".join(blobs[i][len(prefix) :] for i in good)
        array = np.frombuffer(payload, dtype=probe.dtype).reshape((len(good), *probe.shape))
        index[good, 0] = len(groups)
        index[good, 1] = np.arange(len(good))
        groups.append(array)
    return groups, index


def _npy_column(blobs: list[bytes], kind: str) -> tuple[pl.Series, pl.Series]:
    """Values of one annotation kind as (parsed Series, loaded-ok Series).

    ``exp`` -> Float64 (integer check later), ``val``/``aro`` -> Float64, ``lnd`` ->
    List(Float32) (any shape flattened; a text array is split on ``;``/whitespace).
    """
    groups, index = _load_npy_batch(blobs)
    n = len(blobs)
    loaded = index[:, 0] >= 0
    if kind == "lnd":
        parts: list[pl.Series] = []
        order: list[np.ndarray] = []
        for g, array in enumerate(groups):
            rows = np.flatnonzero(index[:, 0] == g)
            flat = array.reshape(len(array), -1)
            if flat.dtype.kind in "US":
                joined = np.char.join(" ", flat.astype(str)) if flat.shape[1] > 1 else flat[:, 0].astype(str)
                text = pl.Series(joined.tolist(), dtype=pl.String).str.replace_all(r"[;,\s\[\]]+", ";")
                series = text.str.strip_chars(";").str.split(";").cast(pl.List(pl.Float32), strict=False)
            else:
                series = (
                    pl.Series(flat.astype(np.float32)).cast(pl.List(pl.Float32))
                    if flat.size
                    else pl.Series([[] for _ in rows], dtype=pl.List(pl.Float32))
                )
            parts.append(series)
            order.append(rows)
        values = pl.Series("v", [None] * n, dtype=pl.List(pl.Float32))
        if parts:
            rows = np.concatenate(order)
            combined = pl.concat(parts)
            values = pl.DataFrame({"row": rows, "v": combined}).sort("row")
            values = pl.DataFrame({"row": np.arange(n)}).join(values, on="row", how="left", maintain_order="left")["v"]
        return values, pl.Series(loaded)
    out = np.full(n, np.nan)
    valid = np.zeros(n, dtype=bool)
    for g, array in enumerate(groups):
        rows = np.flatnonzero(index[:, 0] == g)
        flat = array.reshape(len(array), -1)
        if flat.shape[1] != 1:
            continue
        column = flat[:, 0]
        if column.dtype.kind in "US":
            parsed = pl.Series(column.astype(str)).str.strip_chars().cast(pl.Float64, strict=False).to_numpy()
        elif column.dtype.kind in "biuf":
            parsed = column.astype(np.float64)
        else:
            continue
        out[rows] = parsed
        valid[rows] = ~np.isnan(parsed)
    return pl.Series(np.where(valid, out, np.nan)).fill_nan(None), pl.Series(loaded)


def _read_cropped(root: AnyPath) -> ParsedTables:
    frames: list[pl.DataFrame] = []
    files: dict[str, str] = {}
    present = [(split, folder) for split, folder in CROPPED_DIRS.items() if (root / folder).is_dir()]
    for split, folder in present:
        annotation_dir = root / folder / "annotations"
        if not annotation_dir.is_dir():
            raise FormatError(f"{folder}/annotations: missing folder (expected at {annotation_dir})")
        frames.append(_read_cropped_split(root, split, folder, files))
    missing = [folder for folder in CROPPED_DIRS.values() if not (root / folder).is_dir()]
    if missing:
        raise FormatError(f"{missing[0]}: missing folder (expected at {root / missing[0]})")
    frame = pl.concat(frames, how="vertical")
    kept, rejects = split_rejects(frame, DATASET)
    return ParsedTables(finish_annotations(kept), concat_rejects([rejects]), files, "cropped")


def _read_cropped_split(root: AnyPath, split: str, folder: str, files: dict[str, str]) -> pl.DataFrame:
    annotation_dir = root / folder / "annotations"
    image_dir = root / folder / "images"
    names = list_names(annotation_dir)
    matched = [(m.group(1), m.group(2), name) for name in names if (m := _ANNOTATION_NAME.match(name))]
    images = list_names(image_dir) if image_dir.is_dir() else []
    image_of = {m.group(1): name for name in images if (m := _IMAGE_NAME.match(name))}
    blobs = {kind: ([], []) for kind in CROPPED_KINDS}  # kind -> (ids, blobs)
    relatives = [f"{folder}/annotations/{name}" for _, _, name in matched]
    for (number, kind, name), relative, blob in zip(matched, relatives, read_many(root, relatives), strict=True):
        if blob is None:  # listed a moment ago, gone now
            blob = read_bytes(annotation_dir / name, relative)  # raises the FormatError naming it
        files[relative] = sha256_hex(blob)
        blobs[kind][0].append(number)
        blobs[kind][1].append(blob)
    numbers = sorted({m[0] for m in matched} | set(image_of), key=lambda s: (int(s), s))
    frame = pl.DataFrame({"number": numbers}, schema={"number": pl.String})
    for kind in CROPPED_KINDS:
        ids, data = blobs[kind]
        values, loaded = _npy_column(data, kind)
        part = pl.DataFrame({"number": pl.Series(ids, dtype=pl.String), f"_{kind}": values, f"_{kind}_loaded": loaded})
        part = part.unique("number", keep="first", maintain_order=True)
        frame = frame.join(part, on="number", how="left", maintain_order="left")
    has = {kind: pl.col(f"_{kind}_loaded").is_not_null() for kind in CROPPED_KINDS}
    missing_list = pl.concat_str(
        [pl.when(~has[k]).then(pl.lit(f"_{k}.npy ")) for k in CROPPED_KINDS], ignore_nulls=True
    ).str.strip_chars()
    malformed = pl.any_horizontal(
        *(~pl.col(f"_{k}_loaded").fill_null(True) for k in CROPPED_KINDS)
    ) | pl.any_horizontal(pl.col("_exp").is_null(), pl.col("_val").is_null(), pl.col("_aro").is_null())
    expression = integer_text(pl.col("_exp").cast(pl.String))
    lnd_len = pl.col("_lnd").list.len()
    landmarks_bad = (lnd_len != NUM_LANDMARK_VALUES) | (pl.col("_lnd").list.drop_nulls().list.len() != lnd_len)
    reason, detail = first_reason(
        [
            (~pl.all_horizontal(*has.values()), "missing annotation file", pl.format("missing {}", missing_list)),
            (malformed | expression.is_null(), "malformed annotation", pl.lit("unreadable or non-numeric .npy")),
            ((expression < 0) | (expression >= labels.NUM_CANONICAL), "label out of range", pl.col("_exp")),
            (
                landmarks_bad,
                "landmarks count",
                pl.format("{} values, expected {}", lnd_len, pl.lit(NUM_LANDMARK_VALUES)),
            ),
            (_va_bad(pl.col("_val")), "valence out of range", pl.col("_val")),
            (_va_bad(pl.col("_aro")), "arousal out of range", pl.col("_aro")),
        ]
    )
    image_names = pl.DataFrame(
        {"number": list(image_of), "_image": list(image_of.values())}, schema={"number": pl.String, "_image": pl.String}
    )
    frame = frame.join(image_names, on="number", how="left", maintain_order="left")
    valence = pl.col("_val").cast(pl.Float32)
    arousal = pl.col("_aro").cast(pl.Float32)
    return frame.with_columns(reason, detail).select(
        pl.format("{}/{}", pl.lit(folder), "number").alias("id"),
        pl.lit(DATASET).alias("dataset"),
        pl.lit(split).alias("split"),
        pl.format("{}/annotations/{}_exp.npy", pl.lit(folder), "number").alias("source_file"),
        pl.lit(0, dtype=pl.Int64).alias("source_row"),
        pl.format("{}/images/{}", pl.lit(folder), pl.col("_image").fill_null(pl.format("{}.jpg", "number"))).alias(
            "source_path"
        ),
        expression.alias("raw_label"),
        expression.alias("label"),
        *_va_columns(valence, arousal),
        pl.when(~landmarks_bad).then(pl.col("_lnd")).alias("landmarks"),
        "_reason",
        "_detail",
    )


# --------------------------------------------------------------------------------------
# Writer (used by curate.synth; round-trip with read)
# --------------------------------------------------------------------------------------


def cropped_annotation_paths(split: str, number: int | str) -> dict[str, str]:
    """Relative paths of the four ``.npy`` files of one cropped-layout id."""
    folder = CROPPED_DIRS[split]
    return {kind: f"{folder}/annotations/{number}_{kind}.npy" for kind in CROPPED_KINDS}


def cropped_image_path(split: str, number: int | str) -> str:
    return f"{CROPPED_DIRS[split]}/images/{number}.jpg"


def write_cropped_annotations(
    manual_dir: str | Path,
    split: str,
    numbers: Any,
    expression: Any,
    valence: Any,
    arousal: Any,
    landmarks: Any,
    *,
    expression_as_text: bool = True,
) -> int:
    """Write ``<n>_{exp,val,aro,lnd}.npy`` for each id number; returns the number of files.

    ``expression`` is stored as a 0-d text array (``np.array('3')``, like the release) unless
    ``expression_as_text`` is False; valence/arousal as 0-d float64 (null/NaN -> -2);
    landmarks as ``(136,)`` float64.
    """
    root = Path(manual_dir)
    folder = root / CROPPED_DIRS[split] / "annotations"
    folder.mkdir(parents=True, exist_ok=True)
    numbers = np.asarray(numbers)
    expression = np.asarray(expression, dtype=np.int64)
    valence = np.nan_to_num(np.asarray(valence, dtype=np.float64), nan=VA_SENTINEL)
    arousal = np.nan_to_num(np.asarray(arousal, dtype=np.float64), nan=VA_SENTINEL)
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(len(numbers), -1)
    for i, number in enumerate(numbers.tolist()):
        exp = np.array(str(expression[i])) if expression_as_text else np.array(expression[i])
        np.save(folder / f"{number}_exp.npy", exp)
        np.save(folder / f"{number}_val.npy", np.array(valence[i]))
        np.save(folder / f"{number}_aro.npy", np.array(arousal[i]))
        np.save(folder / f"{number}_lnd.npy", landmarks[i])
    return 4 * len(numbers)
