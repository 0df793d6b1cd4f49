"""Fake AffectNet manual dirs in either release layout, written with the format writers.

Scope
-----
:func:`generate_affectnet` writes what a user would place in the TFDS manual dir:

``original``
    ``Manually_Annotated_file_lists/{training,validation}.csv`` and
    ``Manually_Annotated_Images/<number>/<56 hex>.<ext>``. Training follows the published
    class proportions (414,800 rows at scale 1), validation is balanced (500 per class at
    scale 1). Images are full pictures larger than the face (background around it); the
    CSV box is the drawn face box. Quirks, deterministic per seed and recorded in the
    manifest: mixed-case extensions saved in their real formats (JPEG, PNG, BMP, LZW TIFF --
    TensorFlow decodes none of the TIFFs), one header spelling chosen at random
    (``subDirectory_filePath`` or ``#subDirectory_filePath``), three training rows with a
    non-positive box size, one truncated image file and one listed image that is missing.
``cropped``
    ``{train_set,val_set}/images/<id>.jpg`` (224x224) and
    ``annotations/<id>_{exp,val,aro,lnd}.npy`` (expression as text, like the release),
    integer ids with gaps, classes 0-7 only (287,651 / 3,999 rows at scale 1).

Valence/arousal come from :func:`curate.synth.faces.sample_valence_arousal` (-2 for labels 9
and 10) and steer the drawn expression; class 10 images are non-faces. With
``annotations_only`` no image is drawn: boxes and landmarks are placed from a few drawn
landmark templates with vectorised NumPy, so the full-size ``training.csv`` takes seconds.

The manifest ``<out>.synth_manifest.json`` and, with label noise, the ledger
``<out>.noise_ledger.parquet`` are written next to ``out`` (see :mod:`curate.synth.common`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.formats import affectnet as fmt
from curate.formats import affectnet_cropped as cropped_fmt
from curate.synth import common

DATASET = "affectnet"
#: Published training counts of labels 0-10 (original release).
TRAIN_COUNTS: tuple[int, ...] = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750, 33088, 11645, 82414)
VALIDATION_PER_CLASS = 500
#: Cropped "AffectNet-8": the training counts of labels 0-7 (287,651) and 3,999 validation rows.
CROPPED_TRAIN_COUNTS: tuple[int, ...] = TRAIN_COUNTS[:8]
CROPPED_VALIDATION_COUNTS: tuple[int, ...] = (500, 500, 500, 500, 500, 500, 500, 499)
#: Default scale with images: about 2,100 images (original) in a few seconds per core.
DEFAULT_SCALE = 0.005
EXTENSIONS: tuple[str, ...] = ("jpg", "JPG", "jpeg", "png", "PNG", "bmp", "tif")
EXTENSION_WEIGHTS: tuple[float, ...] = (0.60, 0.22, 0.06, 0.06, 0.02, 0.02, 0.02)
NON_POSITIVE_BOX_ROWS = 3
LAYOUTS = ("original", "cropped")
_STREAM_TABLE, _STREAM_NOISE, _STREAM_IMAGES, _STREAM_TEMPLATES = 11, 12, 13, 14
_WRITE_CHUNK_ROWS = 100_000


def generate_affectnet(
    out: str | Path,
    *,
    layout: str = "original",
    scale: float | None = None,
    seed: int = 0,
    label_noise: float = 0.0,
    annotations_only: bool = False,
    workers: int | None = None,
    validation_scale: float | None = None,
) -> common.SynthReport:
    """Write a fake AffectNet manual dir at ``out``.

    Parameters
    ----------
    out : path
        Folder to create (must be absent or empty).
    layout : {"original", "cropped"}
        Release layout to write (default ``original``).
    scale : float, optional
        Fraction of the real size; default :data:`DEFAULT_SCALE` with images, 1.0 with
        ``annotations_only``. Every class keeps at least one row.
    seed : int
        Same seed, same bytes (for any ``workers``).
    label_noise : float
        Fraction of rows whose written label is flipped along realistic confusions (images
        show the true label); the flips go to ``<out>.noise_ledger.parquet``.
    annotations_only : bool
        Write the annotation files only (no images).
    workers : int, optional
        Processes drawing images (default ``os.cpu_count()``).
    validation_scale : float, optional
        Fraction of the real validation size (default: ``scale``); a demo raises it so the
        balanced view has enough images per class.

    Returns
    -------
    SynthReport
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown AffectNet layout {layout!r}; known: {', '.join(LAYOUTS)}")
    started = time.perf_counter()
    scale = (1.0 if annotations_only else DEFAULT_SCALE) if scale is None else float(scale)
    validation_scale = scale if validation_scale is None else float(validation_scale)
    common.check_options(
        seed=seed, scale=scale, label_noise=label_noise, workers=workers, validation_scale=validation_scale
    )
    common.check_out(out)
    generate = _generate_original if layout == "original" else _generate_cropped
    with common.output_folder(out) as out:
        workers = common.default_workers(workers)
        content = generate(out, (scale, validation_scale), seed, label_noise, annotations_only, workers)
        content.update(
            dataset=DATASET,
            layout=layout,
            seed=seed,
            scale=scale,
            validation_scale=validation_scale,
            label_noise=label_noise,
            annotations_only=annotations_only,
            generator_version=common.GENERATOR_VERSION,
        )
        return common.finish(out, content, started=started)


