"""Predictions and metrics of a model on the evaluation views.

* :func:`predict_view` runs the model over a view's batched dataset and returns aligned
  arrays (ids, hard labels, logits, probabilities, V/A predictions).
* :func:`classification_metrics` -- accuracy, balanced accuracy (mean recall over the
  classes present in the labels), macro F1, per-class precision / recall / F1 / support and
  the confusion matrix (scikit-learn), all as plain JSON-able values.
* :func:`va_metrics` -- RMSE, CCC, PCC and SAGR for valence and arousal on annotated rows.
* :func:`predictions_table` / :func:`write_predictions` -- ``predictions.parquet`` exactly as
  ``docs/contracts.md`` lists it; :func:`plot_confusion` -- ``confusion_<view>.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    shifted = np.asarray(logits, dtype=np.float64) / temperature
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predict_view(model: Any, view: Any, *, va_head: bool = False) -> dict[str, np.ndarray]:
    """Run ``model`` over ``view.dataset`` (batched row dicts).

    Returns ``id`` (object), ``label`` (int64; argmax of soft targets), ``logits`` and
    ``probabilities`` (float32, (N, C)), and with ``va_head`` ``valence_pred``,
    ``arousal_pred``, ``valence``, ``arousal``, ``va_mask``.
    """
    import tensorflow as tf

    ids, labels_, logits, va_pred = [], [], [], []
    va_true: dict[str, list[np.ndarray]] = {"valence": [], "arousal": [], "va_mask": []}
    for row in view.dataset:
        image = tf.cast(row["image"], tf.float32)
        out = model.predict_on_batch(image)
        if isinstance(out, dict):
            va_pred.append(np.asarray(out["va"]))
            out = out["label"]
        logits.append(np.asarray(out, dtype=np.float32))
        label = row["label"].numpy()
        labels_.append(label.argmax(axis=-1) if label.ndim == 2 else label)
        ids.append(row["id"].numpy())
        if va_head:
            for key in va_true:
                va_true[key].append(row[key].numpy())
    if not logits:
        raise ValueError(f"view {view.name!r} is empty")
    all_logits = np.concatenate(logits)
    result = {
        "id": np.array([i.decode() for i in np.concatenate(ids)], dtype=object),
        "label": np.concatenate(labels_).astype(np.int64),
        "logits": all_logits,
        "probabilities": softmax(all_logits).astype(np.float32),
    }
    if va_head and va_pred:
        va = np.concatenate(va_pred).astype(np.float32)
        result["valence_pred"], result["arousal_pred"] = va[:, 0], va[:, 1]
        for key, parts in va_true.items():
            result[key] = np.concatenate(parts).astype(np.float32)
    return result


#: Seed of the bootstrap behind every view's intervals (:func:`view_metrics`).
INTERVAL_SEED = 53


def classification_metrics(labels_: np.ndarray, predicted: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class figures and the confusion matrix.

    Balanced accuracy is the mean recall over classes that occur in ``labels_`` (a class a
    policy keeps but a view lacks does not count); macro F1 averages over classes that occur
    in the labels or the predictions (scikit-learn's default).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels_ = np.asarray(labels_, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    num_classes = len(class_names)
    matrix = confusion_matrix(labels_, predicted, labels=list(range(num_classes)))
    support = matrix.sum(axis=1)
    recall_present = np.diag(matrix)[support > 0] / support[support > 0]
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels_, predicted, labels=list(range(num_classes)), zero_division=0
    )
    return {
        "count": int(labels_.size),
        "accuracy": float((labels_ == predicted).mean()) if labels_.size else 0.0,
        "balanced_accuracy": float(recall_present.mean()) if recall_present.size else 0.0,
        "macro_f1": float(f1_score(labels_, predicted, average="macro", zero_division=0)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
    }


#: Share of a view's rows given one class above which a run is said to predict one class.
COLLAPSE_SHARE = 0.95


def one_class_warning(view: str, metrics: dict[str, Any], class_names: Sequence[str]) -> str | None:
    """A line when one class takes :data:`COLLAPSE_SHARE` or more of a view's predictions: then its
    accuracy is about that class's share of the rows, and its interval says nothing of learning."""
    predicted = np.asarray(metrics.get("confusion_matrix") or [[0]]).sum(axis=0)
    if predicted.sum() == 0 or predicted.max() < COLLAPSE_SHARE * predicted.sum():
        return None
    top = int(predicted.argmax())
    return (
        f"{view}: {100 * predicted[top] / predicted.sum():.1f}% of the rows predicted {class_names[top]}; "
        "the figures are that class's share, not what the model learnt (train longer, see docs/training.md)"
    )


