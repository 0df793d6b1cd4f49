"""Small builder-shaped datasets in memory, for tests and for trying the trainer quickly.

:func:`synthetic_source` draws procedural faces (``curate.synth.faces``) and returns a
:class:`train.data.InMemorySource` whose examples carry the features of
``docs/contracts.md`` that the trainer reads (``id``, ``image``, the label feature, V/A for
AffectNet). It is not a substitute for the TFDS builders' own tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from curate import labels as _labels
from train.data import InMemorySource

#: Splits per dataset, as the builders write them.
SPLITS = {"affectnet": ("train", "validation"), "ferplus": ("train", "validation", "test"), "rafdb": ("train", "test")}


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
    for split in SPLITS[dataset]:
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
