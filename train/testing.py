"""Small builder-shaped datasets in memory, for tests and for trying the trainer quickly.

:func:`synthetic_source` draws procedural faces (``curate.synth.faces``) and returns a
:class:`train.sources.InMemorySource` whose examples carry the features of
``docs/contracts.md`` that the trainer reads (``id``, ``image``, the label feature, V/A and the 68
landmarks in image pixels for AffectNet). It is not a substitute for the TFDS builders' own tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from curate import datasets
from curate import labels as _labels
from train.sources import InMemorySource

#: Splits per dataset, as the builders write them.


def _votes_for(canonical: int, rng: np.random.Generator) -> np.ndarray:
    """Ten FER+ votes whose majority is ``canonical`` (a clear 7-8 vote winner)."""
    votes = np.zeros(10, dtype=np.int32)
    column = _labels.FERPLUS_VOTE_TO_CANONICAL.index(canonical)
    main = int(rng.integers(6, 9))
    votes[column] = main
    other = int(rng.integers(0, 8))
    other = other if other < column else other + 1
    votes[other] += 10 - main
    return votes


def synthetic_source(
    dataset: str,
    *,
    per_class: int | dict[str, int] = 20,
    classes: Sequence[int] | None = None,
    image_size: int | None = None,
    face_fraction: tuple[float, float] = (0.8, 1.0),
    seed: int = 0,
) -> InMemorySource:
    """An in-memory source of drawn faces with builder-shaped features.

    Parameters
    ----------
    dataset : {"affectnet", "ferplus", "rafdb"}
    per_class : int or dict split -> int
        Images per canonical class and split.
    classes : sequence of int, optional
        Canonical labels to draw (default: AffectNet 0-7, FERPlus and RAF-DB 0-6 + 7 for FERPlus).
    image_size : int, optional
        Stored side (default as the builder stores: 224 AffectNet crop, 48 FERPlus, 100 RAF-DB).
    face_fraction : (float, float)
        Face size range relative to the image (default: face crops, as the builders store).
    """
    from curate.synth.faces import draw_face, sample_valence_arousal

    if classes is None:
        classes = tuple(range(8)) if dataset in ("affectnet", "ferplus") else tuple(range(7))
    side = image_size or {"affectnet": 224, "ferplus": 48, "rafdb": 100}[dataset]
    rng = np.random.default_rng(seed)
    splits: dict[str, dict[str, Any]] = {}
    for split in datasets.get(dataset).splits:
        count = per_class[split] if isinstance(per_class, dict) else per_class
        rows: dict[str, list[Any]] = {"id": [], "image": []}
        extra: dict[str, list[Any]] = {}
        for canonical in classes:
            for _ in range(count):
                index = len(rows["id"])
                if dataset == "affectnet":
                    valence, arousal = sample_valence_arousal(rng, canonical)
                    face = draw_face(
                        rng,
                        canonical,
                        size=(side, side),
                        valence=None if valence < -1.5 else valence,
                        arousal=None if arousal < -1.5 else arousal,
                        face_fraction=face_fraction,
                    )
                    annotated = valence > -1.5
                    extra.setdefault("expression", []).append(canonical)
                    extra.setdefault("valence", []).append(np.float32(valence if annotated else 0.0))
                    extra.setdefault("arousal", []).append(np.float32(arousal if annotated else 0.0))
                    extra.setdefault("va_annotated", []).append(annotated)
                    extra.setdefault("landmarks", []).append(np.asarray(face.landmarks68, np.float32))
                    rows["id"].append(f"{split}_set/{index}")
                    rows["image"].append(np.asarray(face.image, dtype=np.uint8))
                elif dataset == "ferplus":
                    face = draw_face(rng, canonical, size=(side, side), grey=True, face_fraction=face_fraction)
                    extra.setdefault("votes", []).append(_votes_for(canonical, rng))
                    rows["id"].append(f"fer{split[:2]}{index:05d}")
                    rows["image"].append(np.asarray(face.image, dtype=np.uint8)[..., :1])
                else:
                    face = draw_face(rng, canonical, size=(side, side), face_fraction=face_fraction)
                    extra.setdefault("label", []).append(canonical)
                    rows["id"].append(f"{split}_{index:05d}")
                    rows["image"].append(np.asarray(face.image, dtype=np.uint8))
        data = {"id": np.array(rows["id"]), "image": np.stack(rows["image"])}
        for key, values in extra.items():
            data[key] = np.asarray(values)
        splits[split] = data
    return InMemorySource(dataset, splits)


def align_face(image: Any, landmarks: Any, size: int) -> np.ndarray | None:
    """A grey ``size x size`` uint8 crop with the eye centres at fixed positions.

    A similarity transform (rotation, scale, shift) puts the mean of the 68-point landmarks
    36-41 (image-left eye) at ``(0.3, 0.35) * size`` and of 42-47 at ``(0.7, 0.35) * size``
    (:func:`train.images.eye_alignment`, the geometry ``--align eyes`` uses in the trainer).
    ``image`` is a PIL image; ``None`` when the landmarks are missing or degenerate.
    """
    from PIL import Image

    from train.images import eye_alignment

    if landmarks is None:
        return None
    points = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if len(points) < 48:
        return None
    left, right = points[36:42].mean(0), points[42:48].mean(0)
    distance = float(np.linalg.norm(right - left))
    if not np.isfinite(distance) or distance < 1e-6:
        return None
    coefficients = eye_alignment(left, right, size)
    grey = image.convert("L").transform((size, size), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    return np.asarray(grey, np.uint8)


def aligned_affectnet_source(manual_dir: str | Any, *, image_size: int = 48, workers: int = 1) -> InMemorySource:
    """An AffectNet manual dir (either layout) as an in-memory source of landmark-aligned faces.

    Reads the annotations with :mod:`curate.formats` (ids are the reader's, as ``curate
    review load --manual-dir`` stores them), aligns each face by its 68 landmarks
    (:func:`align_face`) to a grey ``image_size`` square and returns builder-shaped splits
    (``train``, ``validation``: ``id``, ``image`` ``(N, S, S, 1)`` uint8, ``expression``,
    ``valence``, ``arousal``, ``va_annotated``). Rows without landmarks or with an unreadable
    image are left out, as the builders reject them. For benchmarks and tests of the trainer
    on raw files without a TFDS build; not a replacement for the builder.
    """
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from PIL import Image

    root = Path(manual_dir)
    annotations = datasets.read("affectnet", root).annotations
    rows = annotations.to_dicts()

    def load(row: dict[str, Any]) -> np.ndarray | None:
        try:
            with Image.open(root / row["source_path"]) as image:
                return align_face(image, row.get("landmarks"), image_size)
        except (OSError, ValueError):
            return None

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            faces = list(pool.map(load, rows))
    else:
        faces = [load(row) for row in rows]
    splits: dict[str, dict[str, Any]] = {}
    for split in datasets.get("affectnet").splits:
        chosen = [i for i, row in enumerate(rows) if row["split"] == split and faces[i] is not None]
        valence = [rows[i].get("valence") for i in chosen]
        arousal = [rows[i].get("arousal") for i in chosen]
        annotated = [
            bool(rows[i].get("va_annotated", True)) and v is not None and a is not None and v > -1.5
            for i, v, a in zip(chosen, valence, arousal, strict=True)
        ]
        splits[split] = {
            "id": np.array([str(rows[i]["id"]) for i in chosen]),
            "image": np.stack([faces[i] for i in chosen])[..., None]
            if chosen
            else np.zeros((0, image_size, image_size, 1), np.uint8),
            "expression": np.array([int(rows[i]["label"]) for i in chosen], np.int64),
            "valence": np.array([v if ok else 0.0 for v, ok in zip(valence, annotated, strict=True)], np.float32),
            "arousal": np.array([a if ok else 0.0 for a, ok in zip(arousal, annotated, strict=True)], np.float32),
            "va_annotated": np.array(annotated, bool),
        }
    return InMemorySource("affectnet", splits, config="aligned")
