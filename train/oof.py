"""Out-of-fold (cross-fitted) predictions of a run's training rows (``--oof-folds K``).

Scope
-----
A run's own model has seen every training row, so its predictions of them are in-sample
and useless for finding label errors (confident learning needs *out-of-sample* predicted
probabilities). :func:`cross_fit` trains ``K`` extra models after the main one, each with
the run's recipe (model, image size, augmentation, sampler, class weights, schedule, early
stopping on the run's monitored view -- never on a fold) on the training rows of ``K - 1``
folds, and predicts the fold it did not see. Every training row is predicted exactly once,
by the one model that did not train on it. The main model, its metrics and its exports are
unchanged.

Folds (:func:`assign_folds`) are stratified by the row's (policy) label and deterministic
given the seed and independent of row order: within each class, rows are sorted by the
salted hash of their id (:func:`train.rows.stable_hash` of ``oof:<id>`` with the seed) and dealt to
folds in turn. Rows of the class-frequency hold-out and excluded rows are not training rows:
the hold-out keeps its main-model predictions (view ``class_frequency``).

Outputs in the run folder
-------------------------
* ``predictions.parquet``, view ``train_oof`` (split ``train``): the same columns as every
  other view (``train.evaluate.predictions_table``), one row per training row;
* ``oof_folds.parquet``: ``id``, ``fold``, ``label`` per training row;
* ``metrics.json``: ``train_oof`` (view metrics against the given labels) and ``oof``
  (folds, epochs, per-fold rows, epochs run, best epoch, seconds, accuracy);
* ``config.json``: ``oof`` (folds, epochs, seed, assignment rule, file).

``curate review load --run`` reads ``train_oof`` as out-of-sample predictions
(``curate.review.fields.OUT_OF_SAMPLE_VIEWS``), so mistakenness and cleanlab's label quality
cover the training rows.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from train import evaluate, fit, models
from train.config import TrainConfig, TrainError
from train.rows import stable_hash

#: The predictions view of the out-of-fold rows.
VIEW = "train_oof"
#: The per-row fold assignment, next to ``predictions.parquet``.
FOLDS_FILE = "oof_folds.parquet"
ASSIGNMENT = "stratified by label; within a class, rows sorted by blake2b('<seed>:oof:<id>') and dealt in turn"


def assign_folds(ids: np.ndarray, labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index (0..folds-1) of each row, stratified by ``labels``.

    Within each class, rows are ordered by :func:`train.rows.stable_hash` of their id
    (``oof:<id>``, salted by ``seed``) and dealt round-robin; the dealing continues from class to class,
    so fold sizes differ by at most one. Deterministic and independent of row order.

    Raises:
        TrainError: fewer than 2 folds, or more folds than rows.
    """
    ids = np.asarray(ids, dtype=object)
    labels = np.asarray(labels, dtype=np.int64)
    if folds < 2:
        raise TrainError(f"--oof-folds must be at least 2, got {folds}")
    if len(ids) < folds:
        raise TrainError(f"--oof-folds {folds}: only {len(ids)} training rows")
    out = np.full(len(ids), -1, dtype=np.int64)
    dealt = 0
    for class_index in np.unique(labels):
        rows = np.flatnonzero(labels == class_index)
        order = sorted(rows, key=lambda r: (stable_hash(f"oof:{ids[r]}", seed), str(ids[r])))
        out[order] = (dealt + np.arange(len(order))) % folds
        dealt += len(order)
    return out