def _noise(
    out: Path, seed: int, true: np.ndarray, ids: np.ndarray, splits: np.ndarray, rate: float, allowed: range
) -> tuple[np.ndarray, np.ndarray, str | None]:
    given, flipped = common.flip_labels(np.random.default_rng([seed, _STREAM_NOISE]), true, rate, allowed=list(allowed))
    ledger = None
    if rate > 0:
        ledger = str(common.write_noise_ledger(out, ids[flipped], splits[flipped], given[flipped], true[flipped]))
    return given, flipped, ledger


# --------------------------------------------------------------------------------------
# Original layout
# --------------------------------------------------------------------------------------


def _hex_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random 56-character lower-case hex names (vectorised)."""
    text = rng.bytes(28 * n).hex().encode("ascii")
    return np.frombuffer(text, dtype="S56").astype(str) if n else np.zeros(0, dtype=str)


def _original_table(rng: np.random.Generator, scales: tuple[float, float]) -> dict[str, Any]:
    train_true = common.shuffled_labels(rng, common.scale_counts(TRAIN_COUNTS, scales[0]))
    per_class = max(1, round(VALIDATION_PER_CLASS * scales[1]))
    validation_true = common.shuffled_labels(rng, [per_class] * len(TRAIN_COUNTS))
    true = np.concatenate([train_true, validation_true])
    n = len(true)
    splits = np.array(["train"] * len(train_true) + ["validation"] * len(validation_true))
    n_dirs = max(4, min(1300, n // 40))
    subdirs = rng.integers(1, n_dirs + 1, size=n)
    ext_index = rng.choice(len(EXTENSIONS), size=n, p=EXTENSION_WEIGHTS)
    if n >= len(EXTENSIONS):  # every extension at least once
        ext_index[rng.choice(n, size=len(EXTENSIONS), replace=False)] = np.arange(len(EXTENSIONS))
    extensions = np.array(EXTENSIONS)[ext_index]
    names = _hex_names(rng, n)
    ids = np.char.add(np.char.add(np.char.add(subdirs.astype(str), "/"), names), np.char.add(".", extensions))
    sizes = rng.integers(192, 449, size=(n, 2))
    header = fmt.HEADER_SPELLINGS[int(rng.integers(len(fmt.HEADER_SPELLINGS)))]
    # Quirk rows: distinct training rows; truncation only on JPEG files.
    order = rng.permutation(len(train_true))
    bad_box = np.sort(order[: min(NON_POSITIVE_BOX_ROWS, len(order))])
    rest = order[len(bad_box) :]
    jpeg_rest = rest[np.isin(extensions[rest], ("jpg", "JPG", "jpeg"))]
    truncated = jpeg_rest[:1]
    missing = rest[~np.isin(rest, truncated)][:1]
    return {
        "true": true,
        "splits": splits,
        "ids": ids,
        "extensions": extensions,
        "sizes": sizes,
        "header": header,
        "bad_box": bad_box,
        "truncated": truncated,
        "missing": missing,
        "n_train": len(train_true),
    }


def _encode(image: Any, extension: str) -> bytes:
    import io

    buffer = io.BytesIO()
    kind = extension.lower()
    if kind in ("jpg", "jpeg"):
        image.save(buffer, format="JPEG", quality=90)
    elif kind == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif kind == "bmp":
        image.save(buffer, format="BMP")
    elif kind in ("tif", "tiff"):
        image.save(buffer, format="TIFF", compression="tiff_lzw")
        return _zero_tiff_gaps(buffer.getvalue())
    else:
        raise ValueError(f"unsupported extension {extension!r}")
    return buffer.getvalue()


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def _zero_tiff_gaps(data: bytes) -> bytes:
    """Zero the bytes of a little-endian, single-IFD TIFF that nothing points to.

    libtiff leaves the word-alignment padding before the directory uninitialised, so the same
    image could give different bytes; zeroing every byte outside the header, the directory,
    the out-of-line tag values and the strips makes the file deterministic (and changes no
    value a reader sees).
    """
    import struct

    if data[:4] != b"II*\x00":
        return data
    covered = np.zeros(len(data), dtype=bool)
    covered[:8] = True
    ifd = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd)[0]
    covered[ifd : ifd + 2 + 12 * count + 4] = True
    strips: dict[int, list[int]] = {}
    for i in range(count):
        entry = ifd + 2 + 12 * i
        tag, kind, n, value = struct.unpack_from("<HHII", data, entry)
        size = _TIFF_TYPE_SIZES.get(kind, 1) * n
        where = value if size > 4 else entry + 8
        if size > 4:
            covered[value : value + size] = True
        if tag in (273, 279) and kind in (3, 4):  # StripOffsets, StripByteCounts
            strips[tag] = list(struct.unpack_from("<" + ("H" if kind == 3 else "I") * n, data, where))
    if set(strips) != {273, 279}:
        return data
    for offset, length in zip(strips[273], strips[279], strict=True):
        covered[offset : offset + length] = True
    array = np.frombuffer(data, dtype=np.uint8).copy()
    array[~covered] = 0
    return array.tobytes()


def _draw_original_chunk(task: dict[str, Any]) -> dict[str, np.ndarray]:
    """Draw and save one chunk of original-layout images (runs in a worker process)."""
    from curate.synth.faces import draw_face, sample_valence_arousal

    rng = common.chunk_rng(task["seed"], _STREAM_IMAGES, task["chunk"])
    images_dir = Path(task["out"]) / fmt.IMAGES_DIR
    n = len(task["labels"])
    boxes = np.zeros((n, 4), dtype=np.float64)
    landmarks = np.zeros((n, 68, 2), dtype=np.float32)
    va = np.zeros((n, 2), dtype=np.float64)
    for i in range(n):
        label = int(task["labels"][i])
        valence, arousal = sample_valence_arousal(rng, label)
        annotated = label < 9
        face = draw_face(
            rng,
            label,
            size=(int(task["sizes"][i][0]), int(task["sizes"][i][1])),
            valence=valence if annotated else None,
            arousal=arousal if annotated else None,
            face_fraction=(0.3, 0.75),
        )
        boxes[i] = face.box
        landmarks[i] = face.landmarks68
        va[i] = (valence, arousal)
        action = task["actions"][i]
        if action == "missing":
            continue
        data = _encode(face.image, task["extensions"][i])
        if action == "truncate":
            data = data[: len(data) // 2]
        path = images_dir / task["paths"][i]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return {"boxes": boxes, "landmarks": landmarks, "va": va}


def _va_parameters(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-label mean and std of :func:`sample_valence_arousal`, estimated once (vectorised use)."""
    from curate.synth.faces import sample_valence_arousal

    rng = np.random.default_rng([seed, _STREAM_TEMPLATES, 1])
    means = np.full((11, 2), -2.0)
    stds = np.zeros((11, 2))
    for label in range(9):
        samples = np.array([sample_valence_arousal(rng, label) for _ in range(400)])
        means[label], stds[label] = samples.mean(0), samples.std(0)
    return means, stds


