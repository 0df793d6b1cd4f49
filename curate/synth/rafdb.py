"""Fake RAF-DB basic manual dirs, written with the :mod:`curate.formats.rafdb` writers.

Scope
-----
:func:`generate_rafdb` writes ``basic/EmoLabel/list_patition_label.txt``, the original
images (``basic/Image/original/<stem>.jpg``, larger than the face), the 100x100 aligned
crops (``basic/Image/aligned/<stem>_aligned.jpg``, a square crop around the face box
resized), and the three annotation files per image: bounding box (``x1 y1 x2 y2``), manual
attributes (5 landmarks, gender, race, age group) and automatic attributes (37 landmarks),
all in original-image pixels. Class counts follow the published split counts (12,271
train / 3,068 test at scale 1); names are ``train_00001.jpg`` / ``test_0001.jpg`` in a
shuffled class order.

``label_noise`` flips the written RAF label of exactly ``round(rate * rows)`` images along
:data:`curate.synth.common.CONFUSIONS` (ledger ``<out>.noise_ledger.parquet``, canonical
labels). ``annotations_only`` writes the list and annotation files without images.

``layout`` writes one of the other copies people hold (:data:`curate.formats.rafdb.LAYOUTS`),
from the same draw (same seed, same faces and labels): ``basic-aligned-only`` leaves out
``basic/Image/original/``, ``basic-labels-only`` also ``basic/Annotation/``, and
``folder-per-label`` writes ``<split>/<1-7>/<stem>_aligned.jpg`` plus ``<split>_labels.csv``
(unless ``labels_csv`` is False) instead of ``basic/``.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels
from curate.formats import rafdb as fmt
from curate.formats import rafdb_copies
from curate.synth import common

DATASET = "rafdb"
#: Published counts of RAF labels 1-7 (Surprise ... Neutral).
TRAIN_COUNTS: tuple[int, ...] = (1290, 281, 717, 4772, 1982, 705, 2524)
TEST_COUNTS: tuple[int, ...] = (329, 74, 160, 1185, 478, 162, 680)
DEFAULT_SCALE = 0.1
ALIGNED_SIDE = 100
GENDER_P = (0.42, 0.53, 0.05)  # male, female, unsure
RACE_P = (0.77, 0.08, 0.15)  # Caucasian, African-American, Asian
AGE_P = (0.04, 0.19, 0.55, 0.18, 0.04)  # 0-3, 4-19, 20-39, 40-69, 70+
_STREAM_TABLE, _STREAM_NOISE, _STREAM_IMAGES = 31, 32, 33
_CANONICAL_TO_RAF = {canonical: i + 1 for i, canonical in enumerate(labels.RAFDB_TO_CANONICAL)}


def generate_rafdb(
    out: str | Path,
    *,
    scale: float | None = None,
    seed: int = 0,
    label_noise: float = 0.0,
    annotations_only: bool = False,
    layout: str = "basic",
    labels_csv: bool = True,
    workers: int | None = None,
) -> common.SynthReport:
    """Write a fake RAF-DB basic manual dir at ``out``.

    Parameters
    ----------
    out : path
        Folder to create (must be absent or empty); ``basic/`` is written inside it.
    scale : float, optional
        Fraction of the real size (default :data:`DEFAULT_SCALE`, 1.0 with
        ``annotations_only``); every class keeps at least one image per split.
    seed : int
        Same seed, same bytes (for any ``workers``).
    label_noise : float
        Fraction of images whose written label is flipped (ledger next to ``out``).
    annotations_only : bool
        Write the label list and annotation files only (``basic`` layouts).
    layout : str
        A key of :data:`curate.formats.rafdb.LAYOUTS` (default ``basic``).
    labels_csv : bool
        ``folder-per-label`` only: write ``<split>_labels.csv`` next to the split folders.
    workers : int, optional
        Processes drawing images (default ``os.cpu_count()``).
    """
    if layout not in fmt.LAYOUTS:
        raise ValueError(f"unknown RAF-DB layout {layout!r}; known: {', '.join(fmt.LAYOUTS)}")
    if annotations_only and layout == "folder-per-label":
        raise ValueError("folder-per-label is made of images: it cannot be written with annotations_only")
    started = time.perf_counter()
    scale = (1.0 if annotations_only else DEFAULT_SCALE) if scale is None else float(scale)
    common.check_options(seed=seed, scale=scale, label_noise=label_noise, workers=workers)
    common.check_out(out)
    with common.output_folder(out) as folder:
        return _write_rafdb(
            folder, scale, seed, label_noise, annotations_only, common.default_workers(workers), started,
            layout=layout, labels_csv=labels_csv,
        )  # fmt: skip


def _write_rafdb(
    out: Path, scale: float, seed: int, label_noise: float, annotations_only: bool, workers: int, started: float,
    *, layout: str, labels_csv: bool,
) -> common.SynthReport:  # fmt: skip
    rng = np.random.default_rng([seed, _STREAM_TABLE])
    raw = {
        "train": common.shuffled_labels(rng, common.scale_counts(TRAIN_COUNTS, scale), codes=range(1, 8)),
        "test": common.shuffled_labels(rng, common.scale_counts(TEST_COUNTS, scale), codes=range(1, 8)),
    }
    stems = [f"train_{i:05d}" for i in range(1, len(raw["train"]) + 1)] + [
        f"test_{i:04d}" for i in range(1, len(raw["test"]) + 1)
    ]
    splits = np.array(["train"] * len(raw["train"]) + ["test"] * len(raw["test"]))
    true = np.asarray(labels.RAFDB_TO_CANONICAL)[np.concatenate([raw["train"], raw["test"]]) - 1]
    given, flipped = common.flip_labels(
        np.random.default_rng([seed, _STREAM_NOISE]), true, label_noise, allowed=range(7)
    )
    ledger = None
    if label_noise > 0:
        ledger = common.write_noise_ledger(
            out, np.array(stems)[flipped], splits[flipped], given[flipped], true[flipped]
        )
    n = len(stems)
    sizes = rng.integers(160, 421, size=(n, 2))
    attributes = np.stack(
        [rng.choice(len(p), size=n, p=p) for p in (GENDER_P, RACE_P, AGE_P)],
        axis=1,
    )
    if annotations_only:
        boxes, landmarks5, landmarks37 = _placed(rng, seed, sizes)
        images_written = 0
    else:
        tasks = [
            {"out": str(out), "seed": seed, "chunk": k, "labels": true[s], "sizes": sizes[s], "stems": stems[s]}
            for k, s in enumerate(common.chunk_slices(n))
        ]
        results = common.run_chunks(_draw_chunk, tasks, workers)
        boxes = np.concatenate([r["boxes"] for r in results])
        landmarks5 = np.concatenate([r["landmarks5"] for r in results])
        landmarks37 = np.concatenate([r["landmarks37"] for r in results])
        images_written = 2 * n
    corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    raw_given = np.array([_CANONICAL_TO_RAF[c] for c in given.tolist()], dtype=np.int64)
    fmt.write_label_list(out, [f"{stem}.jpg" for stem in stems], raw_given)
    fmt.write_annotations(
        out, stems, corners, landmarks5, attributes[:, 0], attributes[:, 1], attributes[:, 2], landmarks37
    )
    files = _keep_layout(out, layout, stems, splits, raw_given, labels_csv=labels_csv)
    if layout != "basic" and images_written:
        images_written = n  # the aligned faces only
    n_train = len(raw["train"])
    content: dict[str, Any] = {
        "dataset": DATASET,
        "layout": layout,
        "seed": seed,
        "scale": scale,
        "label_noise": label_noise,
        "annotations_only": annotations_only,
        "generator_version": common.GENERATOR_VERSION,
        "files": files,
        "split_counts": {"train": n_train, "test": n - n_train},
        "class_counts": common.class_counts({"train": given[:n_train], "test": given[n_train:]}),
        "raw_class_counts": common.class_counts({"train": raw_given[:n_train], "test": raw_given[n_train:]}),
        "true_class_counts": common.class_counts({"train": true[:n_train], "test": true[n_train:]}),
        "images_written": images_written,
        "quirks": {},
        "expected_reader_rejects": {},
        "flipped": len(flipped),
        "noise_ledger": ledger.name if ledger else None,
    }
    return common.finish(out, content, started=started)


def _keep_layout(
    out: Path, layout: str, stems: list[str], splits: np.ndarray, raw: np.ndarray, *, labels_csv: bool
) -> list[str]:
    """Turn the written ``basic`` copy into ``layout``; the annotation files it holds (manifest ``files``)."""
    if layout == "basic":
        return [fmt.LABEL_FILE]
    if layout in ("basic-aligned-only", "basic-labels-only"):
        shutil.rmtree(out / fmt.ORIGINAL_DIR, ignore_errors=True)
        if layout == "basic-labels-only":
            shutil.rmtree(out / fmt.ANNOTATION_ROOT)
        return [fmt.LABEL_FILE]
    files = []
    for split in rafdb_copies.FOLDER_SPLITS:
        chosen = np.flatnonzero(splits == split)
        for i in chosen.tolist():
            target = out / rafdb_copies.folder_image_path(split, int(raw[i]), stems[i])
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / fmt.aligned_path(stems[i]), target)
        if labels_csv:
            rafdb_copies.write_labels_csv(out, split, [stems[i] for i in chosen.tolist()], raw[chosen])
            files.append(rafdb_copies.labels_csv(split))
    shutil.rmtree(out / "basic")
    return files


def _jpeg(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def aligned_crop(image: Any, box: tuple[float, float, float, float], side: int = ALIGNED_SIDE) -> Any:
    """Square crop around the face box (1.2x its longer side), resized to ``side`` pixels."""
    from PIL import Image

    x, y, w, h = box
    half = 0.6 * max(w, h)
    cx, cy = x + w / 2.0, y + h / 2.0
    crop = image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return crop.resize((side, side), Image.Resampling.BICUBIC)


def _draw_chunk(task: dict[str, Any]) -> dict[str, np.ndarray]:
    """Draw one chunk: original and aligned JPEGs, plus box and landmarks (worker process)."""
    from curate.synth.faces import draw_face

    rng = common.chunk_rng(task["seed"], _STREAM_IMAGES, task["chunk"])
    out = Path(task["out"])
    (out / fmt.ORIGINAL_DIR).mkdir(parents=True, exist_ok=True)
    (out / fmt.ALIGNED_DIR).mkdir(parents=True, exist_ok=True)
    n = len(task["stems"])
    boxes = np.zeros((n, 4))
    landmarks5 = np.zeros((n, 5, 2), dtype=np.float32)
    landmarks37 = np.zeros((n, 37, 2), dtype=np.float32)
    for i, stem in enumerate(task["stems"]):
        width, height = (int(v) for v in task["sizes"][i])
        face = draw_face(rng, int(task["labels"][i]), size=(width, height), face_fraction=(0.35, 0.7))
        boxes[i] = face.box
        landmarks5[i] = face.landmarks5
        landmarks37[i] = face.landmarks37
        (out / fmt.original_path(stem)).write_bytes(_jpeg(face.image))
        (out / fmt.aligned_path(stem)).write_bytes(_jpeg(aligned_crop(face.image, face.box)))
    return {"boxes": boxes, "landmarks5": landmarks5, "landmarks37": landmarks37}


def _placed(rng: np.random.Generator, seed: int, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes and landmarks without drawing (annotations-only mode)."""
    from curate.synth.faces import LANDMARKS37_FROM_68

    n = len(sizes)
    short = sizes.min(axis=1).astype(np.float64)
    side = short * rng.uniform(0.35, 0.7, size=n)
    width = side * rng.uniform(0.8, 0.95, size=n)
    x = rng.uniform(0.0, 1.0, size=n) * (sizes[:, 0] - 1 - width)
    y = rng.uniform(0.0, 1.0, size=n) * (sizes[:, 1] - 1 - side)
    boxes = np.stack([x, y, width, side], axis=1)
    lm68 = common.place_templates(rng, common.landmark_templates(seed), boxes)
    lm5 = np.stack(
        [lm68[:, 36:42].mean(axis=1), lm68[:, 42:48].mean(axis=1), lm68[:, 30], lm68[:, 48], lm68[:, 54]], axis=1
    )
    return boxes, lm5, lm68[:, LANDMARKS37_FROM_68]
