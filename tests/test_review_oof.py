"""`curate review load --run` on a trainer run with ``--oof-folds``: the training rows get
mistakenness, hardness and cleanlab label quality from their out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from review_fixtures import fo, write_affectnet  # noqa: F401

pytest.importorskip("tensorflow")


def _with_expressive_landmarks(root: Path, frame: Any) -> None:
    """Rewrite the fixture with landmarks that carry the label (the mouth moves with it), so
    the review's landmark model has skill and joins the confident learning."""
    import numpy as np
    import polars as pl

    from curate.formats import affectnet as fmt

    rng = np.random.default_rng(1)
    template = rng.uniform(0.15, 0.85, size=(68, 2))
    template[36:42], template[42:48] = (0.3, 0.35), (0.7, 0.35)
    boxes = frame.select("face_x", "face_y", "face_width", "face_height").to_numpy()
    label = frame["label"].to_numpy()
    points = np.repeat(template[None], frame.height, axis=0) + rng.normal(0, 0.005, (frame.height, 68, 2))
    points[:, 48:68, 1] += 0.03 * label[:, None]
    points = points * boxes[:, None, 2:] + boxes[:, None, :2]
    landmarks = pl.Series("landmarks", np.round(points.reshape(frame.height, -1), 2).tolist())
    fmt.write_original(root, frame.with_columns(landmarks))


def test_oof_run_scores_the_training_rows(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    import polars as pl

    from curate.review import load as rl
    from curate.review.fields import RunFields
    from curate.review.runs import read_predictions, resolve_run
    from train import TrainConfig, train_run
    from train.testing import aligned_affectnet_source

    root = tmp_path / "affectnet"
    _with_expressive_landmarks(root, write_affectnet(root, n_train=44, n_validation=11))
    source = aligned_affectnet_source(root, image_size=32)
    config = TrainConfig(
        dataset="affectnet", policy="keep-all", model="small_cnn", image_size=32, epochs=1, batch_size=16,
        holdout_fraction=0.2, export_tflite=False, augment=False, oof_folds=2, name="oof-run",
    )  # fmt: skip
    run = train_run(config, source=source, runs_dir=tmp_path / "runs", register=False, verbose=0)
    predictions = pl.read_parquet(run.path / "predictions.parquet")
    train_oof = set(predictions.filter(pl.col("view") == "train_oof")["id"].to_list())
    assert train_oof and set(source._splits["train"]["id"].tolist()) >= train_oof

    summary = rl.load("affectnet", manual_dir=root, run=run.path, name="rv-oof", cache_dir=tmp_path / "cache")
    (attached,) = summary.runs
    assert attached.unmatched == 0 and attached.matched == predictions["id"].n_unique()
    ds = fo.load_dataset("rv-oof")
    fields = RunFields.for_run("oof-run")
    ids, split, mistakenness, hardness, quality, issue = ds.values(
        ["source_id", "split", fields.mistakenness, fields.hardness, fields.label_quality, fields.label_issue]
    )
    rows = {
        i: (s, m, h, q, f) for i, s, m, h, q, f in zip(ids, split, mistakenness, hardness, quality, issue, strict=True)
    }
    for sid in train_oof:
        row_split, m, h, q, f = rows[sid]
        assert row_split == "train"
        assert m is not None and h is not None and q is not None and f is not None
        assert 0.0 <= q <= 1.0
    # Every out-of-sample prediction (train_oof, hold-out, validation) went into confident learning.
    assert attached.scores["confident_learning_rows"] == predictions["id"].n_unique()
    assert attached.scores["excluded_views"] == []
    # AffectNet rows carry 68 landmarks: confident learning ran on the run's probabilities fused
    # with the cross-fitted landmark model -- the same numbers NumPy gives from the same inputs.
    import numpy as np

    from curate import datasets, labels
    from curate.review.label_scores import confident_learning, fuse_probabilities, landmark_probabilities

    assert attached.scores["confident_learning_probabilities"] == "run + landmark geometry (geometric mean)"
    assert attached.scores["landmark_model_rows"] == predictions["id"].n_unique()
    annotations = datasets.read("affectnet", root).annotations
    by_id = dict(zip(annotations["id"].to_list(), annotations["landmarks"].to_list(), strict=True))
    matched = read_predictions(resolve_run(run.path))
    given = np.asarray(matched["label"].to_list(), np.int64)
    points = np.asarray([by_id[i] for i in matched["id"].to_list()], np.float64).reshape(-1, 68, 2)
    fused = fuse_probabilities(
        np.asarray(matched["probabilities"].to_list(), np.float64), landmark_probabilities(points, given, 11)
    )
    expected, _ = confident_learning(given, fused)
    stored = {i: q for i, q in zip(ids, quality, strict=True)}
    # (the review rebuilds pixel landmarks from the stored relative points: equal to ~1e-6)
    assert np.allclose([stored[i] for i in matched["id"].to_list()], expected, atol=1e-4)

    from curate.review import views

    (reported,) = views.report(ds).runs
    assert reported.label_quality_from == "run + landmark geometry (geometric mean)"

    # The fused prediction and the Brain's mistakenness on it.
    from curate.review.label_scores import mistakenness_scores

    fused_ids, fused_label, fused_mistakenness = ds.values(
        ["source_id", f"{fields.fused_pred}.label", fields.fused_mistakenness]
    )
    stored_label = dict(zip(fused_ids, fused_label, strict=True))
    stored_mistakenness = dict(zip(fused_ids, fused_mistakenness, strict=True))
    classes = labels.get_policy("keep-all").classes
    assert [stored_label[i] for i in matched["id"].to_list()] == [classes[c] for c in fused.argmax(axis=1)]
    assert np.allclose(
        [stored_mistakenness[i] for i in matched["id"].to_list()],
        mistakenness_scores(np.log(fused), given),
        atol=1e-4,
    )

    # --no-landmark-model: the run's probabilities alone; the fused fields are gone.
    alone = rl.load("affectnet", manual_dir=root, run=run.path, name="rv-oof", landmark_model=False)
    assert alone.runs[0].scores["confident_learning_probabilities"] == "run"
    assert "landmark_model_rows" not in alone.runs[0].scores
    ds.reload()
    assert not ds.has_sample_field(fields.fused_pred) and not ds.has_sample_field(fields.fused_mistakenness)
    assert fields.fused_mistakenness not in ds.list_brain_runs()