def _sample_va(rng: np.random.Generator, true: np.ndarray, means: np.ndarray, stds: np.ndarray) -> np.ndarray:
    va = np.clip(rng.normal(means[true], stds[true]), -1.0, 1.0)
    return np.where((true >= 9)[:, None], -2.0, va)


def _rows_frame(
    ids: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, given: np.ndarray, va: np.ndarray
) -> pl.DataFrame:
    """Original-layout text rows: integer boxes, 2-decimal landmarks, 6-decimal valence/arousal."""
    n = len(ids)
    flat = pl.Series(np.round(landmarks.reshape(n, -1), 2).astype(np.float32))
    valence = np.round(va[:, 0], 6)
    arousal = np.round(va[:, 1], 6)
    return pl.DataFrame(
        {
            "id": ids,
            "face_x": boxes[:, 0],
            "face_y": boxes[:, 1],
            "face_width": boxes[:, 2],
            "face_height": boxes[:, 3],
            "facial_landmarks": flat.cast(pl.Array(pl.String, flat.dtype.shape[0])).arr.join(";"),
            "label": given,
            "valence": valence,
            "arousal": arousal,
        }
    ).with_columns(pl.col("face_x", "face_y", "face_width", "face_height").cast(pl.Int64))


def _integer_boxes(boxes: np.ndarray) -> np.ndarray:
    out = np.empty_like(boxes, dtype=np.int64)
    out[:, 0:2] = np.floor(boxes[:, 0:2])
    out[:, 2:4] = np.maximum(1, np.rint(boxes[:, 2:4]))
    return out


