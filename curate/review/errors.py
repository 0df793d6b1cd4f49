"""Scores that point at likely label errors, stored as sample fields.

Scope
-----
Given a run's predictions already on the dataset (:func:`curate.review.load.attach_run`):

* **mistakenness** -- FiftyOne Brain's ``compute_mistakenness`` on the prediction's logits
  against the policy's ground truth: high when the model is confidently wrong;
* **hardness** -- FiftyOne Brain's ``compute_hardness``: the entropy of the predicted
  distribution;
* **confident learning** -- cleanlab's ``get_label_quality_scores`` (self-confidence; low =
  likely wrong) and ``find_label_issues`` (a boolean flag per row) on the run's
  *out-of-sample* predicted probabilities (held-out views of ``predictions.parquet``).

Both Brain methods are pure computations on stored fields (no model, no download); they
run on the samples that have both a prediction and a ground-truth label. The functions
:func:`mistakenness_scores` and :func:`confident_learning` also work on plain NumPy arrays
so ``benchmarks/bench_review.py`` can score them against a noise ledger.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def mistakenness_scores(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """NumPy form of the Brain's classification mistakenness (``use_logits=True``).

    ``(m * exp(-H(softmax(logits))) + 1) / 2`` with ``m = +1`` when the prediction
    (argmax) differs from the label and ``-1`` when it matches; ``H`` in nats.
    """
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    wrong = np.where(logits.argmax(axis=1) != np.asarray(labels), 1.0, -1.0)
    return (wrong * np.exp(-entropy) + 1.0) / 2.0


def confident_learning(labels: np.ndarray, pred_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab on out-of-sample probabilities: ``(label quality, issue flag)`` per row.

    Label quality is ``get_label_quality_scores`` (self-confidence, in [0, 1]; low = likely
    a label error); the flag is ``find_label_issues`` (prune by noise rate). Classes absent
    from ``labels`` are allowed; cleanlab's warnings about them are silenced.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels, dtype=np.int64)
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if labels.ndim != 1 or pred_probs.ndim != 2 or len(labels) != len(pred_probs):
        raise ValueError(f"labels (N,) and pred_probs (N, K) do not match: {labels.shape} vs {pred_probs.shape}")
    pred_probs = pred_probs / pred_probs.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
        try:
            issues = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
        except (ValueError, ZeroDivisionError, IndexError):
            # Too few rows per class for the confident joint: fall back to the argmax rule.
            issues = pred_probs.argmax(axis=1) != labels
    return np.asarray(quality, dtype=np.float64), np.asarray(issues, dtype=bool)


def precision_recall_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> tuple[float, float]:
    """Precision and recall of the ``k`` highest-scoring rows against a boolean truth mask."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    k = int(min(max(k, 0), len(scores)))
    if k == 0:
        return 0.0, 0.0
    top = np.argsort(-scores, kind="stable")[:k]
    hits = int(truth[top].sum())
    return hits / k, hits / max(int(truth.sum()), 1)


def score_run(
    ds: Any,
    fields: Any,
    *,
    gt_field: str,
    predictions: Any,
    classes: Sequence[str],
    log: Log = _quiet,
) -> dict[str, Any]:
    """Store mistakenness, hardness, label quality and label-issue flags for a run.

    Args:
        ds: the FiftyOne dataset holding ``fields.pred`` and ``gt_field``
        fields: the run's :class:`curate.review.load.RunFields`
        gt_field: the ground-truth field in the run's policy
        predictions: the run's matched predictions (Polars; ``id``, ``view``,
            ``probabilities``)
        classes: the policy's class names (probability column order)
        log (no-op): progress messages

    Returns:
        a JSON-able dict: rows scored and label issues found
    """
    import fiftyone as fo
    import fiftyone.brain as fob
    import polars as pl

    from curate.review.load import OUT_OF_SAMPLE_VIEWS

    scored = ds.exists(fields.pred).exists(gt_field)
    n_scored = len(scored)
    summary: dict[str, Any] = {"scored": n_scored, "label_issues": 0, "excluded_views": []}
    if n_scored == 0:
        return summary
    log(f"FiftyOne Brain: mistakenness and hardness on {n_scored} samples")
    fob.compute_mistakenness(
        scored,
        fields.pred,
        label_field=gt_field,
        mistakenness_field=fields.mistakenness,
        use_logits=True,
        progress=False,
    )
    fob.compute_hardness(scored, fields.pred, hardness_field=fields.hardness, progress=False)

    held_out = predictions.filter(pl.col("view").is_in(list(OUT_OF_SAMPLE_VIEWS)))
    excluded = sorted(set(predictions["view"].unique().to_list()) - set(OUT_OF_SAMPLE_VIEWS))
    if excluded:
        summary["excluded_views"] = excluded
        log(f"confident learning skips views {', '.join(excluded)} (not held-out predictions)")
    truth = dict(zip(*scored.values(["source_id", f"{gt_field}.label"]), strict=True))
    index = {name: i for i, name in enumerate(classes)}
    ids, given, probabilities = [], [], []
    for sid, probs in zip(held_out["id"].to_list(), held_out["probabilities"].to_list(), strict=True):
        label = truth.get(sid)
        if label is None or label not in index:
            continue
        ids.append(sid)
        given.append(index[label])
        probabilities.append(probs)
    if not ids:
        return summary
    log(f"cleanlab: confident learning on {len(ids)} out-of-sample predictions")
    quality, issues = confident_learning(np.asarray(given), np.asarray(probabilities, dtype=np.float64))
    ds.add_sample_field(fields.label_quality, fo.FloatField)
    ds.add_sample_field(fields.label_issue, fo.BooleanField)
    ds.set_values(fields.label_quality, dict(zip(ids, quality.tolist(), strict=True)), key_field="source_id")
    ds.set_values(fields.label_issue, dict(zip(ids, issues.tolist(), strict=True)), key_field="source_id")
    summary.update({"confident_learning_rows": len(ids), "label_issues": int(issues.sum())})
    return summary
