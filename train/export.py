"""TFLite exports of a trained model and their measured size and latency.

Recipe (checked in ``recipes.md``): Keras 3 ``model.export(dir)`` writes a SavedModel, then
``tf.lite.TFLiteConverter.from_saved_model(dir)`` converts it.

* ``model_float.tflite`` -- float32 in, class probabilities (and V/A) out.
* ``model_int8.tflite`` -- full-integer quantisation calibrated on training images
  (representative dataset); uint8 image in (0-255, as decoded), float32 outputs. Every
  activation is int8 with one range fixed at calibration: what integer-only accelerators
  (NPUs, Edge TPU, microcontrollers) need, and the file that moves furthest from float.
* ``model_dynamic_int8.tflite`` -- dynamic-range quantisation: int8 weights, activations
  quantised per call from their own range (float in and out, no calibration). On a CPU it
  is smaller than float and as fast, and keeps far closer to float than full-integer
  (``docs/predict.md`` has the measured figures).

:func:`measure_latency` times single-image inference with ``ai_edge_litert`` on one CPU
thread (median of repeated invokes after a warm-up). :func:`backend_parity` runs every
evaluation row through Keras and every exported file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

#: The TFLite files of a run, by kind (keys of :func:`export_tflite`'s result).
TFLITE_FILES: dict[str, str] = {
    "float": "model_float.tflite",
    "int8": "model_int8.tflite",
    "dynamic": "model_dynamic_int8.tflite",
}
#: The quantised kinds, each measured against ``float`` by :func:`backend_parity`.
QUANTISED: tuple[str, ...] = ("int8", "dynamic")
#: Share of rows on which a quantised file should keep float's top-1 (issue #20's target);
#: below it, ``curate train`` and the comparison say so (:func:`train.compare.parity_notes`).
AGREEMENT_TARGET = 0.98


def inference_model(model: Any, temperature: float | None = None) -> Any:
    """``model`` with softmax probabilities instead of logits on the ``label`` output.

    ``temperature`` (the run's, :mod:`train.calibration`) divides the logits first, so an
    exported file returns the calibrated probabilities; top-1 is unchanged.
    """
    import keras

    def probabilities(logits: Any) -> Any:
        if temperature:
            logits = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits)
        return keras.layers.Softmax(name="probabilities")(logits)

    outputs = model.outputs
    if isinstance(model.output, dict):
        outputs = dict(model.output)
        outputs["label"] = probabilities(outputs["label"])
    else:
        outputs = probabilities(model.output)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_inference")


def export_tflite(
    model: Any,
    out_dir: str | Path,
    *,
    representative: Callable[[], Iterable[Any]],
    int8: bool = True,
    temperature: float | None = None,
) -> dict[str, Path]:
    """Write ``model_float.tflite`` (and, with ``int8``, ``model_int8.tflite`` and
    ``model_dynamic_int8.tflite``) into ``out_dir``; return paths keyed ``float``, ``int8``, ``dynamic``."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="curate-export-") as tmp:
        saved = Path(tmp) / "saved_model"
        inference_model(model, temperature).export(str(saved), verbose=False)

        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        paths["float"] = out_dir / TFLITE_FILES["float"]
        paths["float"].write_bytes(converter.convert())

        if int8:
            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            paths["int8"] = out_dir / TFLITE_FILES["int8"]
            paths["int8"].write_bytes(converter.convert())

            converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
            converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
            paths["dynamic"] = out_dir / TFLITE_FILES["dynamic"]
            paths["dynamic"].write_bytes(converter.convert())
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


def tflite_runner(path: str | Path, threads: int = 1) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function from ``images`` (N, S, S, 3) in [0, 255] to a TFLite file's outputs, one image
    at a time, keyed by output name (``label`` probabilities, ``va`` when present)."""
    runner = _interpreter(path, threads).get_signature_runner()
    ((input_name, detail),) = runner.get_input_details().items()

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
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

    return run


def export_onnx(model: Any, path: str | Path, temperature: float | None = None) -> Path:
    """Write the inference model (softmax probabilities) as ONNX through Keras' own exporter (tf2onnx)."""
    path = Path(path)
    inference = inference_model(model, temperature)
    _, height, width, channels = inference.inputs[0].shape
    zeros = np.zeros((1, height, width, channels), dtype=np.float32)
    inference({inference.inputs[0].name: zeros})  # Keras exports only a model that has run
    converter_log = logging.getLogger("tf2onnx")
    level = converter_log.level
    # tf2onnx logs a traceback when one optional graph optimisation does not apply to a layer
    # (the transpose optimiser on MobileNetV3's squeeze-excite bias); the model is still exact
    # (the parity check measures it)
    converter_log.setLevel(logging.CRITICAL)
    try:
        inference.export(str(path), format="onnx", verbose=False)
    finally:
        converter_log.setLevel(level)
    return path


def onnx_session(path: str | Path, threads: int = 1) -> Any:
    """An ``onnxruntime`` CPU session of an exported run on ``threads`` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_runner(path: str | Path, threads: int = 1) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function from images (N, S, S, 3) in [0, 255] to an ONNX file's outputs (:func:`onnx_predict`)."""
    session = onnx_session(path, threads)
    return lambda images: onnx_predict(session, images)


def onnx_predict(session: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of an ONNX session on ``images`` (N, S, S, 3) in [0, 255]: ``label`` (and ``va``)."""
    (feed,) = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, {feed.name: np.asarray(images, dtype=np.float32)})
    out = {name: np.asarray(value, dtype=np.float32) for name, value in zip(names, values, strict=True)}
    if "label" not in out:  # a single output carries the probabilities
        (value,) = out.values()
        out = {"label": value}
    return out


def measure_latency(
    path: str | Path, *, image_size: int, runs: int = 50, warmup: int = 5, threads: int = 1
) -> dict[str, float]:
    """Median / mean single-image latency in ms of a TFLite file on ``threads`` CPU threads."""
    interpreter = _interpreter(path, threads)
    _set_image(interpreter, _latency_image(image_size))
    return _time_calls(interpreter.invoke, runs=runs, warmup=warmup, threads=threads)


def _latency_image(image_size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (1, image_size, image_size, 3)).astype(np.float32)


def _time_calls(call: Callable[[], Any], *, runs: int, warmup: int, threads: int) -> dict[str, float]:
    """Median / mean milliseconds of ``call`` over ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
    return {"median_ms": float(np.median(times)), "mean_ms": float(np.mean(times)), "runs": runs, "threads": threads}


def measure_onnx_latency(
    path: str | Path, *, image_size: int, runs: int = 50, warmup: int = 5, threads: int = 1
) -> dict[str, float]:
    """Median / mean single-image latency in ms of an ONNX file on ``threads`` CPU threads (onnxruntime)."""
    run, image = onnx_runner(path, threads), _latency_image(image_size)
    return _time_calls(lambda: run(image), runs=runs, warmup=warmup, threads=threads)


def keras_runner(model: Any, temperature: float | None = None) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function from images (N, S, S, 3) in [0, 255] to a Keras model's softmax ``label`` (and ``va``),
    the logits divided by ``temperature`` first when one is given."""
    from train.evaluate import softmax

    def run(images: np.ndarray) -> dict[str, np.ndarray]:
        out = model.predict_on_batch(np.asarray(images, dtype=np.float32))
        va = None
        if isinstance(out, dict):
            va, out = out.get("va"), out["label"]
        result = {"label": softmax(np.asarray(out), temperature or 1.0).astype(np.float32)}
        if va is not None:
            result["va"] = np.asarray(va, dtype=np.float32)
        return result

    return run


def backend_parity(
    views: dict[str, Any],
    runners: dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]],
    class_names: Any,
    quantised: Iterable[str] = QUANTISED,
) -> dict[str, Any]:
    """Every backend of ``runners`` on every row of every evaluation view, against ``keras``.

    ``views``: name -> :class:`train.data.View` (batches of uint8 ``image`` and ``label``).
    ``runners``: ``keras`` first, then any of ``float``, ``int8``, ``dynamic``, ``onnx``. Per
    view: the rows, each backend's accuracy and balanced accuracy, its top-1 agreement with
    Keras and the largest absolute difference of a class probability; the ``quantised`` runners
    (default :data:`QUANTISED`) also against ``float`` (agreement, accuracy and balanced-accuracy
    change in points, each with a 95 % interval, :func:`quantisation_cost`): what quantisation costs.
    """
    from train.evaluate import classification_metrics

    out: dict[str, Any] = {}
    for view_name, view in views.items():
        probabilities: dict[str, list[np.ndarray]] = {name: [] for name in runners}
        labels: list[np.ndarray] = []
        for row in view.dataset:
            images = np.asarray(row["image"], dtype=np.float32)
            label = np.asarray(row["label"])
            labels.append(label.argmax(axis=-1) if label.ndim == 2 else label)
            for name, run in runners.items():
                probabilities[name].append(run(images)["label"])
        if not labels:
            continue
        truth = np.concatenate(labels).astype(np.int64)
        stacked = {name: np.concatenate(parts) for name, parts in probabilities.items()}
        top1 = {name: p.argmax(axis=1) for name, p in stacked.items()}
        entry: dict[str, Any] = {"rows": int(len(truth))}
        for name, p in stacked.items():
            scores = classification_metrics(truth, top1[name], class_names)
            entry[name] = {"accuracy": scores["accuracy"], "balanced_accuracy": scores["balanced_accuracy"]}
            if name != "keras":
                entry[name]["top1_agreement_with_keras"] = float(np.mean(top1[name] == top1["keras"]))
                entry[name]["max_abs_difference"] = float(np.abs(p - stacked["keras"]).max())
        for kind in quantised:
            if kind in stacked and "float" in stacked:
                entry[kind].update(quantisation_cost(truth, top1[kind], top1["float"], seed=len(out)))
                for metric in ("accuracy", "balanced_accuracy"):
                    entry[kind][f"{metric}_change_vs_float"] = 100 * (entry[kind][metric] - entry["float"][metric])
        out[view_name] = entry
    return out


def quantisation_cost(
    labels: np.ndarray, quantised: np.ndarray, reference: np.ndarray, *, seed: int = 0, replicates: int = 1000
) -> dict[str, Any]:
    """How sure the quantised-vs-float figures are, on these rows.

    ``top1_agreement_with_float`` with its 95 % Wilson interval, and 95 % intervals of the
    accuracy and balanced-accuracy change in points: a paired bootstrap, rows resampled within
    each label (:func:`train.slices.bootstrap_scores`), the same rows for both predictions in
    every replicate (two generators seeded alike draw the same indices).
    """
    from scipy.stats import binomtest

    from train.slices import bootstrap_scores, ci95

    agree = int(np.sum(quantised == reference))
    wilson = binomtest(agree, len(labels)).proportion_ci(confidence_level=0.95, method="wilson")
    accuracy_ci, balanced_ci = ci95(
        100 * (
            bootstrap_scores(labels, quantised, np.random.default_rng([seed, 31]), replicates)
            - bootstrap_scores(labels, reference, np.random.default_rng([seed, 31]), replicates)
        )
    )
    return {
        "top1_agreement_with_float": agree / len(labels),
        "top1_agreement_with_float_ci95": [float(wilson.low), float(wilson.high)],
        "accuracy_change_vs_float_ci95": accuracy_ci,
        "balanced_accuracy_change_vs_float_ci95": balanced_ci,
    }


def parity_runners(
    model: Any, folder: Path, temperature: float | None = None
) -> dict[str, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """Keras (with the run's ``temperature``, as the exports) plus every exported file present in a
    run folder, each as a runner (TFLite / ONNX on all cores)."""
    threads = os.cpu_count() or 1
    runners = {"keras": keras_runner(model, temperature)}
    for name, file in TFLITE_FILES.items():
        if (folder / file).is_file():
            runners[name] = tflite_runner(folder / file, threads)
    if (folder / "model.onnx").is_file():
        runners["onnx"] = onnx_runner(folder / "model.onnx", threads)
    return runners