@dataclasses.dataclass
class CrossFit:
    """Out-of-fold predictions of the training rows.

    Attributes:
        predictions: :func:`train.evaluate.predict_view`-shaped arrays of every training row
            (``id``, ``label``, ``logits``, ``probabilities``) plus ``fold``
        ids: the training rows (``TrainingData.train_ids`` order) and ``folds`` their folds
        metrics: view metrics of the predictions against the given labels
        summary: JSON-able facts (folds, epochs, seed, per-fold rows / epochs / seconds)
        split: the training split's name
    """

    predictions: dict[str, np.ndarray]
    ids: np.ndarray
    folds: np.ndarray
    metrics: dict[str, Any]
    summary: dict[str, Any]
    split: str = "train"

    def table(self) -> Any:
        """The ``train_oof`` rows of ``predictions.parquet`` (a ``pyarrow.Table``)."""
        return evaluate.predictions_table(self.predictions, view=VIEW, split=self.split)

    def write_folds(self, path: str | Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        label = dict(zip(self.predictions["id"].tolist(), self.predictions["label"].tolist(), strict=True))
        table = pa.table(
            {
                "id": pa.array([str(i) for i in self.ids], pa.string()),
                "fold": pa.array(self.folds, pa.int32()),
                "label": pa.array([label[str(i)] for i in self.ids], pa.int64()),
            }
        )
        pq.write_table(table, str(path))


def fold_seed(seed: int, fold: int) -> int:
    """Seed of fold ``fold``'s model and stream (never the main run's ``seed``)."""
    return seed * 1000 + 101 + fold


def cross_fit(config: TrainConfig, data: Any, *, verbose: int = 1) -> CrossFit:
    """Train ``config.oof_folds`` models on ``K - 1`` folds each and predict the fold left out.

    Parameters
    ----------
    config : TrainConfig
        The run's configuration; ``oof_folds`` >= 2, ``oof_epochs`` (0 = ``epochs``).
    data : train.data.TrainingData
        The run's prepared data (its training rows, monitored view and subset streams).
    verbose : int
        0 silent, 1 Keras progress bars + a line per epoch, 2 a line per epoch.

    Returns
    -------
    CrossFit
        One prediction per training row, made by the model that did not train on it.
    """
    import keras

    folds_count = int(config.oof_folds)
    epochs = int(config.oof_epochs or config.epochs)
    fold_config = config.replace(epochs=epochs, oof_folds=0, oof_epochs=0)
    ids, labels = data.train_ids, data.train_labels
    folds = assign_folds(ids, labels, folds_count, config.seed)
    split = next((v.split for v in data.views.values() if v.name == "class_frequency"), "train")
    parts: list[dict[str, np.ndarray]] = []
    per_fold: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    for fold in range(folds_count):
        held, kept = ids[folds == fold], ids[folds != fold]
        seed = fold_seed(config.seed, fold)
        keras.utils.set_random_seed(seed)
        model = models.build_model(fold_config, len(data.class_names))
        stream, steps, counts = data.train_subset(kept, seed)
        fitted = fit.fit_model(
            model, fold_config, data, stream=stream, steps_per_epoch=steps, verbose=verbose,
            prefix=f"oof fold {fold + 1}/{folds_count} ",
        )  # fmt: skip
        seconds, epochs_run = fitted.seconds, fitted.epochs_run
        view = data.train_view(VIEW, held, f"out-of-fold: fold {fold} predicted by the model trained without it")
        predictions = evaluate.predict_view(model, view)
        if sorted(predictions["id"].tolist()) != sorted(str(i) for i in held):
            raise TrainError(f"cross-fitting: fold {fold} predicted {len(predictions['id'])} of {len(held)} rows")
        predictions["fold"] = np.full(len(predictions["id"]), fold, dtype=np.int64)
        parts.append(predictions)
        accuracy = float((predictions["probabilities"].argmax(1) == predictions["label"]).mean())
        per_fold.append(
            {
                "fold": fold,
                "held_out_rows": len(held),
                "train_rows": len(kept),
                "train_counts": counts.tolist(),
                "epochs_run": epochs_run,
                "best_epoch": fitted.best_epoch,
                "seconds": seconds,
                "held_out_accuracy": accuracy,
                "seed": seed,
            }
        )
        if verbose:
            print(
                f"oof fold {fold + 1}/{folds_count}: trained on {len(kept)} rows, {epochs_run} epochs, "
                f"{seconds:.0f} s; held-out fold {len(held)} rows, accuracy vs given labels {accuracy:.3f}",
                flush=True,
            )
        del model
    merged = {
        key: np.concatenate([p[key] for p in parts]) for key in ("id", "label", "logits", "probabilities", "fold")
    }
    metrics = evaluate.view_metrics(merged, data.class_names)
    metrics["split"] = split
    metrics["description"] = f"out-of-fold predictions of the training rows ({folds_count} folds)"
    summary = {
        "folds": folds_count,
        "epochs": epochs,
        "seed": config.seed,
        "assignment": ASSIGNMENT,
        "file": FOLDS_FILE,
        "rows": len(ids),
        "seconds": time.perf_counter() - started_all,
        "per_fold": per_fold,
    }
    return CrossFit(predictions=merged, ids=ids, folds=folds, metrics=metrics, summary=summary, split=split)
