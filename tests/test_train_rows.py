"""train.rows: which rows a run trains and is evaluated on, on tiny hand-made scans (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate import labels
from curate.studies.holdout import class_frequency_holdout
from train import rows
from train.config import TrainConfig, TrainError

# Canonical labels: 0 Neutral, 1 Happy, 2 Sad, 7 Contempt, 8 None (dropped by drop-7-plus and drop-8-plus).
TRAIN_CANONICAL = [0, 1, 2, 7, 8] * 8
VALIDATION_CANONICAL = [0, 0, 0, 1, 1, 2, 7, 8]


def scan(split: str, canonical: list[int], config: TrainConfig) -> rows.SplitScan:
    ids = np.array([f"{split}-{i:02d}".encode() for i in range(len(canonical))], dtype=object)  # TFDS gives bytes
    return rows.SplitScan.from_features(split, ids, np.array(canonical, dtype=np.int64), config)


def affectnet(**options) -> tuple[TrainConfig, dict[str, rows.SplitScan]]:
    config = TrainConfig(dataset="affectnet", policy="drop-7-plus", holdout_fraction=0.25, **options)
    return config, {
        "train": scan("train", TRAIN_CANONICAL, config),
        "validation": scan("validation", VALIDATION_CANONICAL, config),
    }


def test_split_scan_applies_the_policy() -> None:
    config, scans = affectnet()
    train = scans["train"]
    assert train.ids[0] == "train-00" and train.ids.dtype == object  # bytes decoded
    policy = labels.get_policy("drop-7-plus")
    assert train.keep.tolist() == [c in (0, 1, 2) for c in TRAIN_CANONICAL]  # Contempt and None dropped
    kept = train.keep
    assert train.labels[kept].tolist() == policy.apply(np.array(TRAIN_CANONICAL))[kept].tolist()
    assert train.canonical.tolist() == TRAIN_CANONICAL


def test_rows_go_to_train_holdout_and_views_by_the_rules() -> None:
    config, scans = affectnet()
    selection = rows.select_rows(config, scans)
    train = scans["train"]
    held = np.asarray(class_frequency_holdout(list(train.ids), 0.25, 0), dtype=bool)
    assert held.any() and (~held).any()
    assert set(selection.train_ids) == set(train.ids[train.keep & ~held])
    assert set(selection.views["class_frequency"].ids) == set(train.ids[train.keep & held])
    assert list(selection.views) == ["balanced", "class_frequency"]  # AffectNet has no test view
    balanced = selection.views["balanced"]
    assert balanced.split == "validation" and len(balanced.ids) == 6  # the whole split, policy applied
    assert selection.train_counts.sum() == selection.train_count == len(selection.train_ids)
    assert selection.train_counts.tolist() == np.bincount(selection.train_labels, minlength=7).tolist()
    assert selection.class_names == labels.get_policy("drop-7-plus").classes
    assert selection.classes_without_training_rows == ["Surprise", "Fear", "Disgust", "Anger"]
    present = selection.train_counts > 0
    assert np.all(selection.class_weights[present] == 1.0) and np.all(selection.class_weights[~present] == 0.0)
    assert selection.monitor_view == "class_frequency" and selection.target_kind == "hard"
    assert selection.exclusions is None and selection.exclude_ids.size == 0
    assert selection.total_rows == selection.train_count + 6 + len(selection.views["class_frequency"].ids)

    frame = selection.frame()
    assert isinstance(frame, pl.DataFrame)
    assert frame.columns == ["role", "split", "id", "label", "canonical"]
    assert frame["id"].n_unique() == frame.height  # no row in two roles
    counts = dict(frame.group_by("role").len().iter_rows())
    assert counts == {
        "train": selection.train_count,
        "balanced": 6,
        "class_frequency": len(selection.views["class_frequency"].ids),
    }
    assert set(frame.filter(pl.col("role") != "balanced")["canonical"]) <= {0, 1, 2}


def test_exclusions_caps_and_weights(tmp_path) -> None:
    config, scans = affectnet()
    plain = rows.select_rows(config, scans)
    listed = [str(plain.train_ids[0]), str(plain.views["class_frequency"].ids[0]), "validation-00"]
    path = tmp_path / "exclude.parquet"
    pl.DataFrame({"dataset": ["affectnet"] * 3, "id": listed}).write_parquet(path)
    config, scans = affectnet(exclude=str(path), class_weight="inverse")
    selection = rows.select_rows(config, scans)
    assert listed[0] not in set(selection.train_ids) and selection.train_count == plain.train_count - 1
    assert listed[1] not in set(selection.views["class_frequency"].ids)
    assert "validation-00" in set(selection.views["balanced"].ids)  # official views keep listed ids
    assert selection.exclusions["ids_listed"] == 3 and selection.exclusions["train_rows_excluded"] == 2
    assert sorted(selection.exclude_ids) == sorted(listed)
    counts = selection.train_counts
    assert np.isclose((selection.class_weights * counts).sum() / counts.sum(), 1.0)  # mean weight 1
    assert selection.class_weights[counts == 0].tolist() == [0.0] * int((counts == 0).sum())

    config, scans = affectnet(max_train_examples=5, max_eval_examples=2)
    capped = rows.select_rows(config, scans)
    assert capped.train_count == 5 and set(capped.train_ids) <= set(plain.train_ids)
    assert all(len(view.ids) == 2 for view in capped.views.values())


def test_seed_never_changes_the_rows() -> None:
    first = rows.select_rows(*affectnet(seed=0, max_train_examples=7))
    second = rows.select_rows(*affectnet(seed=9, max_train_examples=7))
    assert first.frame().equals(second.frame())


def test_empty_training_rows_and_missing_splits_are_clear_errors() -> None:
    config = TrainConfig(dataset="rafdb", policy="drop-7-plus")
    only_contempt = {split: scan(split, [7, 7, 7], config) for split in ("train", "test")}
    with pytest.raises(TrainError, match="leaves no training rows in rafdb"):
        rows.select_rows(config, only_contempt)
    with pytest.raises(TrainError, match="has no 'test' split"):
        rows.select_rows(config, {"train": scan("train", [0, 1, 2] * 10, config)})


def test_selecting_rows_imports_no_tensorflow() -> None:
    """The row selection is plain data: scanning labels, choosing rows and the Polars frame run
    without importing TensorFlow or Keras."""
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from train import rows
        from train.config import TrainConfig

        config = TrainConfig(dataset="ferplus", holdout_fraction=0.25)
        rng = np.random.default_rng(0)
        votes = {split: rng.multinomial(10, [0.4, 0.3, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.005, 0.005], 60)
                 for split in ("train", "validation", "test")}
        scans = {split: rows.SplitScan.from_features(split, [f"{split}-{i}" for i in range(60)], v, config)
                 for split, v in votes.items()}
        selection = rows.select_rows(config, scans)
        frame = selection.frame()
        print(json.dumps({
            "roles": sorted(set(frame["role"])),
            "train": selection.train_count,
            "target_kind": selection.target_kind,
            "heavy": sorted(m for m in ("tensorflow", "keras", "tensorflow_datasets") if m in sys.modules),
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["heavy"] == []  # "tensorflow" not in sys.modules
    assert out["roles"] == ["balanced", "class_frequency", "test", "train"]
    assert out["train"] > 0 and out["target_kind"] == "hard"