def _generate_original(
    out: Path, scale: tuple[float, float], seed: int, label_noise: float, annotations_only: bool, workers: int
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, _STREAM_TABLE])
    table = _original_table(rng, scale)
    true, ids, splits = table["true"], table["ids"], table["splits"]
    n = len(true)
    given, flipped, ledger = _noise(out, seed, true, ids, splits, label_noise, range(11))
    if annotations_only:
        table["truncated"] = table["missing"] = np.zeros(0, dtype=np.int64)
        boxes, landmarks, va = _placed_annotations(rng, seed, true, table["sizes"], (0.3, 0.75))
        images_written = 0
    else:
        actions = np.array(["write"] * n, dtype=object)
        actions[table["truncated"]] = "truncate"
        actions[table["missing"]] = "missing"
        tasks = [
            {
                "out": str(out),
                "seed": seed,
                "chunk": k,
                "labels": true[s],
                "sizes": table["sizes"][s],
                "paths": ids[s].tolist(),
                "extensions": table["extensions"][s].tolist(),
                "actions": actions[s].tolist(),
            }
            for k, s in enumerate(common.chunk_slices(n))
        ]
        results = common.run_chunks(_draw_original_chunk, tasks, workers)
        boxes = np.concatenate([r["boxes"] for r in results]) if results else np.zeros((0, 4))
        landmarks = np.concatenate([r["landmarks"] for r in results]) if results else np.zeros((0, 68, 2))
        va = np.concatenate([r["va"] for r in results]) if results else np.zeros((0, 2))
        images_written = n - len(table["missing"])
    int_boxes = _integer_boxes(boxes)
    bad = table["bad_box"]
    kinds = np.arange(len(bad)) % 3  # width 0, negative width, height 0
    int_boxes[bad[kinds == 0], 2] = 0
    int_boxes[bad[kinds == 1], 2] = -int_boxes[bad[kinds == 1], 2]
    int_boxes[bad[kinds == 2], 3] = 0
    n_train = table["n_train"]
    for split, part in (("train", slice(0, n_train)), ("validation", slice(n_train, n))):
        rows = range(part.start, part.stop)
        chunks = (
            _rows_frame(ids[s], int_boxes[s], landmarks[s], given[s], va[s])
            for s in (
                slice(a, min(a + _WRITE_CHUNK_ROWS, rows.stop)) for a in range(rows.start, rows.stop, _WRITE_CHUNK_ROWS)
            )
        )
        fmt.write_original_csv(out / fmt.ORIGINAL_FILES[split], chunks, header=table["header"])
    ext_counts = {ext: int((table["extensions"] == ext).sum()) for ext in EXTENSIONS}

    def quirk(rows: np.ndarray, **extra: Any) -> dict[str, Any]:
        return {"count": len(rows), "ids": ids[rows].tolist(), **extra}

    tif_rows = np.flatnonzero(table["extensions"] == "tif") if not annotations_only else np.zeros(0, dtype=np.int64)
    quirks = {
        "non_positive_box": quirk(bad, reader_reject_reason="non-positive face box"),
        "truncated_image": quirk(table["truncated"], effect="image file cut to half its bytes"),
        "missing_image": quirk(table["missing"], effect="listed image file not written"),
        "tif_lzw": quirk(tif_rows, effect="LZW TIFF: Pillow reads it, tf.io.decode_image does not"),
    }
    return {
        "files": dict(fmt.ORIGINAL_FILES),
        "header": table["header"],
        "split_counts": {"train": n_train, "validation": n - n_train},
        "class_counts": common.class_counts({"train": given[:n_train], "validation": given[n_train:]}),
        "true_class_counts": common.class_counts({"train": true[:n_train], "validation": true[n_train:]}),
        "extension_counts": ext_counts,
        "images_written": images_written,
        "quirks": quirks,
        "expected_reader_rejects": {"non-positive face box": len(bad)},
        "expected_image_failures": {
            "truncated image": len(table["truncated"]),
            "missing image": len(table["missing"]),
        },
        "flipped": len(flipped),
        "noise_ledger": Path(ledger).name if ledger else None,
    }


