"""What each TFLite quantisation scheme costs a finished run, on every one of its evaluation rows.

``curate train`` ships two quantised files (:mod:`train.export`): full-integer int8
(``model_int8.tflite``) and dynamic-range int8 (``model_dynamic_int8.tflite``). This study
converts the run's model under those two schemes and under the variants one would try to bring
full-integer closer to float, and measures each against TFLite float on the run's evaluation
views (:func:`train.export.backend_parity`: top-1 agreement, accuracy and balanced-accuracy
change in points), with its size and single-image latency on one CPU thread:

* ``full-integer`` -- the export: int8 everywhere, ranges calibrated on 128 training images;
* ``full-integer, 1024 calibration images`` -- wider calibration;
* ``full-integer, head in float`` -- the classifier (FULLY_CONNECTED) and SOFTMAX left in float
  (TFLite's ``QuantizationDebugger`` deny-list): rules out the output quantisation (ties);
* ``full-integer, hard-swish in float`` -- MobileNetV3's HARD_SWISH left in float;
* ``dynamic range`` -- the second export: int8 weights, activations quantised per call;
* ``float16`` -- float16 weights (GPU delegates), float arithmetic on a CPU.

It also lists the float model's widest activations: for each layer output, its range over the
128 calibration images (what full integer divides into 256 steps) in standard deviations of
the whole tensor and of its median channel.

Run on a finished run (its TFDS build must be where its config says, or pass ``--data-dir``);
the default is the demo's ``demo-merge-to-neutral`` run, made by ``make demo``::

    .venv/bin/python benchmarks/bench_quantise.py --run runs/my-run

Prints a Markdown section (``docs/predict.md`` quotes it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEMO_RUN = ROOT / "demo_output" / "workspace" / "runs" / "demo-merge-to-neutral"
#: scheme -> what it leaves in float; see the module docstring.
SCHEMES: dict[str, str] = {
    "full-integer": "nothing (uint8 in)",
    "full-integer, 1024 calibration images": "nothing",
    "full-integer, head in float": "classifier and softmax",
    "full-integer, hard-swish in float": "HARD_SWISH",
    "dynamic range": "activations",
    "float16": "arithmetic (float16 weights)",
}


def convert(saved: Path, scheme: str, data) -> bytes:
    """The TFLite flatbuffer of the SavedModel ``saved`` under ``scheme``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if scheme == "dynamic range":
        return converter.convert()
    if scheme == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    calibration = list(data.representative(1024 if "1024" in scheme else 128))
    converter.representative_dataset = lambda: iter(calibration)
    denied = {"full-integer, head in float": ["FULLY_CONNECTED", "SOFTMAX"],
              "full-integer, hard-swish in float": ["HARD_SWISH"]}.get(scheme)  # fmt: skip
    if denied:
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=denied)
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: iter(calibration[:8]), debug_options=options
        )
        return debugger.get_nondebug_quantized_model()
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    return converter.convert()


