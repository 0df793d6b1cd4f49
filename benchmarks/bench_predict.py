"""Inference latency of a run's backends (``curate predict --backend``) as ratios to Keras.

The model is the toolkit's baseline architecture at the run's size (``--model``,
``--alpha``, ``--image-size``; default MobileNetV3-Small at 64 px, as ``curate demo`` trains
it) with ``--classes`` outputs; weights do not change the arithmetic, so it is built untrained
and exported the way a run is (:mod:`train.export`: TFLite float, full-integer int8
calibrated on ``--calibration`` random images, dynamic-range int8, ONNX through Keras'
exporter). Measured in the same process,
interleaved, best of ``--repeat``:

* per-image latency on **one CPU thread** (median of ``--runs`` single-image calls after a
  warm-up): Keras ``predict_on_batch`` with TensorFlow held to one thread, the TFLite
  interpreter (``ai_edge_litert``), onnxruntime;
* batch throughput on one thread: ``--batch`` images per call (TFLite and onnxruntime take
  the batch in one call; TFLite's input is resized to it);
* the face detector of ``curate predict`` (OpenCV's cascade) on ``skimage.data.astronaut()``.

Prints a Markdown section. Run: ``.venv/bin/python benchmarks/bench_predict.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_ms(call, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calibration", type=int, default=64)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from ai_edge_litert.interpreter import Interpreter

    from train import export, faces, models
    from train.config import TrainConfig

    config = TrainConfig(dataset="affectnet", model=args.model, alpha=args.alpha, image_size=args.image_size)
    model = models.build_model(config, args.classes)
    size = args.image_size
    rng = np.random.default_rng(0)
    one = rng.integers(0, 256, (1, size, size, 3)).astype(np.float32)
    batch = rng.integers(0, 256, (args.batch, size, size, 3)).astype(np.float32)

    def representative():
        for _ in range(args.calibration):
            yield [rng.integers(0, 256, (1, size, size, 3)).astype(np.float32)]

    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    paths = export.export_tflite(model, work, representative=representative)
    paths["onnx"] = export.export_onnx(model, work / "model.onnx")
    keras_run = export.keras_runner(model)

    def tflite_calls(path: Path):
        single = Interpreter(model_path=str(path), num_threads=1)
        single.allocate_tensors()
        many = Interpreter(model_path=str(path), num_threads=1)
        detail = many.get_input_details()[0]
        many.resize_tensor_input(detail["index"], [args.batch, size, size, 3])
        many.allocate_tensors()

        def fill(interpreter, images):
            d = interpreter.get_input_details()[0]
            value = images
            if d["dtype"] != np.float32:
                value = np.clip(np.round(images), 0, 255).astype(d["dtype"])
            interpreter.set_tensor(d["index"], value)
            interpreter.invoke()

        return (lambda: fill(single, one)), (lambda: fill(many, batch))

    onnx_run = export.onnx_runner(paths["onnx"], threads=1)
    calls = {
        "Keras (TensorFlow, 1 thread)": (lambda: keras_run(one), lambda: keras_run(batch)),
        "TFLite float": tflite_calls(paths["float"]),
        "TFLite int8 (full integer)": tflite_calls(paths["int8"]),
        "TFLite int8 weights (dynamic range)": tflite_calls(paths["dynamic"]),
        "ONNX (onnxruntime)": (lambda: onnx_run(one), lambda: onnx_run(batch)),
    }
    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in calls}
    for _ in range(args.repeat):
        for name, (single, many) in calls.items():
            for _ in range(5):
                single(), many()
            best[name][0] = min(best[name][0], _median_ms(single, args.runs))
            best[name][1] = min(best[name][1], _median_ms(many, max(5, args.runs // 10)))
    from skimage import data

    photo = data.astronaut()
    faces.detect_faces(photo)
    detect_ms = min(_median_ms(lambda: faces.detect_faces(photo), 10) for _ in range(args.repeat))

    base_one, base_many = best["Keras (TensorFlow, 1 thread)"]
    print("## Inference backends (`curate predict --backend`, `curate train export`)\n")
    print(
        f"{args.model} (alpha {args.alpha}) at {size} px, {args.classes} classes, untrained (the arithmetic is the "
        f"same); one CPU thread everywhere; median of {args.runs} single-image calls and of batches of "
        f"{args.batch}, best of {args.repeat} interleaved rounds. Ratio: Keras time / backend time (above 1: "
        "faster than Keras). Files: "
        + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.2f} MiB" for p in paths.values())
        + ".\n"
    )
    print("| backend | ms per image | speed-up vs Keras | images/s in batches | speed-up vs Keras |")
    print("|---|---:|---:|---:|---:|")
    for name, (single_ms, batch_ms) in best.items():
        rate = 1000.0 * args.batch / batch_ms
        print(f"| {name} | {single_ms:.2f} | {base_one / single_ms:.1f}x | {rate:,.0f} | {base_many / batch_ms:.1f}x |")
    print(
        f"\nFace detection (OpenCV cascade, `train.faces.detect_faces`) on the 512x512 astronaut photograph: "
        f"{detect_ms:.0f} ms per photo.\n"
    )


if __name__ == "__main__":
    main()
