"""TFLite exports of a trained model and their measured size and latency.

Recipe (checked in ``recipes.md``): Keras 3 ``model.export(dir)`` writes a SavedModel, then
``tf.lite.TFLiteConverter.from_saved_model(dir)`` converts it.

* ``model_float.tflite`` -- float32 in, class probabilities (and V/A) out.
* ``model_int8.tflite`` -- full-integer quantisation calibrated on training images
  (representative dataset); uint8 image in (0-255, as decoded), float32 outputs.

:func:`measure_latency` times single-image inference with ``ai_edge_litert`` on one CPU
thread (median of repeated invokes after a warm-up). :func:`tflite_agreement` compares the
exported model's top-1 with Keras on a few images.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np


def inference_model(model: Any) -> Any:
    """``model`` with softmax probabilities instead of logits on the ``label`` output."""
    import keras

    outputs = model.outputs
    if isinstance(model.output, dict):
        outputs = dict(model.output)
        outputs["label"] = keras.layers.Softmax(name="probabilities")(outputs["label"])
    else:
        outputs = keras.layers.Softmax(name="probabilities")(model.output)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_inference")


def export_tflite(
    model: Any,
    out_dir: str | Path,
    *,
    representative: Callable[[], Iterable[Any]],
    int8: bool = True,
) -> dict[str, Path]:
    """Write ``model_float.tflite`` (and ``model_int8.tflite``) into ``out_dir``; return paths."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="curate-export-") as tmp:
        saved = Path(tmp) / "saved_model"
        inference_model(model).export(str(saved), verbose=False)

        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        paths["float"] = out_dir / "model_float.tflite"
        paths["float"].write_bytes(converter.convert())

        if int8:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            paths["int8"] = out_dir / "model_int8.tflite"
            paths["int8"].write_bytes(converter.convert())
        shutil.rmtree(saved, ignore_errors=True)
    return paths


def _interpreter(path: str | Path, threads: int = 1) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def _quantise(detail: dict[str, Any], image: np.ndarray) -> np.ndarray:
    value = np.asarray(image, dtype=np.float32)
    if detail["dtype"] != np.float32:
        scale, zero_point = detail["quantization"]
        if scale:
            value = value / scale + zero_point
        info = np.iinfo(detail["dtype"])
        value = np.clip(np.round(value), info.min, info.max)
    return value.astype(detail["dtype"]).reshape(detail["shape"])


def _set_image(interpreter: Any, image: np.ndarray) -> None:
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], _quantise(detail, image))


def tflite_predict(path: str | Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of a TFLite file on ``images`` (N, S, S, 3) in [0, 255], one image at a time,
    keyed by output name (``label`` probabilities, ``va`` when present)."""
    runner = _interpreter(path, 1).get_signature_runner()
    ((input_name, detail),) = runner.get_input_details().items()
    outputs: dict[str, list[np.ndarray]] = {}
    for image in images:
        result = runner(**{input_name: _quantise(detail, image[None])})
        for key, value in result.items():
            outputs.setdefault(key, []).append(np.asarray(value, dtype=np.float32).reshape(-1))
    stacked = {key: np.stack(values) for key, values in outputs.items()}
    if "label" not in stacked:  # single-output models name it output_0
        ((key, value),) = stacked.items()
        stacked = {"label": value}
    return stacked


def measure_latency(
    path: str | Path, *, image_size: int, runs: int = 50, warmup: int = 5, threads: int = 1
) -> dict[str, float]:
    """Median / mean single-image latency in ms of a TFLite file on ``threads`` CPU threads."""
    interpreter = _interpreter(path, threads)
    rng = np.random.default_rng(0)
    _set_image(interpreter, rng.integers(0, 256, (1, image_size, image_size, 3)))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": float(np.median(times)), "mean_ms": float(np.mean(times)), "runs": runs, "threads": threads}


def tflite_agreement(path: str | Path, images: np.ndarray, reference_probabilities: np.ndarray) -> float:
    """Fraction of ``images`` where the TFLite top-1 equals the Keras top-1."""
    predicted = tflite_predict(path, images)["label"].argmax(axis=1)
    return float(np.mean(predicted == np.asarray(reference_probabilities).argmax(axis=1)))
