"""Tiny annotation tables written by hand, shared by the workspace, studies and CLI tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from curate.formats.schema import ANNOTATION_SCHEMA, REJECT_SCHEMA, ParsedTables


def frame(dataset: str, rows: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """An annotation frame in the common schema; missing keys are null."""
    data = {name: [row.get(name) for row in rows] for name in ANNOTATION_SCHEMA}
    data["dataset"] = [row.get("dataset", dataset) for row in rows]
    return pl.DataFrame(data, schema=ANNOTATION_SCHEMA)


def parsed(dataset: str, rows: Sequence[dict[str, Any]], rejects: Sequence[dict[str, Any]] = ()) -> ParsedTables:
    reject_frame = pl.DataFrame({name: [r.get(name) for r in rejects] for name in REJECT_SCHEMA}, schema=REJECT_SCHEMA)
    return ParsedTables(frame(dataset, rows), reject_frame, {"annotations.csv": "0" * 64}, "test")


#: AffectNet-like table worked out by hand. Train: Neutral 4, Happy 3, Sad 1, Contempt 2,
#: None 2, Uncertain 1, No-Face 1 (14 rows); validation: one row of each of 0, 1, 7, 8, 9.
AFFECTNET_TRAIN_LABELS = (0, 0, 0, 0, 1, 1, 1, 2, 7, 7, 8, 8, 9, 10)
AFFECTNET_VALIDATION_LABELS = (0, 1, 7, 8, 9)
#: Valence / arousal of the train rows (None = the -2 sentinel, as the reader gives it).
AFFECTNET_TRAIN_VA = (
    (0.0, 0.0), (0.1, 0.1), (-0.1, 0.0), (0.0, -0.1),
    (0.8, 0.5), (0.9, 0.4), (0.7, 0.6),
    (-0.7, -0.2),
    (0.2, 0.1), (0.3, 0.2),
    (-0.2, 0.3), (0.4, 0.5),
    (None, None), (None, None),
)  # fmt: skip


def affectnet_rows() -> list[dict[str, Any]]:
    rows = []
    for i, (label, (valence, arousal)) in enumerate(zip(AFFECTNET_TRAIN_LABELS, AFFECTNET_TRAIN_VA, strict=True)):
        rows.append(
            {
                "id": f"1/train{i:03d}.jpg",
                "split": "train",
                "source_file": "Manually_Annotated_file_lists/training.csv",
                "source_row": i + 2,
                "source_path": f"Manually_Annotated_Images/1/train{i:03d}.jpg",
                "raw_label": label,
                "label": label,
                "valence": valence,
                "arousal": arousal,
                "va_annotated": valence is not None,
                "face_x": 1.0,
                "face_y": 2.0,
                "face_width": 30.0,
                "face_height": 30.0,
                "landmarks": [float(i), float(i) + 0.5] * 68,
            }
        )
    for i, label in enumerate(AFFECTNET_VALIDATION_LABELS):
        rows.append(
            {
                "id": f"2/val{i:03d}.jpg",
                "split": "validation",
                "source_file": "Manually_Annotated_file_lists/validation.csv",
                "source_row": i + 2,
                "raw_label": label,
                "label": label,
                "valence": None if label == 9 else 0.0,
                "arousal": None if label == 9 else 0.0,
                "va_annotated": label != 9,
            }
        )
    return rows


def rafdb_rows() -> list[dict[str, Any]]:
    """RAF-DB-like: train Surprise 2, Happy 1, Neutral 1; test Happy 1."""
    rows = [
        {"id": "train_00001", "split": "train", "raw_label": 1, "label": 3},
        {"id": "train_00002", "split": "train", "raw_label": 1, "label": 3},
        {"id": "train_00003", "split": "train", "raw_label": 4, "label": 1},
        {"id": "train_00004", "split": "train", "raw_label": 7, "label": 0},
        {"id": "test_0001", "split": "test", "raw_label": 4, "label": 1},
    ]
    return [{**row, "landmarks": [1.0] * 10} for row in rows]


#: FER+ votes written by hand (FER+ column order) and what the majority rule gives.
FERPLUS_VOTES = (
    (10, 0, 0, 0, 0, 0, 0, 0, 0, 0),  # neutral, unanimous
    (4, 6, 0, 0, 0, 0, 0, 0, 0, 0),  # happiness 6/10
    (5, 5, 0, 0, 0, 0, 0, 0, 0, 0),  # tie: no majority -> unknown
    (0, 0, 0, 0, 0, 0, 0, 0, 0, 10),  # NF
    (1, 0, 7, 0, 1, 0, 1, 0, 0, 0),  # surprise after outliers
    (3, 0, 0, 3, 0, 0, 0, 0, 4, 0),  # unknown wins
)


def ferplus_rows(votes: Sequence[Sequence[int]] = FERPLUS_VOTES) -> list[dict[str, Any]]:
    splits = ("train", "train", "validation", "test", "train", "test")
    out = []
    for i, row in enumerate(votes):
        out.append(
            {
                "id": f"fer{i:07d}",
                "split": splits[i % len(splits)],
                "raw_label": 6,
                "label": 0,
                "votes": list(row),
            }
        )
    return out


def random_table(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Random labels over three datasets and three splits (for engine comparisons)."""
    rng = np.random.default_rng(seed)
    datasets = rng.choice(["affectnet", "ferplus", "rafdb"], size=n)
    return pl.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "dataset": datasets,
            "split": rng.choice(["train", "validation", "test"], size=n, p=[0.7, 0.2, 0.1]),
            "label": rng.integers(0, 11, size=n).astype(np.int8),
        }
    )
