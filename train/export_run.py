"""Exports of a finished run (``curate train export``): ONNX, and every backend's parity with Keras.

:func:`export_run` loads a complete run's ``model.keras``, writes the requested formats into
its folder (``onnx``: ``model.onnx`` through Keras' own exporter, which drives tf2onnx),
rebuilds the run's evaluation views from its saved configuration (the same TFDS build, rows
and preprocessing as when it was trained), and measures every backend present -- Keras,
the TFLite float and int8 files, ONNX -- on every evaluation row
(:func:`train.export.backend_parity`). The figures and the ONNX file's size and latency go
into the run's ``metrics.json`` under ``export``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from train import export
from train.config import TrainConfig, TrainError
from train.runs import finite, load_run, write_json

#: Formats of :func:`export_run`.
FORMATS: tuple[str, ...] = ("onnx",)


def export_run(
    run: str | Path,
    *,
    formats: tuple[str, ...] = ("onnx",),
    runs_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Write ``formats`` into the run folder, measure parity on its evaluation rows; return ``metrics["export"]``.

    ``data_dir`` overrides the TFDS data dir saved in the run's configuration (a build moved
    elsewhere); the rows are checked against the run's data fingerprint by the data pipeline.
    """
    import keras

    from train.data import prepare_data

    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise TrainError(f"--format {', '.join(unknown)}: not one of {', '.join(FORMATS)}")
    loaded = load_run(run, runs_dir=runs_dir, workspace=workspace)
    folder, metrics = loaded["path"], loaded["metrics"]
    model = keras.models.load_model(str(folder / "model.keras"), compile=False)
    exports = metrics.setdefault("export", {})
    temperature = metrics.get("calibration", {}).get("temperature")  # the TFLite files carry it too
    if "onnx" in formats:
        path = export.export_onnx(model, folder / "model.onnx", temperature)
        latency = export.measure_onnx_latency(path, image_size=int(loaded["config"]["image_size"]))
        exports["onnx"] = {"file": path.name, "bytes": path.stat().st_size, "latency_ms": latency["median_ms"],
                           "latency": latency}  # fmt: skip
    saved = dict(loaded["config"])
    if data_dir is not None:
        saved["data_dir"] = str(data_dir)
    config = TrainConfig.from_dict(saved)
    with tempfile.TemporaryDirectory(prefix="curate-export-views-") as tmp:
        data = prepare_data(config, work_dir=Path(tmp), verbose=False)
        try:
            exports["parity"] = export.backend_parity(
                data.views, export.parity_runners(model, folder, temperature), data.class_names
            )
        finally:
            data.cleanup()
    write_json(folder / "metrics.json", finite(metrics))
    return exports
