"""Apply a finished run to new pictures (``curate predict``): find faces, crop, classify.

* :func:`load_predictor` -- a run folder's model on one backend of :data:`BACKENDS`:
  ``keras`` (``model.keras``), ``tflite`` / ``tflite-int8`` / ``tflite-dynamic`` (the run's
  ``model_float.tflite`` / full-integer ``model_int8.tflite`` / dynamic-range
  ``model_dynamic_int8.tflite``, on ``ai_edge_litert``) or ``onnx`` (``model.onnx``, made by
  ``curate train export --format onnx``, on ``onnxruntime``). Every backend takes the same
  uint8 face crops and returns class probabilities under the run's policy (and valence /
  arousal for runs with that head), so their answers can be compared row for row.
* :func:`image_paths` -- files, folders (searched recursively) and glob patterns -> image files.
* :func:`predict_images` -- one row per face (``--no-detect``: per image), and one row for each
  image with no face or that does not decode: a batch never fails because of one file.

The faces are found and cut as :mod:`train.faces` says (OpenCV's bundled cascade, the
builders' 20 % margin). A model trained on the synthetic demo faces has learnt drawn faces:
its labels on a real photograph mean little, and the table says which run and policy spoke.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from train import export
from train.config import TrainError

#: Backends of :func:`load_predictor`.
BACKENDS: tuple[str, ...] = ("keras", "tflite", "tflite-int8", "tflite-dynamic", "onnx")
#: The file each backend reads in a run folder.
BACKEND_FILES: dict[str, str] = {
    "keras": "model.keras",
    "tflite": export.TFLITE_FILES["float"],
    "tflite-int8": export.TFLITE_FILES["int8"],
    "tflite-dynamic": export.TFLITE_FILES["dynamic"],
    "onnx": "model.onnx",
}
#: File name endings read as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


@dataclass
class Predictor:
    """A run's model on one backend: ``predict(uint8 (N, S, S, 3)) -> {"label": (N, C)[, "va": (N, 2)]}``."""

    run: Path
    backend: str
    class_names: list[str]
    image_size: int
    policy: str
    va_head: bool
    align: str
    predict: Callable[[np.ndarray], dict[str, np.ndarray]] = field(repr=False)


def _keras(path: Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    import keras

    # the run's temperature (train.calibration), as its exported files apply it
    metrics = json.loads((path.parent / "metrics.json").read_text(encoding="utf-8"))
    temperature = metrics.get("calibration", {}).get("temperature")
    return export.keras_runner(keras.models.load_model(str(path), compile=False), temperature)


def load_predictor(run: str | Path, backend: str = "keras", **lookup: Any) -> Predictor:
    """The model of a complete run (a path or a run name; ``lookup``: ``runs_dir`` / ``workspace``)."""
    from train.runs import load_run

    if backend not in BACKENDS:
        raise TrainError(f"--backend {backend}: not one of {', '.join(BACKENDS)}")
    loaded = load_run(run, **lookup)
    folder, config = loaded["path"], loaded["config"]
    path = folder / BACKEND_FILES[backend]
    if not path.is_file():
        how = {
            "onnx": f"make it with `curate train export --run {folder} --format onnx`",
            "keras": "the run folder is damaged",
        }.get(backend, "the run was trained with --no-export; train it again with exports or use --backend keras")
        raise TrainError(f"run {folder.name}: no {path.name} for --backend {backend} ({how})")
    load = {"keras": _keras, "onnx": export.onnx_runner}.get(backend, export.tflite_runner)
    return Predictor(
        run=folder,
        backend=backend,
        class_names=list(config["class_names"]),
        image_size=int(config["image_size"]),
        policy=str(config.get("policy", "")),
        va_head=bool(config.get("va_head", False)),
        align=str(config.get("align", "none")),
        predict=load(path),
    )


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named by ``inputs`` (files, folders searched recursively, glob patterns), sorted, unique.

    A named file is kept whatever its ending (it is reported unreadable when it is not an
    image); an input that matches nothing, or a folder with no image in it, is an error.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise TrainError(f"{path}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            found += files
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True) if Path(p).is_file())
            if not matches:
                raise TrainError(f"{item}: no such file, folder or matching pattern")
            found += matches
    return list(dict.fromkeys(found))


def _read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)  # phone photos: the orientation the viewer shows
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def predict_images(
    predictor: Predictor,
    paths: Iterable[Path],
    *,
    detect: bool = True,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per face (or per image with ``detect=False``), plus a row for each image without one.

    Row keys: ``file``, ``face`` (index, largest first; None when there is no face), ``status``
    (``ok``, ``no face`` or ``unreadable: <reason>``), ``box_x, box_y, box_width,
    box_height`` (pixels; the whole image with ``detect=False``), ``predicted``,
    ``confidence``, one ``p_<class>`` per class and, with a V/A head, ``valence`` and ``arousal``.
    ``progress`` is called with the number of images done after each one.
    """
    from train import faces

    rows: list[dict[str, Any]] = []
    pending: list[tuple[dict[str, Any], np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        out = predictor.predict(np.stack([crop for _, crop in pending]))
        for (row, _), probabilities, va in zip(
            pending, out["label"], out.get("va", [None] * len(pending)), strict=True
        ):
            best = int(np.argmax(probabilities))
            row.update(predicted=predictor.class_names[best], confidence=float(probabilities[best]))
            row.update({f"p_{name}": float(p) for name, p in zip(predictor.class_names, probabilities, strict=True)})
            if va is not None:
                row.update(valence=float(va[0]), arousal=float(va[1]))
        pending.clear()

    for done, path in enumerate(paths, start=1):
        base = {"file": str(path), "face": None, "status": "ok"}
        try:
            image = _read_rgb(path)
        except Exception as error:  # noqa: BLE001 - a bad file is a row, never the end of the batch
            rows.append({**base, "status": f"unreadable: {type(error).__name__}: {error}".splitlines()[0]})
        else:
            height, width = image.shape[:2]
            boxes = faces.detect_faces(image) if detect else [faces.FaceBox(0, 0, width, height)]
            if not boxes:
                rows.append({**base, "status": "no face"})
            for index, box in enumerate(boxes):
                row = {**base, "face": index, "box_x": box.x, "box_y": box.y, "box_width": box.width,
                       "box_height": box.height}  # fmt: skip
                rows.append(row)
                crop = faces.crop_face(image, box if detect else None, predictor.image_size)
                pending.append((row, crop))
            if len(pending) >= batch_size:
                flush()
        if progress is not None:
            progress(done)
    flush()
    return rows


def describe(predictor: Predictor) -> str:
    """One line naming what answered: run, policy, backend and classes."""
    line = (
        f"run {predictor.run.name} (policy {predictor.policy}, {len(predictor.class_names)} classes: "
        f"{', '.join(predictor.class_names)}), backend {predictor.backend}, {predictor.image_size} px input"
    )
    if predictor.align == "eyes":  # the detector gives a box, not the 68 landmarks the run aligned by
        line += "; note: trained on eye-aligned faces, these are margin crops (expect lower accuracy)"
    return line
