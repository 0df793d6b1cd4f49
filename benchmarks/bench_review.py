"""Benchmark of `curate review`: ingest throughput and label-error detection on synthetic data.

1. **Ingest.** The same prepared samples (a synthetic AffectNet annotation table with image
   sizes, boxes, 68 landmarks, six policy labels and V/A) go into FiftyOne three ways:
   :func:`curate.review.documents.insert_samples` (BSON documents, bulk ``insert_many`` into a
   declared schema), FiftyOne's ``Dataset.add_samples`` with ``fo.Sample`` objects (the
   reference), and ``add_samples`` with validation and schema expansion turned off. Reported
   as samples/s and as the ratio bulk / ``add_samples``. Plus the end-to-end
   ``curate review load`` of an image dataset (reader, image headers, ingest, views).
2. **Finding flipped labels.** ``curate synth affectnet --label-noise`` flips labels and lists
   the flipped rows in a ledger. Out-of-sample class probabilities come from a run of the
   trainer (``train.train_run``, i.e. ``curate train``) with ``oof_folds`` (``--oof-folds``):
   after the main model, K fold models each train on K - 1 folds of the training rows and
   predict the fold they did not see (view ``train_oof``); the main model predicts the
   class-frequency hold-out and the validation split. Its input is the face aligned on its
   68 landmarks (``train.testing.aligned_affectnet_source``, grey, ``--image-size`` px), its
   model the compact ``small_cnn``. The run folder is attached with ``curate review load
   --run``: the scores read back are FiftyOne Brain's mistakenness and hardness and
   cleanlab's label quality as stored on the samples (confident learning on the run's
   probabilities fused with the review's landmark model, ``curate.review.label_scores``).
   Precision and recall of the top-k rows, k = number of flips. Rows scored in NumPy with
   the same functions: the run alone, the fusion under other rankings, and references: a
   scikit-learn HOG + logistic-regression ``cross_val_predict`` (the previous method), the
   landmark model alone and an MLP on the annotated landmarks. A second, clearly labelled measure counts only the
   flips of clearly expressed faces (true label a basic expression 1-7 drawn at intensity
   >= 0.5, the intensity recovered from the row's valence/arousal as the generator sets it).

Usage::

    python benchmarks/bench_review.py [--scale 0.02] [--noise 0.1] [--ingest-rows 20000] [--keep DIR]
        [--folds 5] [--epochs 16] [--image-size 48] [--no-augment] [--skip-ingest] [--seed 3]

Prints a Markdown section (``python -m benchmarks`` collects it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # BLAS threads oversubscribe the shared cores badly

import contextlib  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from curate import labels  # noqa: E402

FACE = 48  # side of the aligned face crop
SEED = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# 1. Ingest
# --------------------------------------------------------------------------------------


def prepared_table(work: Path, rows: int) -> Any:
    """A ReviewTable frame of ``rows`` synthetic AffectNet annotations with made-up image sizes."""
    import polars as pl

    from curate import datasets
    from curate.annotations import normalize_annotations
    from curate.review.sources import with_relative_geometry
    from curate.synth.affectnet import generate_affectnet

    out = work / "affectnet-annotations"
    if not out.is_dir():
        generate_affectnet(out, scale=rows / 420_300, seed=SEED, annotations_only=True, workers=1)
    clean, _ = normalize_annotations(datasets.read("affectnet", out).annotations, "affectnet")
    extent = clean.select(
        (pl.col("face_x") + pl.col("face_width")).alias("w"), (pl.col("face_y") + pl.col("face_height")).alias("h")
    )
    frame = clean.with_columns(
        (pl.col("source_path").map_elements(lambda p: str(out / p), return_dtype=pl.String)).alias("filepath"),
        (extent["w"] * 1.25).ceil().cast(pl.Int32).alias("image_width"),
        (extent["h"] * 1.25).ceil().cast(pl.Int32).alias("image_height"),
        pl.lit(3, dtype=pl.Int32).alias("image_channels"),
    )
    return with_relative_geometry(frame).head(rows)


def bench_ingest(fo: Any, frame: Any, reference_rows: int) -> dict[str, Any]:
    from curate.review.documents import declare_fields, insert_samples, sample_fields, to_samples

    policies = list(labels.BUILTIN_POLICIES.values())
    results: dict[str, Any] = {"rows": frame.height, "reference_rows": min(reference_rows, frame.height)}

    ds = fo.Dataset()
    start = time.perf_counter()
    insert_samples(ds, frame, "affectnet")
    results["bulk_s"] = time.perf_counter() - start
    assert len(ds) == frame.height
    ds.delete()

    subset = frame.head(results["reference_rows"])
    for key, kwargs, declare in (
        ("add_samples", {}, False),
        ("add_samples_unvalidated", {"validate": False, "expand_schema": False}, True),
    ):
        ds = fo.Dataset()
        if declare:
            ds.media_type = "image"
            declare_fields(ds, "affectnet", policies)
        start = time.perf_counter()
        samples = to_samples(sample_fields(subset, "affectnet", policies))
        ds.add_samples(samples, progress=False, **kwargs)
        results[f"{key}_s"] = time.perf_counter() - start
        assert len(ds) == subset.height
        ds.delete()
    return results


# --------------------------------------------------------------------------------------
# 2. Finding flipped labels
# --------------------------------------------------------------------------------------


def aligned_faces(paths: list[str], landmarks: list[list[float]]) -> np.ndarray:
    """Grey ``FACE x FACE`` crops in [0, 1], flattened, aligned like the trainer's input
    (:func:`train.testing.align_face`); zeros where the image or the landmarks are unusable."""
    from PIL import Image

    from train.testing import align_face

    out = np.zeros((len(paths), FACE * FACE), np.float32)
    for i, (path, points) in enumerate(zip(paths, landmarks, strict=True)):
        try:
            with Image.open(path) as image:
                face = align_face(image, points, FACE)
        except (OSError, ValueError):
            continue
        if face is not None:
            out[i] = face.reshape(-1) / 255.0
    return out


def hog(images: np.ndarray, cell: int = 6, bins: int = 9) -> np.ndarray:
    """A plain histogram of oriented gradients per ``cell x cell`` block, L2-normalised per image."""
    stack = images.reshape(-1, FACE, FACE)
    gx = np.zeros_like(stack)
    gy = np.zeros_like(stack)
    gx[:, :, 1:-1] = stack[:, :, 2:] - stack[:, :, :-2]
    gy[:, 1:-1, :] = stack[:, 2:, :] - stack[:, :-2, :]
    magnitude = np.hypot(gx, gy)
    orientation = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(int), bins - 1)
    n = FACE // cell
    histogram = np.zeros((len(stack), n, n, bins), np.float32)
    for b in range(bins):
        masked = np.where(orientation == b, magnitude, 0.0)[:, : n * cell, : n * cell]
        histogram[..., b] = masked.reshape(len(stack), n, cell, n, cell).sum(axis=(2, 4))
    flat = histogram.reshape(len(stack), -1)
    return flat / (np.linalg.norm(flat, axis=1, keepdims=True) + 1e-6)


def out_of_sample_probabilities(
    features: np.ndarray, given: np.ndarray, *, pca: int | None, c: float, mlp: bool = False
) -> np.ndarray:
    """5-fold ``cross_val_predict`` probabilities of a scaled (PCA-reduced) logistic regression,
    or with ``mlp`` of a two-layer perceptron (early stopping; classes in label order)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[Any] = [StandardScaler()]
    if pca:
        steps.append(PCA(pca, random_state=0))
    if mlp:
        steps.append(MLPClassifier((256, 128), alpha=1e-3, max_iter=300, early_stopping=True, random_state=0))
    else:
        steps.append(LogisticRegression(C=c, max_iter=3000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_predict(make_pipeline(*steps), features, given, cv=folds, method="predict_proba")


def clear_flips(annotations: Any, true: np.ndarray, is_flip: np.ndarray) -> np.ndarray:
    """Flips of clearly expressed faces: true label a basic expression (1-7) drawn at intensity >= 0.5.

    The generator sets the intensity of labels 0-7 from the row's valence/arousal as
    ``clip(|(v, a)| / (1.25 |class mean|), 0.25, 1)`` (``curate.synth.face_expression._expression``);
    the same formula recovers it here. Uses the ledger's true label: for reporting only.
    """
    from curate.synth import face_expression

    valence = annotations["valence"].fill_null(0.0).to_numpy().astype(np.float64)
    arousal = annotations["arousal"].fill_null(0.0).to_numpy().astype(np.float64)
    means = np.asarray(face_expression._VA_MEAN, np.float64)
    basic = (true >= 1) & (true <= 7)
    radius = np.hypot(*means[np.clip(true, 0, 8)].T)
    intensity = np.clip(np.hypot(valence, arousal) / (1.25 * np.maximum(radius, 1e-9)), 0.25, 1.0)
    return is_flip & basic & (intensity >= 0.5)


def recall_within(scores: np.ndarray, subset: np.ndarray, k: int) -> float:
    """Share of the ``subset`` rows that are among the ``k`` highest scores."""
    top = np.argsort(-np.asarray(scores, np.float64), kind="stable")[:k]
    return float(subset[top].sum() / max(int(subset.sum()), 1))


def flips_found(
    rows: list[int | None],
    is_flip: np.ndarray,
    true: np.ndarray,
    given: np.ndarray,
    k: int,
    scores: dict[str, np.ndarray],
    top: int = 10,
) -> list[tuple[int, int, int, list[float]]]:
    """Per kind of flip (true -> given label, the most frequent ``top``): how many there are and
    the share of them in each score's top ``k``. ``rows`` maps each scored sample to its
    annotation row (``None`` if unknown); the ledger's true labels are used for reporting only."""
    known = np.array([r is not None for r in rows])
    where = np.array([r if r is not None else 0 for r in rows])
    flips = is_flip & known
    pairs = np.stack([true[where][flips], given[where][flips]], axis=1)
    in_top = {}
    for name, score in scores.items():
        chosen = np.zeros(len(rows), bool)
        chosen[np.argsort(-score, kind="stable")[:k]] = True
        in_top[name] = chosen[flips]
    kinds, counts = np.unique(pairs, axis=0, return_counts=True)
    out = []
    for (t, g), n in sorted(zip(map(tuple, kinds), counts, strict=True), key=lambda x: -x[1])[:top]:
        mask = (pairs[:, 0] == t) & (pairs[:, 1] == g)
        out.append((int(t), int(g), int(n), [float(v[mask].mean()) for v in in_top.values()]))
    return out


def numpy_scores(probabilities: np.ndarray, given: np.ndarray) -> dict[str, np.ndarray]:
    """The review's scores of out-of-sample probabilities, in NumPy (higher = more likely wrong)."""
    from cleanlab.rank import get_label_quality_scores

    from curate.review.label_scores import confident_learning, mistakenness_scores

    clipped = np.clip(probabilities, 1e-9, 1.0)
    quality, _ = confident_learning(given, clipped)
    out = {"mistakenness": mistakenness_scores(np.log(clipped), given), "confident learning": -quality}
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        out[f"cleanlab {method}"] = -get_label_quality_scores(
            given, clipped / clipped.sum(1, keepdims=True), method=method
        )
    return out


def bench_detection(
    fo: Any,
    work: Path,
    scale: float,
    noise: float,
    *,
    folds: int,
    epochs: int,
    image_size: int,
    augment: bool,
    seed: int = SEED,
) -> dict[str, Any]:
    import polars as pl

    from curate import datasets
    from curate.review import load as rl
    from curate.review.fields import RunFields
    from curate.review.label_scores import (
        fuse_probabilities,
        landmark_geometry,
        landmark_probabilities,
        precision_recall_at_k,
    )
    from curate.review.runs import read_predictions, resolve_run
    from curate.synth.affectnet import generate_affectnet
    from train import TrainConfig, train_run
    from train.testing import aligned_affectnet_source

    manual = work / "affectnet"
    start = time.perf_counter()
    if not manual.is_dir():
        generate_affectnet(manual, scale=scale, seed=seed, label_noise=noise, workers=min(os.cpu_count() or 1, 4))
    results: dict[str, Any] = {"generate_s": time.perf_counter() - start}
    ledger = pl.read_parquet(manual.parent / f"{manual.name}.noise_ledger.parquet")

    if fo.dataset_exists("bench-review"):  # a kept work folder: measure a first load, not an update
        fo.load_dataset("bench-review").delete()
    start = time.perf_counter()
    summary = rl.load("affectnet", manual_dir=manual, name="bench-review", cache_dir=work / "cache")
    results["load_s"] = time.perf_counter() - start
    results["load_rows"] = summary.samples
    results["ingest_s"] = summary.seconds_ingest

    policy = labels.get_policy("keep-all")  # every flip stays visible (drop policies would hide some)
    annotations = datasets.read("affectnet", manual).annotations.filter(pl.col("landmarks").is_not_null())
    flipped = set(ledger["id"].to_list())
    is_flip = np.array([i in flipped for i in annotations["id"].to_list()])
    given = annotations["label"].to_numpy().astype(np.int64)
    truth = dict(zip(ledger["id"].to_list(), ledger["true_label"].to_list(), strict=True))
    true = np.array([truth.get(i, g) for i, g in zip(annotations["id"].to_list(), given, strict=True)])
    clear = clear_flips(annotations, true, is_flip)
    k = int(is_flip.sum())
    results.update(rows=annotations.height, flips=k, clear_flips=int(clear.sum()), noise=noise)

    # The trainer: main model + cross-fitted fold models on the landmark-aligned faces.
    start = time.perf_counter()
    source = aligned_affectnet_source(manual, image_size=image_size, workers=min(os.cpu_count() or 1, 4))
    results["align_s"] = time.perf_counter() - start
    config = TrainConfig(
        dataset="affectnet", policy=policy.name, model="small_cnn", image_size=image_size, epochs=epochs,
        batch_size=64, learning_rate=3e-3, sampler="natural", patience=epochs, oof_folds=folds, oof_epochs=epochs,
        augment=augment, export_tflite=False, name="bench-oof", seed=0,
    )  # fmt: skip
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's epoch lines are progress, not the report
        run = train_run(config, source=source, runs_dir=work / "runs", register=False, overwrite=True, verbose=2)
    results["train_s"] = time.perf_counter() - start
    results["train_config"] = {"folds": folds, "epochs": epochs, "image_size": image_size, "model": config.model,
                               "augment": augment,
                               "train_rows": run.metrics["oof"]["rows"],
                               "oof_s": run.metrics["oof"]["seconds"],
                               "main_s": run.metrics["training"]["seconds"]}  # fmt: skip

    # Out-of-sample accuracy of what the review stores (train_oof, hold-out, validation).
    predictions = read_predictions(resolve_run(run.path))
    by_id = dict(zip(predictions["id"].to_list(), predictions["predicted"].to_list(), strict=True))
    index = {i: n for n, i in enumerate(annotations["id"].to_list())}
    rows = np.array([index[i] for i in by_id if i in index])
    predicted = np.array([by_id[i] for i in by_id if i in index])
    results["accuracy_true"] = float((predicted == true[rows]).mean())
    results["accuracy_given"] = float((predicted == given[rows]).mean())
    results["predicted_rows"] = len(rows)
    results["views"] = predictions.group_by("view").len().sort("view").rows()

    start = time.perf_counter()
    loaded = rl.load("affectnet", manual_dir=manual, name="bench-review", cache_dir=work / "cache", run=run.path)
    results["attach_s"] = time.perf_counter() - start
    run_summary = loaded.runs[0]
    ds = fo.load_dataset("bench-review")
    fields = RunFields(run_summary.key)
    ids, mistakenness, hardness, quality, issue, fused_mistakenness = ds.values(
        [
            "source_id",
            fields.mistakenness,
            fields.hardness,
            fields.label_quality,
            fields.label_issue,
            fields.fused_mistakenness,
        ]
    )
    stored_flip = np.array([i in flipped for i in ids])
    stored_clear = np.array([bool(clear[index[i]]) if i in index else False for i in ids])
    scored = np.array([m is not None for m in mistakenness])

    def values(scores: list[Any], *, lower_is_worse: bool = False) -> np.ndarray:
        array = np.array([np.nan if s is None else float(s) for s in scores])
        return np.where(np.isnan(array), -np.inf, -array if lower_is_worse else array)

    flagged = np.array([bool(x) for x in issue])
    hits = int((flagged & stored_flip).sum())
    stored = {
        "mistakenness (FiftyOne Brain)": values(mistakenness),
        "confident learning (cleanlab label quality, normalized margin; run + landmark model)": values(
            quality, lower_is_worse=True
        ),
        "mistakenness of the fused prediction (FiftyOne Brain; run + landmark model)": values(fused_mistakenness),
        "hardness (FiftyOne Brain, reference)": values(hardness),
    }
    results["scores"] = {
        name: (*precision_recall_at_k(score, stored_flip, k), recall_within(score, stored_clear, k))
        for name, score in stored.items()
    }
    results["cleanlab_flagged"] = (int(flagged.sum()), hits / max(int(flagged.sum()), 1), hits / max(k, 1))
    results["by_flip"] = flips_found(
        [index.get(i) for i in ids], stored_flip, true, given, k,
        {name: stored[name] for name in list(stored)[:3]},
    )  # fmt: skip
    results["scored_rows"] = int(scored.sum())
    results["misclassified_view"] = loaded.views.get("misclassified")

    # The same run's probabilities under cleanlab's other label-quality methods (NumPy).
    probabilities = np.full((annotations.height, policy.num_classes), 1.0 / policy.num_classes)
    known = np.zeros(annotations.height, bool)
    for sid, probs in zip(predictions["id"].to_list(), predictions["probabilities"].to_list(), strict=True):
        if sid in index:
            probabilities[index[sid]] = probs
            known[index[sid]] = True
    trained = numpy_scores(probabilities, given)
    # The review's second opinion (curate.review.label_scores): the landmark-geometry model, fused.
    points = np.asarray(annotations["landmarks"].to_list(), np.float64).reshape(-1, 68, 2)
    geometry_probabilities = np.zeros_like(probabilities)
    geometry_probabilities[known] = landmark_probabilities(points[known], given[known], policy.num_classes)
    fused = probabilities.copy()
    fused[known] = fuse_probabilities(probabilities[known], geometry_probabilities[known])
    fused_scores = numpy_scores(fused, given)
    arithmetic = numpy_scores((probabilities + geometry_probabilities) / 2, given)
    results["fused_stored_rows"] = run_summary.scores.get("landmark_model_rows", 0)
    methods = {
        "run alone: cleanlab self_confidence": trained["cleanlab self_confidence"],
        "run alone: cleanlab normalized_margin": trained["cleanlab normalized_margin"],
        "run + landmark model: cleanlab self_confidence": fused_scores["cleanlab self_confidence"],
        "run + landmark model: cleanlab normalized_margin (what the review stores)": fused_scores[
            "cleanlab normalized_margin"
        ],
        "run + landmark model: mistakenness formula on the fused probabilities": fused_scores["mistakenness"],
        "run + landmark model, arithmetic mean instead of geometric: cleanlab normalized_margin": arithmetic[
            "cleanlab normalized_margin"
        ],
    }
    results["methods"] = {
        name: (
            *precision_recall_at_k(np.where(known, score, -np.inf), is_flip, k),
            recall_within(np.where(known, score, -np.inf), clear, k),
        )
        for name, score in methods.items()
    }

    # References: HOG + logistic regression (the previous method) and the exact-landmark classifier.
    start = time.perf_counter()
    paths = [str(manual / p) for p in annotations["source_path"].to_list()]
    hog_probabilities = out_of_sample_probabilities(
        hog(aligned_faces(paths, annotations["landmarks"].to_list())), given, pca=100, c=0.05
    )
    results["hog_s"] = time.perf_counter() - start
    linear = landmark_probabilities(points, given, policy.num_classes)  # the review's landmark model, alone
    nonlinear = out_of_sample_probabilities(landmark_geometry(points), given, pca=None, c=1.0, mlp=True)
    results["references"] = {}
    for name, probs in (
        ("HOG + logistic regression, `cross_val_predict` (previous method)", hog_probabilities),
        ("landmark model alone (logistic regression on the annotated landmarks)", linear),
        ("MLP on the annotated landmarks", nonlinear),
    ):
        scores = numpy_scores(probs, given)
        results["references"][name] = {
            "accuracy_true": float((probs.argmax(1) == true).mean()),
            **{
                key: (*precision_recall_at_k(scores[key], is_flip, k), recall_within(scores[key], clear, k))
                for key in ("mistakenness", "cleanlab self_confidence", "cleanlab normalized_margin")
            },
        }
    return results


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def markdown(ingest: dict[str, Any] | None, detection: dict[str, Any]) -> str:
    end_to_end = detection["load_rows"] / detection["load_s"]
    lines = ["## bench_review", ""]
    if ingest is not None:
        bulk = ingest["rows"] / ingest["bulk_s"]
        reference = ingest["reference_rows"] / ingest["add_samples_s"]
        unvalidated = ingest["reference_rows"] / ingest["add_samples_unvalidated_s"]
        lines += [
            "### Ingest into FiftyOne (same prepared samples: box, 68 landmarks, 7 labels, V/A)",
            "",
            "| path | samples | seconds | samples/s | ratio to `add_samples` |",
            "|---|---:|---:|---:|---:|",
            f"| `insert_samples` (BSON, bulk `insert_many`, declared schema) | {ingest['rows']:,} | {ingest['bulk_s']:.2f} | {bulk:,.0f} | {bulk / reference:.1f}x |",
            f"| `Dataset.add_samples` with `fo.Sample` objects | {ingest['reference_rows']:,} | {ingest['add_samples_s']:.2f} | {reference:,.0f} | 1.0x |",
            f"| `add_samples(validate=False, expand_schema=False)` | {ingest['reference_rows']:,} | {ingest['add_samples_unvalidated_s']:.2f} | {unvalidated:,.0f} | {unvalidated / reference:.1f}x |",
            f"| `curate review load` end to end (reader, image headers, ingest, views) | {detection['load_rows']:,} | {detection['load_s']:.2f} | {end_to_end:,.0f} | |",
            "",
            f"Target >= 2,000 samples/s: bulk ingest {'meets' if bulk >= 2000 else 'MISSES'} it ({bulk:,.0f}/s); "
            f"end to end {end_to_end:,.0f}/s (includes reading {detection['load_rows']:,} image headers).",
            "",
        ]
    else:
        lines += [f"(ingest section skipped; `curate review load` end to end: {end_to_end:,.0f} samples/s)", ""]
    train = detection["train_config"]
    k = detection["flips"]
    lines += [
        f"### Finding flipped labels (synthetic AffectNet, {detection['rows']:,} rows, label noise {detection['noise']:.0%}, "
        f"{k} flips, {detection['clear_flips']} of them of clearly expressed faces)",
        "",
        f"Out-of-sample probabilities from a trained run: `curate train` (`train.train_run`) with `--oof-folds "
        f"{train['folds']}`, model `{train['model']}`, {train['image_size']} px landmark-aligned grey faces, "
        f"{train['epochs']} epochs per model, {'with' if train['augment'] else 'no'} augmentation, batch 64, "
        f"learning rate 3e-3 (cosine), policy keep-all. The {train['folds']} fold models cross-fit the "
        f"{train['train_rows']:,} training rows (view `train_oof`, {train['oof_s']:.0f} s); the main model "
        f"({train['main_s']:.0f} s) predicts the class-frequency hold-out and the validation split. "
        f"Out-of-sample accuracy over {detection['predicted_rows']:,} rows: {detection['accuracy_true']:.3f} vs the "
        f"true labels, {detection['accuracy_given']:.3f} vs the noisy given labels. Run written in "
        f"{detection['train_s']:.0f} s (faces aligned in {detection['align_s']:.0f} s).",
        "",
        f"| score | precision@k | recall@k (k = {k}) | recall of clear flips in the top k |",
        "|---|---:|---:|---:|",
    ]
    for name, (precision, recall, clear) in detection["scores"].items():
        lines.append(
            f"| trained run, read back from FiftyOne: {name} | {precision:.3f} | **{recall:.3f}** | {clear:.3f} |"
        )
    count, precision, recall = detection["cleanlab_flagged"]
    lines.append(
        f"| trained run: cleanlab `find_label_issues` flags ({count} rows flagged) | {precision:.3f} | {recall:.3f} | |"
    )
    for name, (precision, recall, clear) in detection["methods"].items():
        lines.append(f"| trained run, NumPy: {name} | {precision:.3f} | {recall:.3f} | {clear:.3f} |")
    for name, reference in detection["references"].items():
        for key in ("mistakenness", "cleanlab self_confidence", "cleanlab normalized_margin"):
            precision, recall, clear = reference[key]
            lines.append(
                f"| reference: {name} (accuracy {reference['accuracy_true']:.3f}), {key} | {precision:.3f} | {recall:.3f} | {clear:.3f} |"
            )
    names = labels.CANONICAL_NAMES
    lines += [
        "",
        "Where the flips are found: the most frequent kinds of flip (true -> given label, from the ledger) and the "
        "share of each in the top k of the stored scores.",
        "",
        "| flip (true -> given) | flips | in top k: mistakenness (run) | in top k: confident learning "
        "| in top k: mistakenness (fused) |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {names[t]} -> {names[g]} | {n} | {found[0]:.2f} | {found[1]:.2f} | {found[2]:.2f} |"
            for t, g, n, found in detection["by_flip"]
        ),
    ]
    recalls = {name: recall for name, (_, recall, _) in detection["scores"].items() if "hardness" not in name}
    verdicts = "; ".join(
        f"{name}: {recall:.3f} ({'met' if recall >= 0.8 else 'NOT met'})" for name, recall in recalls.items()
    )
    lines += [
        "",
        f"Target recall@k >= 0.8 with a trained run, per stored score: {verdicts}. The review's confident learning "
        "and the fused prediction combine the run's out-of-sample probabilities with those of a logistic "
        "regression on the annotated 68 landmarks, cross-fitted on the same rows "
        f"({detection['fused_stored_rows']:,} rows fused; normalised geometric mean, equal weights, "
        "`curate.review.label_scores`); the first mistakenness is the Brain's on the run's predictions alone. The "
        "'run alone' and 'landmark model alone' rows show what each view finds by itself. The generator draws "
        "weak expressions (intensity from 0.25) that overlap with Neutral and with each other, and flips follow "
        "plausible confusions, so part of the flips are invisible to any classifier. The last column counts "
        "only flips whose true label is a basic expression drawn at intensity >= 0.5 (from the ledger; "
        "reporting only, never used for scoring).",
        "",
        f"Attaching the run (predictions, evaluation, Brain mistakenness + hardness, landmark model, cleanlab, "
        "fused mistakenness, views) took "
        f"{detection['attach_s']:.1f} s for {detection['scored_rows']:,} rows.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02, help="synthetic AffectNet scale (0.02: ~8,400 images)")
    parser.add_argument("--noise", type=float, default=0.1, help="label-noise rate")
    parser.add_argument(
        "--seed", type=int, default=SEED, help="seed of the synthetic data (a second seed checks the figures)"
    )
    parser.add_argument("--ingest-rows", type=int, default=20_000)
    parser.add_argument("--reference-rows", type=int, default=3_000, help="rows for the slow add_samples path")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting folds of the trained run (--oof-folds)")
    parser.add_argument("--epochs", type=int, default=16, help="epochs of the main and of each fold model")
    parser.add_argument("--image-size", type=int, default=48, help="side of the aligned face the model sees")
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train without the trainer's augmentation"
    )
    parser.add_argument("--skip-ingest", action="store_true", help="only section 2 (while iterating)")
    parser.add_argument("--keep", type=Path, help="work folder to keep (and reuse the generated images)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-review-"))
    work.mkdir(parents=True, exist_ok=True)
    # The report alone goes to stdout: child processes (mongod logs a line when it starts or
    # stops) inherit a file descriptor 1 that points at stderr.
    sys.stdout.flush()
    report = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        from curate.review import db

        db.configure(database_dir=work / "fiftyone-db")
        fo = db.connect()
        fo.config.show_progress_bars = False
        logging.getLogger("fiftyone").setLevel(logging.WARNING)  # Brain's "Computing ..." lines are not the report
        ingest = None
        if not args.skip_ingest:
            log("ingest: preparing the annotation table")
            frame = prepared_table(work, args.ingest_rows)
            log(f"ingest: {frame.height} rows")
            ingest = bench_ingest(fo, frame, args.reference_rows)
            log(f"ingest: {ingest}")
        detection = bench_detection(
            fo, work, args.scale, args.noise, folds=args.folds, epochs=args.epochs, image_size=args.image_size,
            augment=args.augment, seed=args.seed,
        )  # fmt: skip
        log(f"detection: {detection}")
        print(markdown(ingest, detection), file=report, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
