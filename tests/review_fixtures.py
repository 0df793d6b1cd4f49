"""Shared fixtures and fakes of the ``tests/test_review_*.py`` modules.

* ``fo`` (session): FiftyOne connected to a private database folder under pytest's tmp dir,
  configured *before* FiftyOne connects, so test sessions never share state (and never touch
  ``~/.fiftyone``).
* :func:`write_affectnet` -- a tiny AffectNet original-layout manual dir (Pillow images + the
  format writer), :func:`write_ferplus` -- a tiny FERPlus manual dir;
  :func:`write_run` -- a run folder with ``predictions.parquet`` per ``docs/contracts.md``.

Import the fixtures into a test module with ``from review_fixtures import fo  # noqa: F401``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curate import labels

_CONNECTED: dict[str, Any] = {}


@pytest.fixture(scope="session")
def fo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The ``fiftyone`` module, connected to a fresh database folder for this session.

    Test modules import this fixture, so pytest may set it up once per module: the first
    setup configures and connects, later ones return the same connection.
    """
    if "fo" in _CONNECTED:
        return _CONNECTED["fo"]
    for variable in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT"):
        os.environ.pop(variable, None)
    from curate.review import db

    db.configure(database_dir=tmp_path_factory.mktemp("fiftyone-db"))
    os.environ["FIFTYONE_SHOW_PROGRESS_BARS"] = "false"
    module = db.connect()
    module.config.show_progress_bars = False
    _CONNECTED["fo"] = module
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _landmarks(box: tuple[float, float, float, float], rng: np.random.Generator) -> list[float]:
    x, y, w, h = box
    points = np.stack([x + w * rng.uniform(0.1, 0.9, 68), y + h * rng.uniform(0.1, 0.9, 68)], axis=1)
    return np.round(points, 2).reshape(-1).tolist()


def write_affectnet(root: Path, *, n_train: int = 33, n_validation: int = 11, seed: int = 0) -> Any:
    """A tiny AffectNet original-layout manual dir; returns the annotation frame written.

    Labels cycle through all 11 canonical labels; valence/arousal are -2 for 9 and 10; one
    listed image is missing on disk (its row still loads, without metadata).
    """
    import polars as pl
    from PIL import Image, ImageDraw

    from curate.formats import affectnet as fmt

    rng = np.random.default_rng(seed)
    rows = []
    images = root / "Manually_Annotated_Images"
    for i in range(n_train + n_validation):
        split = "train" if i < n_train else "validation"
        label = i % labels.NUM_CANONICAL
        width, height = int(rng.integers(64, 96)), int(rng.integers(64, 96))
        box = (float(rng.integers(2, 12)), float(rng.integers(2, 12)), 40.0, 44.0)
        relative = f"{i % 3 + 1}/{i:056x}.jpg"
        if i != 5:  # row 5's image is missing
            path = images / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(0, 255, 3)))
            ImageDraw.Draw(image).ellipse([box[0], box[1], box[0] + box[2], box[1] + box[3]], fill=(230, 200, 170))
            image.save(path, quality=85)
        annotated = label not in labels.NOT_ANNOTATED_VA_LABELS
        rows.append(
            {
                "id": relative,
                "split": split,
                "face_x": box[0],
                "face_y": box[1],
                "face_width": box[2],
                "face_height": box[3],
                "landmarks": _landmarks(box, rng),
                "label": label,
                "valence": round(float(rng.uniform(-1, 1)), 3) if annotated else None,
                "arousal": round(float(rng.uniform(-1, 1)), 3) if annotated else None,
            }
        )
    frame = pl.DataFrame(rows, schema_overrides={"landmarks": pl.List(pl.Float64)})
    fmt.write_original(root, frame)
    return frame


