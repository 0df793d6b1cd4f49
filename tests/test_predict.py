"""`curate predict` and `curate train export`: a run applied to photographs, on every backend."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import tensorflow_datasets as tfds
from typer.testing import CliRunner

from curate.cli import app
from train import faces

runner = CliRunner()

#: Where the astronaut's face is in ``skimage.data.astronaut()`` (512 x 512), drawn by hand
#: around forehead, ears and chin -- not taken from the detector.
ASTRONAUT_FACE = faces.FaceBox(170, 55, 110, 115)


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from curate.cli.app import console

    monkeypatch.setattr(console, "width", 200)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny FERPlus run with its TFLite exports, then its ONNX export (`curate train export`)."""
    import tfds_builders  # noqa: F401
    from curate.synth.ferplus import generate_ferplus
    from train import TrainConfig, train_run

    root = tmp_path_factory.mktemp("predict")
    generate_ferplus(root / "manual", scale=0.01, seed=11, workers=1)
    builder = tfds.builder("ferplus", data_dir=str(root / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
    config = TrainConfig(
        dataset="ferplus", policy="merge-to-neutral", data_dir=str(root / "tfds"), image_size=32, epochs=2,
        batch_size=32, alpha=0.75, holdout_fraction=0.2, name="tiny-export",
    )  # fmt: skip
    result = train_run(config, runs_dir=root / "runs", register=False, verbose=0)
    exported = runner.invoke(app, ["train", "export", "--run", str(result.path), "--format", "onnx"])
    assert exported.exit_code == 0, exported.output
    assert "model.onnx" in exported.output and "TFLite int8 (full integer)" in exported.output
    assert "TFLite int8 weights (dynamic range)" in exported.output
    return result.path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """The astronaut (a real photograph, one face), a blank picture and a file that is no image."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    Image.new("RGB", (200, 160), (128, 128, 128)).save(folder / "blank.jpg")
    (folder / "notes.jpg").write_text("not a picture\n")
    return folder


def test_quantisation_cost_intervals():
    from train.export import quantisation_cost

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 7, 700)
    reference = np.where(rng.random(700) < 0.6, labels, rng.integers(0, 7, 700))
    same = quantisation_cost(labels, reference, reference)
    assert same["top1_agreement_with_float"] == 1.0 and same["top1_agreement_with_float_ci95"][1] == pytest.approx(1.0)
    assert same["accuracy_change_vs_float_ci95"] == [0.0, 0.0]  # paired: the same rows in every replicate
    # a copy that gets 70 of float's right rows wrong: 10 points of accuracy lost, surely
    worse = reference.copy()
    right = np.flatnonzero(reference == labels)[:70]
    worse[right] = (labels[right] + 1) % 7
    cost = quantisation_cost(labels, worse, reference)
    assert cost["top1_agreement_with_float"] == pytest.approx(0.9)
    low, high = cost["top1_agreement_with_float_ci95"]
    assert 0.87 < low < 0.9 < high < 0.93
    low, high = cost["accuracy_change_vs_float_ci95"]
    assert low < -10.0 < high < -7.0


def test_parity_notes_name_the_file_under_the_target():
    from train.compare import parity_notes

    def view(int8, dynamic):
        return {"rows": 500, "int8": {"top1_agreement_with_float": int8}, "dynamic": {"top1_agreement_with_float": dynamic}}

    (note,) = parity_notes({"balanced": view(0.904, 0.989), "class_frequency": view(0.99, 0.991)})
    assert note.startswith("TFLite int8 (full integer) keeps float's top-1 on 90.4% of balanced rows, under 98%")
    assert "TFLite int8 weights (dynamic range) keeps 98% or more" in note and "class_frequency" not in note
    assert parity_notes({"balanced": view(0.985, 0.99)}) == []
    (first, second) = parity_notes({"balanced": view(0.9, 0.97)})
    assert "keeps 98% or more" not in first + second  # neither file to recommend


def test_export_parity_is_stored(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    parity = metrics["export"]["parity"]
    assert {"balanced", "class_frequency"} <= set(parity)
    for entry in parity.values():
        assert entry["rows"] > 0 and {"keras", "float", "int8", "dynamic", "onnx"} <= set(entry)
        # the same graph through another runtime: every top-1 equal, probabilities to float rounding
        assert entry["onnx"]["top1_agreement_with_keras"] >= 0.999
        assert entry["onnx"]["max_abs_difference"] < 1e-4
        assert entry["float"]["top1_agreement_with_keras"] >= 0.999
        for kind in ("int8", "dynamic"):  # each quantised file against float
            quantised = entry[kind]
            assert 0.0 <= quantised["top1_agreement_with_float"] <= 1.0
            assert quantised["accuracy_change_vs_float"] == pytest.approx(
                100 * (quantised["accuracy"] - entry["float"]["accuracy"])
            )
            low, high = quantised["top1_agreement_with_float_ci95"]
            assert low <= quantised["top1_agreement_with_float"] <= high
            for metric in ("accuracy", "balanced_accuracy"):
                low, high = quantised[f"{metric}_change_vs_float_ci95"]
                assert low <= high
    assert metrics["export"]["onnx"]["bytes"] == (run_dir / "model.onnx").stat().st_size
    assert metrics["export"]["onnx"]["latency"]["threads"] == 1


def test_predict_finds_the_astronaut(run_dir, photos, tmp_path):
    out = tmp_path / "rows.csv"
    result = runner.invoke(app, ["predict", str(photos / "astronaut.png"), "--run", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "policy merge-to-neutral" in result.output and "1 face(s)" in result.output
    rows = pl.read_csv(out)
    assert rows.height == 1 and rows["status"].to_list() == ["ok"]
    row = rows.row(0, named=True)
    box = faces.FaceBox(row["box_x"], row["box_y"], row["box_width"], row["box_height"])
    assert box.iou(ASTRONAUT_FACE) >= 0.5
    classes = json.loads((run_dir / "config.json").read_text())["class_names"]
    probabilities = np.array([row[f"p_{name}"] for name in classes])
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)
    assert row["predicted"] == classes[int(probabilities.argmax())]
    assert row["confidence"] == pytest.approx(probabilities.max())


def test_a_batch_survives_bad_files(run_dir, photos, tmp_path):
    out = tmp_path / "rows.parquet"
    result = runner.invoke(app, ["predict", str(photos), "--run", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = pl.read_parquet(out).sort("file")
    status = dict(zip([Path(f).name for f in rows["file"]], rows["status"], strict=True))
    assert status["astronaut.png"] == "ok" and status["blank.jpg"] == "no face"
    assert status["notes.jpg"].startswith("unreadable: UnidentifiedImageError")
    assert "3 image(s): 1 face(s), 1 without a face, 1 unreadable" in result.output


def test_backends_give_the_same_labels(run_dir, photos, tmp_path):
    from curate.synth.faces import draw_face

    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(3)
    for index in range(12):
        draw_face(rng, index % 7, size=(48, 48), face_fraction=(0.8, 1.0)).image.save(crops / f"face{index:02d}.png")
    labels = {}
    for backend in ("keras", "tflite", "onnx", "tflite-int8", "tflite-dynamic"):
        out = tmp_path / f"{backend}.json"
        args = ["predict", str(crops), str(photos / "astronaut.png"), "--run", str(run_dir), "--no-detect"]
        result = runner.invoke(app, [*args, "--backend", backend, "--out", str(out)])
        assert result.exit_code == 0, result.output
        frame = pl.read_json(out)
        assert frame.height == 13 and (frame["status"] == "ok").all()
        labels[backend] = frame.sort("file")["predicted"].to_list()
    assert labels["tflite"] == labels["keras"] and labels["onnx"] == labels["keras"]


def test_bad_input_is_one_line(run_dir, photos, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["predict", str(empty), "--run", str(run_dir)])
    assert result.exit_code == 1 and "no image files in this folder" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "nothing*.png"), "--run", str(run_dir)])
    assert result.exit_code == 1 and "no such file, folder or matching pattern" in result.output
    result = runner.invoke(app, ["predict", str(photos), "--run", str(run_dir), "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 1 and "give a file ending in .csv, .parquet, .json" in result.output
    bare = tmp_path / "bare-run"
    shutil.copytree(run_dir, bare)
    for name in ("model.onnx", "model_float.tflite", "model_int8.tflite", "model_dynamic_int8.tflite"):
        (bare / name).unlink()
    result = runner.invoke(app, ["predict", str(photos), "--run", str(bare), "--backend", "onnx"])
    assert result.exit_code == 1 and "no model.onnx" in result.output and "curate train export" in result.output
    result = runner.invoke(app, ["predict", str(photos), "--run", str(bare), "--backend", "tflite"])
    assert result.exit_code == 1 and "no model_float.tflite" in result.output and "--no-export" in result.output
    result = runner.invoke(app, ["predict", str(photos), "--run", str(bare), "--backend", "coreml"])
    assert result.exit_code == 1 and "not one of keras, tflite, tflite-int8, tflite-dynamic, onnx" in result.output
    result = runner.invoke(app, ["predict", str(photos), "--run", str(tmp_path / "no-run")])
    assert result.exit_code == 1 and "no run folder" in result.output


def test_cross_dataset_table(run_dir, tmp_path):
    # the FERPlus run scored on RAF-DB (built beside it from the builder's dummy data) and on itself
    import tfds_builders

    data_dir = Path(json.loads((run_dir / "config.json").read_text())["data_dir"])
    builder = tfds.builder("rafdb", data_dir=str(data_dir))
    dummy = Path(tfds_builders.__file__).parent / "rafdb" / "dummy_data"
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(dummy)))
    out = tmp_path / "cross"
    result = runner.invoke(app, ["train", "cross", str(run_dir), "--on", "ferplus,rafdb:train", "--out", str(out)])
    assert result.exit_code == 0, result.output
    matrix = json.loads(out.with_suffix(".json").read_text())
    assert matrix["targets"] == ["ferplus:test", "rafdb:train"] and out.with_suffix(".png").is_file()
    ferplus, rafdb = matrix["cells"][0]
    for cell in (ferplus, rafdb):
        low, high = cell["balanced_accuracy"]["ci95"]
        assert 0.0 <= low <= cell["balanced_accuracy"]["value"] <= high <= 1.0
    assert rafdb["rows"] == builder.info.splits["train"].num_examples
    assert set(rafdb["classes_left_out"]) | set(rafdb["classes_scored"]) == set(
        json.loads((run_dir / "config.json").read_text())["class_names"]
    )
    assert "| tiny-export (ferplus) |" in result.output
    one = runner.invoke(app, ["train", "evaluate", "--run", str(run_dir), "--on", "rafdb:train"])
    assert one.exit_code == 0 and "rafdb:train" in one.output
    missing = runner.invoke(app, ["train", "evaluate", "--run", str(run_dir), "--on", "affectnet"])
    assert missing.exit_code == 1 and "'affectnet' is not built" in missing.output
    unknown = runner.invoke(app, ["train", "evaluate", "--run", str(run_dir), "--on", "fer2013"])
    assert unknown.exit_code == 1 and "no dataset 'fer2013'" in unknown.output
    no_split = runner.invoke(app, ["train", "evaluate", "--run", str(run_dir), "--on", "rafdb:validation"])
    assert no_split.exit_code == 1 and "rafdb has no split 'validation'" in no_split.output


def test_slices_and_calibration_of_a_run(run_dir):
    result = runner.invoke(app, ["train", "slices", "--run", str(run_dir), "--view", "test"])
    assert result.exit_code == 0, result.output
    assert "| vote_agreement | rows | accuracy [95%] | balanced accuracy [95%] |" in result.output
    assert "Best − worst slice:" in result.output and "…" not in result.output
    wrong = runner.invoke(app, ["train", "slices", "--run", str(run_dir), "--by", "gender"])
    assert wrong.exit_code == 1 and "ferplus has no slicing attribute gender (it has: vote_agreement)" in wrong.output
    no_view = runner.invoke(app, ["train", "slices", "--run", str(run_dir), "--view", "holdout"])
    assert no_view.exit_code == 1 and "has no view 'holdout'" in no_view.output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    calibration = metrics["calibration"]
    assert calibration["fitted_on"] == "class_frequency"
    for view, entry in calibration["views"].items():
        assert (run_dir / entry["reliability"]).is_file(), view
    if calibration["temperature"] is None:  # the tiny hold-out: the reason is stored, in one line
        assert "fewer than the 100 needed" in calibration["not_fitted"]