def concordance_correlation(truth: np.ndarray, prediction: np.ndarray) -> float:
    """Lin's CCC: 2 cov / (var_t + var_p + (mean_t - mean_p)^2)."""
    truth, prediction = np.asarray(truth, np.float64), np.asarray(prediction, np.float64)
    if truth.size < 2:
        return 0.0
    mean_t, mean_p = truth.mean(), prediction.mean()
    covariance = ((truth - mean_t) * (prediction - mean_p)).mean()
    denominator = truth.var() + prediction.var() + (mean_t - mean_p) ** 2
    return float(2 * covariance / denominator) if denominator > 0 else 0.0


def va_metrics(predictions: dict[str, np.ndarray]) -> dict[str, Any]:
    """RMSE, CCC, PCC and SAGR of valence and arousal on rows with ``va_mask`` set."""
    mask = predictions["va_mask"] > 0.5
    out: dict[str, Any] = {"count": int(mask.sum())}
    for key in ("valence", "arousal"):
        truth = predictions[key][mask].astype(np.float64)
        guess = predictions[f"{key}_pred"][mask].astype(np.float64)
        if truth.size == 0:
            out[key] = {"rmse": None, "ccc": None, "pcc": None, "sagr": None}
            continue
        pcc = float(np.corrcoef(truth, guess)[0, 1]) if truth.size > 1 and truth.std() > 0 and guess.std() > 0 else 0.0
        out[key] = {
            "rmse": float(np.sqrt(np.mean((truth - guess) ** 2))),
            "ccc": concordance_correlation(truth, guess),
            "pcc": pcc,
            "sagr": float(np.mean(np.sign(truth) == np.sign(guess))),
        }
    return out


def view_metrics(predictions: dict[str, np.ndarray], class_names: Sequence[str]) -> dict[str, Any]:
    """Classification metrics (and V/A metrics when present) of one view's predictions, with 95 %
    intervals of accuracy and balanced accuracy (``*_ci95``: rows resampled within each label,
    :func:`train.slices.bootstrap_scores`, seeded so a run's figures are reproducible)."""
    from train.slices import bootstrap_scores, ci95

    predicted = predictions["probabilities"].argmax(axis=1)
    metrics = classification_metrics(predictions["label"], predicted, class_names)
    if metrics["count"]:
        draws = bootstrap_scores(predictions["label"], predicted, np.random.default_rng(INTERVAL_SEED), 1000)
        metrics["accuracy_ci95"], metrics["balanced_accuracy_ci95"] = ci95(draws)
    if "valence_pred" in predictions:
        metrics["va"] = va_metrics(predictions)
    return metrics


def predictions_table(
    predictions: dict[str, np.ndarray], *, view: str, split: str, canonical: np.ndarray | None = None
) -> Any:
    """The rows of ``predictions.parquet`` for one view (a ``pyarrow.Table``); ``canonical``
    (the rows' canonical labels, in ``predictions`` order) fills the ``canonical`` column,
    which the comparison's common-ground view reads (null when not given)."""
    import pyarrow as pa

    n = len(predictions["id"])
    probabilities = predictions["probabilities"].astype(np.float32)
    logits = predictions["logits"].astype(np.float32)
    num_classes = probabilities.shape[1]

    def float_lists(values: np.ndarray) -> Any:
        offsets = np.arange(0, (n + 1) * num_classes, num_classes, dtype=np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.reshape(-1), pa.float32()))

    def nullable(key: str) -> Any:
        if key in predictions:
            return pa.array(predictions[key].astype(np.float32), pa.float32())
        return pa.nulls(n, pa.float32())

    return pa.table(
        {
            "id": pa.array(predictions["id"].tolist(), pa.string()),
            "view": pa.array([view] * n, pa.string()),
            "split": pa.array([split] * n, pa.string()),
            "label": pa.array(predictions["label"].astype(np.int64), pa.int64()),
            "canonical": (
                pa.array(np.asarray(canonical, dtype=np.int64), pa.int64()) if canonical is not None else pa.nulls(n, pa.int64())
            ),
            "predicted": pa.array(probabilities.argmax(axis=1).astype(np.int64), pa.int64()),
            "confidence": pa.array(probabilities.max(axis=1), pa.float32()),
            "probabilities": float_lists(probabilities),
            "logits": float_lists(logits),
            "valence_pred": nullable("valence_pred"),
            "arousal_pred": nullable("arousal_pred"),
        }
    )


def write_predictions(tables: Sequence[Any], path: str | Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.concat_tables(list(tables)), str(path))


def plot_confusion(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, *, title: str
) -> None:
    """Row-normalised confusion matrix with counts, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros_like(counts, dtype=np.float64), where=totals > 0)
    size = 1.0 + 0.55 * len(class_names)
    figure, axes = plt.subplots(figsize=(size + 1.5, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("label")
    axes.set_title(title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if counts[i, j]:
                axes.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if normalised[i, j] > 0.5 else "black",
                )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="row fraction")
    figure.tight_layout()
    figure.savefig(str(path), dpi=110)
    plt.close(figure)
