"""Label scores: how likely each sample's label is wrong, stored as sample fields.

Scope
-----
Given a run's predictions already on the dataset (:func:`curate.review.runs.attach_run`):

* **mistakenness** -- FiftyOne Brain's ``compute_mistakenness`` on the prediction's logits
  against the policy's ground truth: high when the model is confidently wrong;
* **hardness** -- FiftyOne Brain's ``compute_hardness``: the entropy of the predicted
  distribution;
* **confident learning** -- cleanlab's ``get_label_quality_scores`` (normalized margin,
  :data:`LABEL_QUALITY_METHOD`; low = likely wrong) and ``find_label_issues`` (a boolean flag per row) on the run's
  *out-of-sample* predicted probabilities (held-out views of ``predictions.parquet``).

Second opinion from the landmarks
---------------------------------
AffectNet annotates 68 facial landmarks per face. Where the scored rows carry them,
confident learning runs on the run's out-of-sample probabilities *fused* with those of a
second, independent model: a logistic regression on the landmark geometry
(:func:`landmark_geometry`: the points centred between the eyes, levelled and scaled by
the eye distance), cross-fitted in 5 stratified folds on the same rows and labels
(:func:`landmark_probabilities`, out-of-sample like the run's). The fusion
(:func:`fuse_probabilities`) is the normalised geometric mean, i.e. the average of the two
models' log-probabilities: a label looks right only when both the pixels and the geometry
support it. The two views fail differently (the run sees texture through a small face, the
regression sees exact but only geometric evidence). The landmark model joins only when it
beats the class frequencies out of sample (:func:`log_loss_skill` above 0). ``landmarks=False`` (``curate
review load --no-landmark-model``) scores the run's probabilities alone. Mistakenness and
hardness are the Brain's on the run's own predictions; the fused probabilities are also
stored as a prediction (``pred_<run>_fused``, logits = their logs) with the Brain's
mistakenness on it (``mistakenness_<run>_fused``).

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

from curate.review.fields import OUT_OF_SAMPLE_VIEWS

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


#: cleanlab's ranking of label quality: the given label's probability minus the largest
#: other class's (normalised to [0, 1]). On the review benchmark's fused probabilities it
#: finds 0.036-0.038 more of the flips at k than self-confidence, on two data seeds
#: (docs/review.md); cleanlab offers both.
LABEL_QUALITY_METHOD = "normalized_margin"


def confident_learning(
    labels: np.ndarray, pred_probs: np.ndarray, *, method: str = LABEL_QUALITY_METHOD
) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab on out-of-sample probabilities: ``(label quality, issue flag)`` per row.

    Label quality is ``get_label_quality_scores`` (``method``, in [0, 1]; low = likely
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
        quality = get_label_quality_scores(labels, pred_probs, method=method)
        try:
            issues = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
        except (ValueError, ZeroDivisionError, IndexError):
            # Too few rows per class for the confident joint: fall back to the argmax rule.
            issues = pred_probs.argmax(axis=1) != labels
    return np.asarray(quality, dtype=np.float64), np.asarray(issues, dtype=bool)


#: ``confident_learning_probabilities`` of a run whose scores used the landmark model.
FUSED_SOURCE = "run + landmark geometry (geometric mean)"
#: Landmarks per face the geometry model needs (the 68-point iBUG layout of AffectNet).
GEOMETRY_POINTS = 68
#: Fewest rows (with landmarks) worth a cross-fitted geometry model.
GEOMETRY_MIN_ROWS = 50


def landmark_geometry(points: np.ndarray) -> np.ndarray:
    """``(N, 136)`` features of 68-point landmarks ``(N, 68, 2)`` (any scale or offset).

    The points are centred between the eye centres (points 36-41 and 42-47), rotated so the
    eyes are level and divided by the eye distance, so the features keep the expression's
    shape and drop the face's position, size and roll.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, GEOMETRY_POINTS, 2)
    left, right = points[:, 36:42].mean(axis=1), points[:, 42:48].mean(axis=1)
    span = right - left
    distance = np.linalg.norm(span, axis=1)
    angle = -np.arctan2(span[:, 1], span[:, 0])
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.stack([np.stack([cos, -sin], axis=1), np.stack([sin, cos], axis=1)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        centred = (points - ((left + right) / 2)[:, None]) / distance[:, None, None]
    return np.einsum("nij,nkj->nki", rotation, centred).reshape(len(points), -1)


def landmark_probabilities(
    points: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-sample class probabilities ``(N, num_classes)`` of a logistic regression on
    :func:`landmark_geometry`, cross-fitted in ``folds`` stratified folds (every row is
    predicted by the model that did not see it; deterministic for a seed).

    Classes absent from ``labels`` get probability 0. Raises ``ValueError`` when the rows
    cannot be cross-fitted (fewer than :data:`GEOMETRY_MIN_ROWS` rows or one class only) or
    a row's geometry is not finite.
    """
    return _geometry_probabilities(landmark_geometry(points), labels, num_classes, folds=folds, seed=seed)


def _geometry_probabilities(
    features: np.ndarray, labels: np.ndarray, num_classes: int, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """:func:`landmark_probabilities` from features :func:`landmark_geometry` already made."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels, dtype=np.int64)
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} landmark rows for {len(labels)} labels")
    if not np.isfinite(features).all():
        raise ValueError("landmark geometry is not finite for some rows (coincident eye centres?)")
    present = np.unique(labels)
    if len(labels) < GEOMETRY_MIN_ROWS or len(present) < 2:
        raise ValueError(f"{len(labels)} rows in {len(present)} classes: too few to cross-fit a geometry model")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes smaller than the folds are expected (AffectNet's rare labels)
        probabilities = cross_val_predict(model, features, labels, cv=splitter, method="predict_proba")
    out = np.zeros((len(labels), num_classes), dtype=np.float64)
    out[:, present] = probabilities
    return out


def fuse_probabilities(first: np.ndarray, second: np.ndarray, *, floor: float = 1e-6) -> np.ndarray:
    """Normalised geometric mean of two models' class probabilities (rows sum to 1).

    The mean of the log-probabilities (``floor`` keeps a zero from one model from deciding
    alone): high only where both models give the class weight.
    """
    logs = (np.log(np.clip(first, floor, 1.0)) + np.log(np.clip(second, floor, 1.0))) / 2.0
    fused = np.exp(logs - logs.max(axis=1, keepdims=True))
    return fused / fused.sum(axis=1, keepdims=True)


def _store_fused(
    ds: Any, fields: Any, gt_field: str, ids: np.ndarray, fused: np.ndarray, classes: Sequence[str], log: Log
) -> None:
    """The fused probabilities as a Classification (``fields.fused_pred``, logits = their logs)
    and the Brain's mistakenness on it (``fields.fused_mistakenness``)."""
    import fiftyone as fo
    import fiftyone.brain as fob

    logits = np.log(np.clip(fused, 1e-12, 1.0)).astype(np.float32)
    winners = fused.argmax(axis=1)
    ds.add_sample_field(fields.fused_pred, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.set_values(
        fields.fused_pred,
        {
            str(sid): fo.Classification(label=classes[w], confidence=float(row[w]), logits=lg)
            for sid, w, row, lg in zip(ids.tolist(), winners.tolist(), fused, logits, strict=True)
        },
        key_field="source_id",
    )
    log(f"FiftyOne Brain: mistakenness of the fused predictions on {len(ids)} samples")
    fob.compute_mistakenness(
        ds.exists(fields.fused_pred).exists(gt_field),
        fields.fused_pred,
        label_field=gt_field,
        mistakenness_field=fields.fused_mistakenness,
        use_logits=True,
        progress=False,
    )


def _fuse_landmark_model(
    samples: Any, ids: list[str], given: np.ndarray, probabilities: np.ndarray, num_classes: int, log: Log
) -> np.ndarray:
    """Fuse, in place, ``probabilities`` of the rows with usable 68-point landmarks with the
    cross-fitted geometry model's; returns which rows were fused (none: left as they are)."""
    ids_seen, points, widths, heights = samples.values(
        ["source_id", "landmarks.keypoints.points", "metadata.width", "metadata.height"]
    )
    where = {sid: i for i, sid in enumerate(ids_seen)}
    shaped = np.full((len(ids), GEOMETRY_POINTS, 2), np.nan)
    for row, sid in enumerate(ids):
        i = where.get(sid)
        keypoints = points[i] if i is not None else None
        if not keypoints or len(keypoints[0] or ()) != GEOMETRY_POINTS or not (widths[i] and heights[i]):
            continue  # no 68 points, or no image size to turn them back into pixels
        # Relative to the image in the dataset: back to pixels, so the geometry keeps its aspect.
        shaped[row] = np.asarray(keypoints[0], dtype=np.float64) * (widths[i], heights[i])
    with np.errstate(invalid="ignore"):
        features = landmark_geometry(shaped)
    usable = np.isfinite(features).all(axis=1)
    nothing = np.zeros(len(ids), dtype=bool)
    if usable.sum() < GEOMETRY_MIN_ROWS:
        return nothing
    try:
        second = _geometry_probabilities(features[usable], given[usable], num_classes)
    except ValueError as error:
        log(f"landmark model skipped: {error}")
        return nothing
    skill = log_loss_skill(given[usable], second)
    if skill <= 0.0:
        log(f"landmark model skipped: no better than the class frequencies (log-loss skill {skill:.3f})")
        return nothing
    log(
        f"landmark model: cross-fitted on {int(usable.sum())} rows (log-loss skill {skill:.3f}), "
        "fused with the run's probabilities"
    )
    probabilities[usable] = fuse_probabilities(probabilities[usable], second)
    return usable


def log_loss_skill(labels: np.ndarray, probabilities: np.ndarray, *, floor: float = 1e-6) -> float:
    """``1 - log-loss(probabilities) / log-loss(class frequencies)`` against ``labels``:
    above 0 when the probabilities carry information beyond the classes' shares (a model
    that does not is left out of the fusion rather than adding noise)."""
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    model = -np.log(np.clip(probabilities[rows, labels], floor, 1.0)).mean()
    shares = np.bincount(labels, minlength=probabilities.shape[1]) / len(labels)
    prior = -np.log(np.clip(shares[labels], floor, 1.0)).mean()
    return float(1.0 - model / prior) if prior > 0 else 0.0


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
    landmarks: bool = True,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Store mistakenness, hardness, label quality and label-issue flags for a run.

    Args:
        ds: the FiftyOne dataset holding ``fields.pred`` and ``gt_field``
        fields: the run's :class:`curate.review.fields.RunFields`
        gt_field: the ground-truth field in the run's policy
        predictions: the run's matched predictions (Polars; ``id``, ``view``,
            ``probabilities``)
        classes: the policy's class names (probability column order)
        landmarks (True): fuse the run's probabilities with the landmark-geometry model's
            for confident learning where rows carry 68 landmarks (module docstring)
        log (no-op): progress messages

    Returns:
        a JSON-able dict: rows scored, label issues found, and which probabilities the
        confident learning used (``confident_learning_probabilities``, ``landmark_model_rows``)
    """
    import fiftyone as fo
    import fiftyone.brain as fob
    import polars as pl

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
    given_array, probability_array = np.asarray(given, dtype=np.int64), np.asarray(probabilities, dtype=np.float64)
    source = "run"
    if landmarks:
        fused = _fuse_landmark_model(scored, ids, given_array, probability_array, len(classes), log)
        if fused.any():
            source = FUSED_SOURCE
            summary["landmark_model_rows"] = int(fused.sum())
            _store_fused(ds, fields, gt_field, np.asarray(ids)[fused], probability_array[fused], classes, log)
    summary["confident_learning_probabilities"] = source
    log(f"cleanlab: confident learning on {len(ids)} out-of-sample predictions ({source})")
    quality, issues = confident_learning(given_array, probability_array)
    ds.add_sample_field(fields.label_quality, fo.FloatField)
    ds.add_sample_field(fields.label_issue, fo.BooleanField)
    ds.set_values(fields.label_quality, dict(zip(ids, quality.tolist(), strict=True)), key_field="source_id")
    ds.set_values(fields.label_issue, dict(zip(ids, issues.tolist(), strict=True)), key_field="source_id")
    summary.update({"confident_learning_rows": len(ids), "label_issues": int(issues.sum())})
    return summary