def _placed_annotations(
    rng: np.random.Generator, seed: int, true: np.ndarray, sizes: np.ndarray, fraction: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes, landmarks and valence/arousal without drawing (annotations-only mode)."""
    n = len(true)
    templates = common.landmark_templates(seed)
    means, stds = _va_parameters(seed)
    short = sizes.min(axis=1).astype(np.float64)
    side = short * rng.uniform(fraction[0], fraction[1], size=n)
    width = side * rng.uniform(0.8, 0.95, size=n)
    x = rng.uniform(0.0, 1.0, size=n) * (sizes[:, 0] - 1 - width)
    y = rng.uniform(0.0, 1.0, size=n) * (sizes[:, 1] - 1 - side)
    boxes = np.stack([x, y, width, side], axis=1)
    landmarks = common.place_templates(rng, templates, boxes)
    return boxes, landmarks, _sample_va(rng, true, means, stds)


# --------------------------------------------------------------------------------------
# Cropped layout
# --------------------------------------------------------------------------------------


def _gapped_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    space = int(n * 1.45) + 10
    return np.sort(rng.choice(space, size=n, replace=False))


def _draw_cropped_chunk(task: dict[str, Any]) -> dict[str, np.ndarray]:
    """Draw and save one chunk of 224x224 crops (runs in a worker process)."""
    from curate.synth.faces import draw_face, sample_valence_arousal

    rng = common.chunk_rng(task["seed"], _STREAM_IMAGES, task["chunk"])
    out = Path(task["out"])
    n = len(task["labels"])
    landmarks = np.zeros((n, 68, 2), dtype=np.float32)
    va = np.zeros((n, 2), dtype=np.float64)
    for i in range(n):
        label = int(task["labels"][i])
        valence, arousal = sample_valence_arousal(rng, label)
        face = draw_face(rng, label, size=(224, 224), valence=valence, arousal=arousal, face_fraction=(0.75, 0.95))
        landmarks[i] = face.landmarks68
        va[i] = (valence, arousal)
        path = out / task["paths"][i]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_encode(face.image, "jpg"))
    return {"landmarks": landmarks, "va": va}


def _generate_cropped(
    out: Path, scale: tuple[float, float], seed: int, label_noise: float, annotations_only: bool, workers: int
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, _STREAM_TABLE])
    parts = {
        "train": common.shuffled_labels(rng, common.scale_counts(CROPPED_TRAIN_COUNTS, scale[0])),
        "validation": common.shuffled_labels(rng, common.scale_counts(CROPPED_VALIDATION_COUNTS, scale[1])),
    }
    numbers = {split: _gapped_ids(rng, len(values)) for split, values in parts.items()}
    true = np.concatenate(list(parts.values()))
    splits = np.concatenate([[split] * len(values) for split, values in parts.items()]).astype(str)
    number_all = np.concatenate(list(numbers.values()))
    ids = np.array(
        [f"{cropped_fmt.CROPPED_DIRS[s]}/{k}" for s, k in zip(splits.tolist(), number_all.tolist(), strict=True)]
    )
    given, flipped, ledger = _noise(out, seed, true, ids, splits, label_noise, range(8))
    n = len(true)
    if annotations_only:
        sizes = np.full((n, 2), 224)
        _, landmarks, va = _placed_annotations(rng, seed, true, sizes, (0.8, 0.95))
        images_written = 0
    else:
        paths = [
            cropped_fmt.cropped_image_path(s, k) for s, k in zip(splits.tolist(), number_all.tolist(), strict=True)
        ]
        tasks = [
            {"out": str(out), "seed": seed, "chunk": k, "labels": true[s], "paths": paths[s]}
            for k, s in enumerate(common.chunk_slices(n))
        ]
        results = common.run_chunks(_draw_cropped_chunk, tasks, workers)
        landmarks = np.concatenate([r["landmarks"] for r in results])
        va = np.concatenate([r["va"] for r in results])
        images_written = n
    landmarks = np.round(landmarks.reshape(n, -1).astype(np.float64), 2)
    va = np.round(va, 6)
    start = 0
    for split, values in parts.items():
        part = slice(start, start + len(values))
        cropped_fmt.write_cropped_annotations(
            out, split, numbers[split], given[part], va[part, 0], va[part, 1], landmarks[part]
        )
        start += len(values)
    n_train = len(parts["train"])
    return {
        "files": {split: f"{folder}/annotations" for split, folder in cropped_fmt.CROPPED_DIRS.items()},
        "split_counts": {split: len(values) for split, values in parts.items()},
        "class_counts": common.class_counts({"train": given[:n_train], "validation": given[n_train:]}),
        "true_class_counts": common.class_counts({"train": true[:n_train], "validation": true[n_train:]}),
        "images_written": images_written,
        "quirks": {},
        "expected_reader_rejects": {},
        "expected_image_failures": {},
        "flipped": len(flipped),
        "noise_ledger": Path(ledger).name if ledger else None,
    }
