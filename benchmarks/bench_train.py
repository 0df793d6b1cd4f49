"""Training throughput: the tf.data pipeline against the training step, caching, TFLite.

On a synthetic AffectNet (cropped layout, built as TFDS ``affectnet/crop224``, cached under
``--work``) with MobileNetV3Small at 96 px, batch 64, the script measures

1. the pipeline alone, epoch 1: TFDS read -> policy -> JPEG decode -> resize -> cache fill
   -> augment -> batch (images/s over one epoch of the training stream);
2. the pipeline alone, epoch 2: the same stream once the cache is full (no decoding);
3. the training step alone: ``train_on_batch`` on one batch already in memory, after a
   warm-up (images/s = batch / seconds per step);
4. ``model.fit`` for one epoch on the real pipeline (end-to-end training images/s, after
   a first epoch that traces the step function);
5. TFLite float and int8 exports of the model: file size and single-image latency on one
   CPU thread (``ai_edge_litert``, median of 200 invokes).

and prints a Markdown table. The pipeline must deliver >= 3x the step rate (so training is
never input-bound); epoch 2 should be several times faster than epoch 1.

Run: ``.venv/bin/python benchmarks/bench_train.py [--scale 0.007] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_dataset(work: Path, scale: float) -> Path:
    """Synthetic AffectNet (cropped layout) built as TFDS under ``work``; reused when present."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401
    from curate.synth.affectnet import generate_affectnet

    data_dir = work / f"tfds-{scale}"
    manual = work / f"manual-{scale}"
    if (data_dir / "affectnet").exists():
        return data_dir
    if manual.exists():
        shutil.rmtree(manual)
    started = time.perf_counter()
    generate_affectnet(manual, layout="cropped", scale=scale, seed=0)
    builder = tfds.builder("affectnet/crop224", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    print(f"  built {data_dir} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return data_dir


def images_per_second(dataset, steps: int, batch_size: int) -> float:
    started = time.perf_counter()
    seen = 0
    for x, _, _ in dataset.take(steps):
        seen += int(x.shape[0])
    return seen / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.007, help="synthetic AffectNet scale (0.007: ~2,000 train)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "curate-bench-train")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)

    from train import data as data_module
    from train import export, loop, models
    from train.config import TrainConfig

    data_dir = build_dataset(args.work, args.scale)
    config = TrainConfig(
        dataset="affectnet", policy="drop-8-plus", data_dir=str(data_dir), image_size=args.image_size,
        batch_size=args.batch_size, epochs=1, model="mobilenet_v3_small", export_tflite=False,
    )  # fmt: skip
    loop.set_determinism(0)
    prepared = data_module.prepare_data(config, verbose=False)
    steps = prepared.steps_per_epoch
    epoch1 = images_per_second(prepared.train, steps, args.batch_size)  # decodes and fills the cache
    stream = iter(prepared.train)  # a fresh iterator: its shuffle buffer fills from the full cache
    started = time.perf_counter()
    seen = 0
    for _ in range(steps):
        seen += int(next(stream)[0].shape[0])
    epoch2 = seen / (time.perf_counter() - started)

    model = models.build_model(config, len(prepared.class_names))
    models.compile_model(model, config, target_kind=prepared.target_kind, steps_per_epoch=steps)
    x, y, w = next(stream)
    for _ in range(3):
        model.train_on_batch(x, y, sample_weight=w)
    repeats = 10
    started = time.perf_counter()
    for _ in range(repeats):
        model.train_on_batch(x, y, sample_weight=w)
    step_rate = repeats * int(x.shape[0]) / (time.perf_counter() - started)

    model.fit(prepared.train, epochs=1, steps_per_epoch=steps, verbose=0)  # traces fit's own step function
    started = time.perf_counter()
    model.fit(prepared.train, epochs=1, steps_per_epoch=steps, verbose=0)
    fit_rate = steps * args.batch_size / (time.perf_counter() - started)

    with tempfile.TemporaryDirectory() as tmp:
        paths = export.export_tflite(model, tmp, representative=prepared.representative)
        latency = {
            kind: (path.stat().st_size, export.measure_latency(path, image_size=args.image_size, runs=200)["median_ms"])
            for kind, path in paths.items()
        }
    prepared.cleanup()

    rows = [
        ("train rows / steps per epoch", f"{prepared.train_count} / {steps}", ""),
        ("pipeline alone, epoch 1 (read + decode + resize + cache fill + augment)", f"{epoch1:,.0f} img/s", ""),
        (
            "pipeline alone, epoch 2 (from the cache + augment)",
            f"{epoch2:,.0f} img/s",
            f"{epoch2 / epoch1:.1f}x epoch 1",
        ),
        ("training step alone (batch in memory)", f"{step_rate:,.0f} img/s", ""),
        ("pipeline epoch 2 / training step", f"{epoch2 / step_rate:.1f}x", "target >= 3x"),
        ("model.fit, one epoch on the pipeline (cache warm)", f"{fit_rate:,.0f} img/s", ""),
        (
            "TFLite float: size, latency (1 thread)",
            f"{latency['float'][0] / 1e6:.2f} MB",
            f"{latency['float'][1]:.2f} ms/img",
        ),
        (
            "TFLite int8: size, latency (1 thread)",
            f"{latency['int8'][0] / 1e6:.2f} MB",
            f"{latency['int8'][1]:.2f} ms/img",
        ),
    ]
    print(
        f"## bench_train\n\nMobileNetV3Small, {args.image_size} px, batch {args.batch_size}, synthetic AffectNet "
        f"crop224 (scale {args.scale}), policy drop-8-plus, {os.cpu_count()} CPUs, TF threads default.\n"
    )
    print("| measure | value | note |\n|---|---:|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")
    verdict = "OK" if epoch2 >= 3 * step_rate else "BELOW TARGET"
    print(f"\nPipeline vs step: {verdict} ({epoch2 / step_rate:.1f}x).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