def widest_activations(model, images, top: int = 5) -> list[tuple[str, float, float]]:
    """(layer, range / std, range / median channel std) of the backbone's ``top`` widest layer outputs."""
    import keras
    import numpy as np

    from train.models import BACKBONE_NAME

    backbone = model.get_layer(BACKBONE_NAME)
    x = images
    for layer in model.layers[1:]:  # greyscale / rescaling before the backbone
        if layer is backbone:
            break
        x = np.asarray(layer(x))
    inner = [layer for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
    values = keras.Model(backbone.inputs, [layer.output for layer in inner]).predict(x, verbose=0)
    widths = []
    for layer, value in zip(inner, values, strict=True):
        value = np.asarray(value)
        if value.ndim == 4:
            span = float(value.max() - min(float(value.min()), 0.0))
            channel_std = float(np.median(value.reshape(-1, value.shape[-1]).std(axis=0)))
            widths.append((layer.name, span / (float(value.std()) + 1e-9), span / (channel_std + 1e-9)))
    return sorted(widths, key=lambda width: -width[1])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default=str(DEMO_RUN), help="run folder or name (default: the demo's)")
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--data-dir", default=None, help="TFDS data dir, if the build moved")
    args = parser.parse_args()

    if args.run == str(DEMO_RUN) and not DEMO_RUN.is_dir():
        print("## Quantisation schemes on a finished run (`benchmarks/bench_quantise.py`)\n")
        print(f"Skipped: no run to measure ({DEMO_RUN.relative_to(ROOT)} is made by `make demo`; or pass --run).\n")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")  # the debugger's own use
    import keras
    import numpy as np

    from train import export
    from train.compare import with_interval
    from train.config import TrainConfig
    from train.data import prepare_data
    from train.runs import load_run

    started = time.perf_counter()
    loaded = load_run(args.run, runs_dir=args.runs_dir)
    folder, saved_config = loaded["path"], dict(loaded["config"])
    if args.data_dir:
        saved_config["data_dir"] = args.data_dir
    config = TrainConfig.from_dict(saved_config)
    model = keras.models.load_model(str(folder / "model.keras"), compile=False)
    temperature = loaded["metrics"].get("calibration", {}).get("temperature")
    with tempfile.TemporaryDirectory(prefix="bench-quantise-") as tmp:
        work = Path(tmp)
        data = prepare_data(config, work_dir=work, verbose=False)
        saved = work / "saved_model"
        export.inference_model(model, temperature).export(str(saved), verbose=False)
        paths = {"float": work / "float.tflite"}
        paths["float"].write_bytes(convert_float(saved))
        for index, scheme in enumerate(SCHEMES):
            paths[scheme] = work / f"scheme{index}.tflite"
            paths[scheme].write_bytes(convert(saved, scheme, data))
        threads = os.cpu_count() or 1
        runners = {"keras": export.keras_runner(model, temperature)}
        runners.update({name: export.tflite_runner(path, threads) for name, path in paths.items()})
        parity = export.backend_parity(data.views, runners, data.class_names, quantised=tuple(SCHEMES))
        latency = {name: export.measure_latency(path, image_size=config.image_size)["median_ms"]
                   for name, path in paths.items()}  # fmt: skip
        sizes = {name: path.stat().st_size / 2**20 for name, path in paths.items()}
        calibration = np.concatenate([np.asarray(row[0]) for row in data.representative()])
        widest = widest_activations(model, calibration)
        data.cleanup()

    views = list(parity)
    rows = ", ".join(f"{view} {parity[view]['rows']:,}" for view in views)
    print("## Quantisation schemes on a finished run (`benchmarks/bench_quantise.py`)\n")
    print(
        f"Run `{folder.name}`: {config.model} at {config.image_size} px, {len(data.class_names)} classes; "
        f"every evaluation row ({rows}). Each scheme against "
        "TFLite float: top-1 agreement, accuracy and balanced-accuracy change in points, each with its 95 % interval (Wilson; paired bootstrap within labels); latency is the median "
        f"single-image call on one CPU thread ({time.perf_counter() - started:.0f} s in all).\n"
    )
    header = "| scheme | left in float | MiB | ms per image |"
    rule = "|---|---|---:|---:|"
    for view in views:
        header += f" {view}: top-1 = float, % [95%] | Δ accuracy [95%] | Δ balanced accuracy [95%] |"
        rule += "---:|---:|---:|"
    print(header + "\n" + rule)
    print(f"| TFLite float | everything | {sizes['float']:.2f} | {latency['float']:.2f} |" + " – | – | – |" * len(views))
    for scheme, left in SCHEMES.items():
        cells = [scheme, left, f"{sizes[scheme]:.2f}", f"{latency[scheme]:.2f}"]
        for view in views:
            entry = parity[view][scheme]
            cells += [with_interval(100 * entry["top1_agreement_with_float"], entry, "top1_agreement_with_float",
                                    "{:.1f}", 100),
                      with_interval(entry["accuracy_change_vs_float"], entry, "accuracy_change_vs_float", "{:+.1f}"),
                      with_interval(entry["balanced_accuracy_change_vs_float"], entry,
                                    "balanced_accuracy_change_vs_float", "{:+.1f}")]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print(
        "\nWidest activations of the float model (range over the calibration images, in standard deviations "
        "of the tensor / of its median channel): "
        + "; ".join(f"{name} {whole:.0f} / {channel:.0f}" for name, whole, channel in widest)
        + ".\n"
    )


def convert_float(saved: Path) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert()


if __name__ == "__main__":
    main()
