"""`curate train` / `python -m train`: bad input gives one clear line and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from curate.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["train", *args], catch_exceptions=False)


def error_line(result) -> str:
    text = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert result.exit_code == 1, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text  # one line, no traceback
    return lines[0]


def test_help_lists_every_option_with_text() -> None:
    result = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in (
        "--dataset", "--policies", "--vote-mode", "--weights", "--class-weight", "--sampler", "--va-head", "--oof-folds",
    ):  # fmt: skip
        assert option in result.output
    compare = runner.invoke(app, ["train", "compare", "--help"])
    assert compare.exit_code == 0 and "comparison table" in compare.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "--dataset is required"),
        (["--dataset", "mnist"], "--dataset: unknown value 'mnist'"),
        (["--dataset", "rafdb", "--policy", "drop-everything"], "unknown label policy 'drop-everything'"),
        (["--dataset", "rafdb", "--policies", "drop-7-plus,nope"], "unknown label policy 'nope'"),
        (["--dataset", "rafdb", "--model", "resnet50"], "--model: unknown value 'resnet50'"),
        (["--dataset", "affectnet", "--vote-mode", "majority"], "--vote-mode applies to ferplus only"),
        (["--dataset", "ferplus", "--vote-mode", "loudest"], "unknown FER+ vote mode 'loudest'"),
        (["--dataset", "rafdb", "--va-head"], "--va-head needs valence/arousal labels"),
        (["--dataset", "rafdb", "--monitor", "balanced"], "test split"),
        (["--dataset", "rafdb", "--class-weight", "log"], "--class-weight: unknown value 'log'"),
        (["--dataset", "rafdb", "--weights", "/nonexistent/w.h5"], "--weights: no such file"),
        (["--dataset", "rafdb", "--policy", "drop-7-plus", "--policies", "keep-all"], "either --policy or --policies"),
        (["--dataset", "rafdb", "--oof-folds", "1"], "oof"),
    ],
)
def test_bad_options_fail_in_one_line(args: list[str], expected: str, tmp_path) -> None:
    result = invoke(*args, "--out", str(tmp_path / "runs")) if args else invoke("--out", str(tmp_path / "runs"))
    assert expected in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_missing_tfds_dataset_says_how_to_build_it(tmp_path) -> None:
    result = invoke(
        "--dataset",
        "rafdb",
        "--data-dir",
        str(tmp_path / "tfds"),
        "--out",
        str(tmp_path / "runs"),
        "--image-size",
        "32",
        "--alpha",
        "0.75",
    )
    line = error_line(result)
    assert f"tfds build rafdb --imports tfds_builders --data_dir {tmp_path / 'tfds'} --manual_dir" in line
    assert not (tmp_path / "runs").exists()


def test_wrong_shape_weights_fail_before_anything_is_written(tmp_path) -> None:
    from train import models
    from train.config import TrainConfig

    other = models.build_model(TrainConfig(dataset="rafdb", image_size=32, alpha=0.75), 7)
    weights = tmp_path / "backbone.weights.h5"
    other.get_layer("backbone").save_weights(str(weights))
    result = invoke(
        "--dataset",
        "rafdb",
        "--weights",
        str(weights),
        "--alpha",
        "1.0",
        "--image-size",
        "32",
        "--data-dir",
        str(tmp_path / "tfds"),
        "--out",
        str(tmp_path / "runs"),
    )
    assert "does not fit" in error_line(result)
    assert not (tmp_path / "runs").exists()


def test_compare_unknown_run(tmp_path) -> None:
    result = invoke("compare", "no-such-run", "--runs-dir", str(tmp_path))
    assert "no run folder 'no-such-run'" in error_line(result)


def test_python_dash_m_train_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "train", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and "--policies" in result.stdout and "python -m train" in result.stdout
