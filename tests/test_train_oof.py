"""train.oof: out-of-fold predictions of the training rows (``--oof-folds``), on tiny in-memory data."""

from __future__ import annotations

import json

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from train import data as data_module  # noqa: E402
from train import loop, oof, sources  # noqa: E402
from train.config import TrainConfig, TrainError  # noqa: E402
from train.testing import synthetic_source  # noqa: E402


@pytest.fixture(scope="module")
def source() -> sources.InMemorySource:
    return synthetic_source("affectnet", per_class={"train": 10, "validation": 2}, image_size=32, seed=4)


def config(**kwargs) -> TrainConfig:
    base = {
        "dataset": "affectnet", "model": "small_cnn", "image_size": 32, "batch_size": 16, "epochs": 1,
        "holdout_fraction": 0.2, "export_tflite": False, "augment": False, "oof_folds": 2, "seed": 3,
    }  # fmt: skip
    base.update(kwargs)
    return TrainConfig(**base)


def test_folds_are_stratified_deterministic_and_order_free() -> None:
    ids = np.array([f"row{i}" for i in range(103)], dtype=object)
    labels = np.arange(103) % 4
    folds = oof.assign_folds(ids, labels, 5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    assert np.ptp(np.bincount(folds)) <= 1  # fold sizes differ by at most one
    for c in range(4):  # every class is spread evenly over the folds
        assert np.ptp(np.bincount(folds[labels == c], minlength=5)) <= 1
    order = np.random.default_rng(0).permutation(103)
    assert (oof.assign_folds(ids[order], labels[order], 5, seed=0) == folds[order]).all()
    assert (oof.assign_folds(ids, labels, 5, seed=1) != folds).any()
    with pytest.raises(TrainError, match="at least 2"):
        oof.assign_folds(ids, labels, 1, seed=0)
    with pytest.raises(TrainError, match="oof-folds"):
        config(oof_folds=1)


def test_each_row_is_predicted_once_by_a_model_that_did_not_see_it(source) -> None:
    cfg = config()
    loop.set_determinism(cfg.seed)
    prepared = data_module.prepare_data(cfg, source=source, verbose=False)
    trained_on: list[set[str]] = []
    original = prepared.train_subset

    def spy(ids, seed):
        trained_on.append({str(i) for i in ids})
        return original(ids, seed)

    prepared.train_subset = spy
    first = oof.cross_fit(cfg, prepared, verbose=0)
    predicted = first.predictions["id"].tolist()
    train_ids = {str(i) for i in prepared.train_ids}
    assert len(predicted) == len(set(predicted)) == len(train_ids) and set(predicted) == train_ids
    assert len(trained_on) == 2
    for fold, seen in enumerate(trained_on):
        rows = {i for i, f in zip(predicted, first.predictions["fold"], strict=True) if f == fold}
        assert rows and not rows & seen  # the model of a fold never trained on its rows
        assert rows | seen == train_ids
    assert not train_ids & {str(i) for i in prepared.views["class_frequency"].ids}  # the hold-out stays out

    loop.set_determinism(cfg.seed)
    again = oof.cross_fit(cfg, data_module.prepare_data(cfg, source=source, verbose=False), verbose=0)
    order = np.argsort(first.predictions["id"])
    order_again = np.argsort(again.predictions["id"])
    np.testing.assert_array_equal(first.predictions["fold"][order], again.predictions["fold"][order_again])
    np.testing.assert_allclose(
        first.predictions["probabilities"][order], again.predictions["probabilities"][order_again], atol=1e-6
    )


def test_run_folder_holds_train_oof_and_the_main_model_is_unchanged(source, tmp_path) -> None:
    import polars as pl

    plain = loop.train_run(
        config(oof_folds=0, name="plain"), source=source, runs_dir=tmp_path, register=False, verbose=0
    )
    run = loop.train_run(
        config(oof_epochs=2, name="crossfit"), source=source, runs_dir=tmp_path, register=False, verbose=0
    )
    predictions = pl.read_parquet(run.path / "predictions.parquet")
    plain_predictions = pl.read_parquet(plain.path / "predictions.parquet")
    assert predictions.columns == plain_predictions.columns  # the same schema for every view
    folds = pl.read_parquet(run.path / oof.FOLDS_FILE)
    train_oof = predictions.filter(pl.col("view") == oof.VIEW)
    assert train_oof["id"].n_unique() == train_oof.height == folds.height
    assert set(train_oof["id"]) == set(folds["id"])
    assert set(train_oof["split"]) == {"train"} and set(folds["fold"]) == {0, 1}
    held = set(predictions.filter(pl.col("view") == "class_frequency")["id"])
    assert held and not held & set(train_oof["id"])
    # The main model's views are exactly those of a run without cross-fitting.
    for view in ("balanced", "class_frequency"):
        assert run.metrics[view]["accuracy"] == plain.metrics[view]["accuracy"]
        mine = predictions.filter(pl.col("view") == view).sort("id")["probabilities"].to_list()
        theirs = plain_predictions.filter(pl.col("view") == view).sort("id")["probabilities"].to_list()
        np.testing.assert_allclose(np.array(mine), np.array(theirs), atol=1e-6)
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["oof"]["folds"] == 2 and saved["oof"]["epochs"] == 2 and saved["oof_folds"] == 2
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics[oof.VIEW]["count"] == train_oof.height
    assert [f["held_out_rows"] for f in metrics["oof"]["per_fold"]] == np.bincount(folds["fold"]).tolist()
    assert all(f["epochs_run"] == 2 for f in metrics["oof"]["per_fold"])