def write_ferplus(root: Path, *, n: int = 24, seed: int = 0) -> Any:
    """A tiny FERPlus manual dir (both CSVs); returns the votes array."""
    from curate.formats import ferplus as fmt

    rng = np.random.default_rng(seed)
    emotion = np.arange(n) % 7
    pixels = rng.integers(0, 255, size=(n, 48, 48), dtype=np.uint8)
    usage = ["Training" if i < n * 2 // 3 else ("PublicTest" if i % 2 else "PrivateTest") for i in range(n)]
    votes = np.zeros((n, 10), dtype=np.int64)
    for i in range(n):
        column = labels.FERPLUS_VOTE_TO_CANONICAL.index(labels.FER2013_TO_CANONICAL[emotion[i]])
        if i % 4 == 0:  # annotators split 5/5: high entropy
            votes[i, column] = 5
            votes[i, (column + 1) % 8] = 5
        else:
            votes[i, column] = 9
            votes[i, 9] = 1
    fmt.write_fer2013(root / "fer2013.csv", emotion, pixels, usage)
    fmt.write_ferplus_votes(root / "fer2013new.csv", usage, [fmt.image_name(i) for i in range(n)], votes)
    return votes


def write_run(
    folder: Path,
    *,
    ids: Sequence[str],
    given: Sequence[int],
    true: Sequence[int] | None = None,
    splits: Sequence[str] | None = None,
    dataset: str = "affectnet",
    policy: str = "drop-8-plus",
    vote_mode: str | None = None,
    seed: int = 0,
    complete: bool = True,
    with_va: bool = True,
) -> Path:
    """A run folder whose model predicts ``true`` (default ``given``) confidently, with some noise.

    ``given`` / ``true`` are class indices of ``policy``. Validation rows go to the
    ``class_frequency`` view (the first three also to ``balanced``: duplicates the loader must
    collapse); train rows to ``train_oof``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    policy_object = labels.get_policy(policy)
    k = policy_object.num_classes
    rng = np.random.default_rng(seed)
    given = np.asarray(given, dtype=np.int64)
    target = np.asarray(given if true is None else true, dtype=np.int64)
    splits = list(splits) if splits is not None else ["validation"] * len(ids)
    logits = rng.normal(0.0, 0.5, size=(len(ids), k)).astype(np.float32)
    logits[np.arange(len(ids)), target] += 4.0
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = (np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)).astype(np.float32)
    views = ["train_oof" if s == "train" else "class_frequency" for s in splits]
    order = list(range(len(ids)))
    extra = [i for i, v in enumerate(views) if v == "class_frequency"][:3]

    def column(values: Any) -> Any:
        return [values[i] for i in order + extra]

    table = pa.table(
        {
            "id": pa.array(column(list(ids)), pa.string()),
            "view": pa.array(column(views)[: len(order)] + ["balanced"] * len(extra), pa.string()),
            "split": pa.array(column(splits), pa.string()),
            "label": pa.array(column(given.tolist()), pa.int64()),
            "predicted": pa.array(column(probabilities.argmax(axis=1).tolist()), pa.int64()),
            "confidence": pa.array(column(probabilities.max(axis=1).tolist()), pa.float32()),
            "probabilities": pa.array(column(probabilities.tolist()), pa.list_(pa.float32())),
            "logits": pa.array(column(logits.tolist()), pa.list_(pa.float32())),
            "valence_pred": pa.array(
                column(rng.uniform(-1, 1, len(ids)).tolist()) if with_va else [None] * (len(order) + len(extra)),
                pa.float32(),
            ),
            "arousal_pred": pa.array(
                column(rng.uniform(-1, 1, len(ids)).tolist()) if with_va else [None] * (len(order) + len(extra)),
                pa.float32(),
            ),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "predictions.parquet")
    config = {
        "name": folder.name,
        "dataset": dataset,
        "policy": policy,
        "policy_name": policy_object.name,
        "vote_mode": vote_mode,
        "data_dir": None,
        "image_size": 96,
        "model": "fake",
        "seed": seed,
        "class_names": list(policy_object.classes),
    }
    (folder / "config.json").write_text(json.dumps(config))
    if complete:
        (folder / "COMPLETE").write_text("")
    return folder
