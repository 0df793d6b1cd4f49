"""Benchmark of `curate review`: ingest throughput and label-error detection on synthetic data.

1. **Ingest.** The same prepared samples (a synthetic AffectNet annotation table with image
   sizes, boxes, 68 landmarks, six policy labels and V/A) go into FiftyOne three ways:
   :func:`curate.review.load.insert_samples` (BSON documents, bulk ``insert_many`` into a
   declared schema), FiftyOne's ``Dataset.add_samples`` with ``fo.Sample`` objects (the
   reference), and ``add_samples`` with validation and schema expansion turned off. Reported
   as samples/s and as the ratio bulk / ``add_samples``. Plus the end-to-end
   ``curate review load`` of an image dataset (reader, image headers, ingest, views).
2. **Finding flipped labels.** ``curate synth affectnet --label-noise`` flips labels and lists
   the flipped rows in a ledger. Out-of-sample class probabilities come from a scikit-learn
   classifier (HOG of the landmark-aligned 48x48 grey face, logistic regression) through
   ``cross_val_predict`` -- the trainer's runs hold predictions for the validation split only
   (no held-out predictions of the training rows), so they cannot score the training flips.
   The probabilities are written as a run folder (``predictions.parquet``, views
   ``train_oof`` / ``class_frequency``) and attached with ``curate review load --run``: the
   scores read back are FiftyOne Brain's mistakenness and hardness and cleanlab's label
   quality as stored on the samples. Precision and recall of the top-k rows, k = number of
   flips. A reference row uses the exact drawn landmarks as features: an upper bound of what
   a classifier can separate on this synthetic data.

Usage::

    python benchmarks/bench_review.py [--scale 0.02] [--noise 0.1] [--ingest-rows 20000] [--keep DIR]

Prints a Markdown section (``python -m benchmarks`` collects it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")  # BLAS threads oversubscribe the shared cores badly

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

    from curate import formats
    from curate.review import load as rl
    from curate.synth.affectnet import generate_affectnet
    from curate.workspace import normalize_annotations

    out = work / "affectnet-annotations"
    if not out.is_dir():
        generate_affectnet(out, scale=rows / 420_300, seed=SEED, annotations_only=True, workers=1)
    clean, _ = normalize_annotations(formats.read("affectnet", out).annotations, "affectnet")
    extent = clean.select(
        (pl.col("face_x") + pl.col("face_width")).alias("w"), (pl.col("face_y") + pl.col("face_height")).alias("h")
    )
    frame = clean.with_columns(
        (pl.col("source_path").map_elements(lambda p: str(out / p), return_dtype=pl.String)).alias("filepath"),
        (extent["w"] * 1.25).ceil().cast(pl.Int32).alias("image_width"),
        (extent["h"] * 1.25).ceil().cast(pl.Int32).alias("image_height"),
        pl.lit(3, dtype=pl.Int32).alias("image_channels"),
    )
    return rl.with_relative_geometry(frame).head(rows)


def bench_ingest(fo: Any, frame: Any, reference_rows: int) -> dict[str, Any]:
    from curate.review import load as rl

    policies = list(labels.BUILTIN_POLICIES.values())
    results: dict[str, Any] = {"rows": frame.height, "reference_rows": min(reference_rows, frame.height)}

    ds = fo.Dataset()
    start = time.perf_counter()
    rl.insert_samples(ds, frame, "affectnet")
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
            rl.declare_fields(ds, "affectnet", policies)
        start = time.perf_counter()
        samples = rl.to_samples(rl.sample_fields(subset, "affectnet", policies))
        ds.add_samples(samples, progress=False, **kwargs)
        results[f"{key}_s"] = time.perf_counter() - start
        assert len(ds) == subset.height
        ds.delete()
    return results


# --------------------------------------------------------------------------------------
# 2. Finding flipped labels
# --------------------------------------------------------------------------------------


def aligned_faces(paths: list[str], landmarks: list[list[float]]) -> np.ndarray:
    """Grey ``FACE x FACE`` crops with the eye centres at fixed positions (similarity transform)."""
    from PIL import Image

    out = np.zeros((len(paths), FACE * FACE), np.float32)
    for i, (path, points) in enumerate(zip(paths, landmarks, strict=True)):
        if points is None:
            continue
        lm = np.asarray(points, np.float64).reshape(-1, 2)
        left, right = lm[36:42].mean(0), lm[42:48].mean(0)
        span = right - left
        scale = 0.4 * FACE / max(np.linalg.norm(span), 1e-6)
        angle = np.arctan2(span[1], span[0])
        ca, sa = np.cos(angle) / scale, np.sin(angle) / scale
        u0, v0 = 0.3 * FACE, 0.35 * FACE
        coefficients = (ca, -sa, left[0] - ca * u0 + sa * v0, sa, ca, left[1] - sa * u0 - ca * v0)
        try:
            with Image.open(path) as image:
                grey = image.convert("L").transform((FACE, FACE), Image.AFFINE, coefficients, resample=Image.BILINEAR)
        except (OSError, ValueError):
            continue
        out[i] = np.asarray(grey, np.float32).reshape(-1) / 255.0
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


def landmark_geometry(landmarks: list[list[float]]) -> np.ndarray:
    """The 68 landmarks centred between the eyes, rotated level and scaled by the eye distance."""
    points = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    left, right = points[:, 36:42].mean(1), points[:, 42:48].mean(1)
    span = right - left
    distance = np.linalg.norm(span, axis=1)
    angle = -np.arctan2(span[:, 1], span[:, 0])
    rotation = np.stack([np.stack([np.cos(angle), -np.sin(angle)], 1), np.stack([np.sin(angle), np.cos(angle)], 1)], 1)
    centred = (points - ((left + right) / 2)[:, None]) / distance[:, None, None]
    return np.einsum("nij,nkj->nki", rotation, centred).reshape(len(points), -1)


def out_of_sample_probabilities(features: np.ndarray, given: np.ndarray, *, pca: int | None, c: float) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[Any] = [StandardScaler()]
    if pca:
        steps.append(PCA(pca, random_state=0))
    steps.append(LogisticRegression(C=c, max_iter=3000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_predict(make_pipeline(*steps), features, given, cv=folds, method="predict_proba")


def write_run(folder: Path, annotations: Any, probabilities: np.ndarray, policy: labels.LabelPolicy) -> Path:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    n, k = probabilities.shape
    clipped = np.clip(probabilities, 1e-7, 1.0)
    logits = np.log(clipped).astype(np.float32)
    splits = annotations["split"].to_list()
    table = pa.table(
        {
            "id": pa.array(annotations["id"].to_list(), pa.string()),
            "view": pa.array(["train_oof" if s == "train" else "class_frequency" for s in splits], pa.string()),
            "split": pa.array(splits, pa.string()),
            "label": pa.array(policy.apply(annotations["label"].to_numpy()), pa.int64()),
            "predicted": pa.array(probabilities.argmax(1), pa.int64()),
            "confidence": pa.array(probabilities.max(1).astype(np.float32), pa.float32()),
            "probabilities": pa.array(probabilities.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "logits": pa.array(logits.tolist(), pa.list_(pa.float32())),
            "valence_pred": pa.nulls(n, pa.float32()),
            "arousal_pred": pa.nulls(n, pa.float32()),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "predictions.parquet")
    config = {"name": folder.name, "dataset": "affectnet", "policy": policy.name, "vote_mode": None,
              "model": "sklearn-hog-logreg (cross_val_predict)", "seed": 0, "class_names": list(policy.classes)}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "COMPLETE").write_text("")
    return folder


def bench_detection(fo: Any, work: Path, scale: float, noise: float) -> dict[str, Any]:
    import polars as pl

    from curate import formats
    from curate.review import load as rl
    from curate.review.errors import confident_learning, mistakenness_scores, precision_recall_at_k
    from curate.synth.affectnet import generate_affectnet

    manual = work / "affectnet"
    start = time.perf_counter()
    if not manual.is_dir():
        generate_affectnet(manual, scale=scale, seed=SEED, label_noise=noise, workers=min(os.cpu_count() or 1, 4))
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
    annotations = formats.read("affectnet", manual).annotations.filter(pl.col("landmarks").is_not_null())
    flipped = set(ledger["id"].to_list())
    is_flip = np.array([i in flipped for i in annotations["id"].to_list()])
    given = annotations["label"].to_numpy().astype(np.int64)
    truth = dict(zip(ledger["id"].to_list(), ledger["true_label"].to_list(), strict=True))
    true = np.array([truth.get(i, g) for i, g in zip(annotations["id"].to_list(), given, strict=True)])
    k = int(is_flip.sum())
    results.update(rows=annotations.height, flips=k, noise=noise)

    start = time.perf_counter()
    paths = [str(manual / p) for p in annotations["source_path"].to_list()]
    faces = aligned_faces(paths, annotations["landmarks"].to_list())
    probabilities = out_of_sample_probabilities(hog(faces), given, pca=100, c=0.05)
    results["classifier_s"] = time.perf_counter() - start
    results["accuracy_true"] = float((probabilities.argmax(1) == true).mean())
    results["accuracy_given"] = float((probabilities.argmax(1) == given).mean())

    run = write_run(work / "runs" / "bench-oof", annotations, probabilities, policy)
    start = time.perf_counter()
    loaded = rl.load("affectnet", manual_dir=manual, name="bench-review", cache_dir=work / "cache", run=run)
    results["attach_s"] = time.perf_counter() - start
    run_summary = loaded.runs[0]
    ds = fo.load_dataset("bench-review")
    fields = rl.RunFields(run_summary.key)
    ids, mistakenness, hardness, quality, issue = ds.values(
        ["source_id", fields.mistakenness, fields.hardness, fields.label_quality, fields.label_issue]
    )
    stored_flip = np.array([i in flipped for i in ids])
    scored = np.array([m is not None for m in mistakenness])

    def pr(scores: list[Any], *, lower_is_worse: bool = False) -> tuple[float, float]:
        values = np.array([np.nan if s is None else float(s) for s in scores])
        values = np.where(np.isnan(values), -np.inf, -values if lower_is_worse else values)
        return precision_recall_at_k(values, stored_flip, k)

    flagged = np.array([bool(x) for x in issue])
    hits = int((flagged & stored_flip).sum())
    results["scores"] = {
        "mistakenness (FiftyOne Brain)": pr(mistakenness),
        "confident learning (cleanlab label quality)": pr(quality, lower_is_worse=True),
        "hardness (FiftyOne Brain, reference)": pr(hardness),
    }
    results["cleanlab_flagged"] = (int(flagged.sum()), hits / max(int(flagged.sum()), 1), hits / max(k, 1))
    results["scored_rows"] = int(scored.sum())
    results["misclassified_view"] = loaded.views.get("misclassified")

    geometry = landmark_geometry(annotations["landmarks"].to_list())
    ceiling = out_of_sample_probabilities(geometry, given, pca=None, c=1.0)
    quality_c, _ = confident_learning(given, ceiling)
    results["ceiling"] = {
        "accuracy_true": float((ceiling.argmax(1) == true).mean()),
        "mistakenness": precision_recall_at_k(
            mistakenness_scores(np.log(np.clip(ceiling, 1e-9, 1)), given), is_flip, k
        ),
        "confident learning": precision_recall_at_k(-quality_c, is_flip, k),
    }
    return results


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def markdown(ingest: dict[str, Any], detection: dict[str, Any]) -> str:
    bulk = ingest["rows"] / ingest["bulk_s"]
    reference = ingest["reference_rows"] / ingest["add_samples_s"]
    unvalidated = ingest["reference_rows"] / ingest["add_samples_unvalidated_s"]
    end_to_end = detection["load_rows"] / detection["load_s"]
    lines = [
        "## bench_review",
        "",
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
        f"### Finding flipped labels (synthetic AffectNet, {detection['rows']:,} rows, label noise {detection['noise']:.0%}, "
        f"{detection['flips']} flips)",
        "",
        "Out-of-sample probabilities: scikit-learn `cross_val_predict` (5 folds) of a logistic regression on HOG "
        "features of the landmark-aligned 48x48 face -- not a trained CNN run: the trainer writes predictions of the "
        "validation split only, so its runs cannot score flips in the training rows. "
        f"Classifier accuracy vs the true labels {detection['accuracy_true']:.3f} "
        f"(vs the noisy given labels {detection['accuracy_given']:.3f}); {detection['classifier_s']:.0f} s.",
        "",
        f"| score (read back from the FiftyOne fields) | precision@k | recall@k (k = {detection['flips']}) |",
        "|---|---:|---:|",
    ]
    for name, (precision, recall) in detection["scores"].items():
        lines.append(f"| {name} | {precision:.3f} | {recall:.3f} |")
    count, precision, recall = detection["cleanlab_flagged"]
    lines.append(f"| cleanlab `find_label_issues` flags ({count} rows flagged) | {precision:.3f} | {recall:.3f} |")
    ceiling = detection["ceiling"]
    lines += [
        "",
        "Reference, same pipeline maths on a classifier that sees the exact drawn landmarks (not pixels; accuracy "
        f"{ceiling['accuracy_true']:.3f}): mistakenness recall@k {ceiling['mistakenness'][1]:.3f}, confident learning "
        f"{ceiling['confident learning'][1]:.3f}. The generator draws weak expressions (intensity from 0.25) that "
        "overlap with Neutral and with each other, so part of the flips are invisible to any classifier.",
        "",
        f"Attaching the run (predictions, evaluation, Brain mistakenness + hardness, cleanlab, views) took "
        f"{detection['attach_s']:.1f} s for {detection['scored_rows']:,} rows.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.02, help="synthetic AffectNet scale (0.02: ~8,400 images)")
    parser.add_argument("--noise", type=float, default=0.1, help="label-noise rate")
    parser.add_argument("--ingest-rows", type=int, default=20_000)
    parser.add_argument("--reference-rows", type=int, default=3_000, help="rows for the slow add_samples path")
    parser.add_argument("--keep", type=Path, help="work folder to keep (and reuse the generated images)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-review-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        from curate.review import db

        db.configure(database_dir=work / "fiftyone-db")
        fo = db.connect()
        fo.config.show_progress_bars = False
        log("ingest: preparing the annotation table")
        frame = prepared_table(work, args.ingest_rows)
        log(f"ingest: {frame.height} rows")
        ingest = bench_ingest(fo, frame, args.reference_rows)
        log(f"ingest: {ingest}")
        detection = bench_detection(fo, work, args.scale, args.noise)
        log(f"detection: {detection}")
        print(markdown(ingest, detection))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
