"""`curate review load --run` on a trainer run with ``--oof-folds``: the training rows get
mistakenness, hardness and cleanlab label quality from their out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from review_fixtures import fo, write_affectnet  # noqa: F401

pytest.importorskip("tensorflow")


def test_oof_run_scores_the_training_rows(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    import polars as pl

    from curate.review import load as rl
    from train import TrainConfig, train_run
    from train.testing import aligned_affectnet_source

    root = tmp_path / "affectnet"
    write_affectnet(root, n_train=44, n_validation=11)
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
    fields = rl.RunFields.for_run("oof-run")
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
