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
        (["--dataset", "rafdb", "--seeds", "0"], "--seeds: value 0 is out of range; allowed an integer in [1, 100]"),
        (["--dataset", "rafdb", "--epochs", "5", "--freeze-epochs", "5"], "--freeze-epochs must be 0 or fewer than"),
        (["--dataset", "rafdb", "--model", "small_cnn", "--weights", "imagenet"], "no ImageNet weights for small_cnn"),
        (["--dataset", "rafdb", "--weights", "imagenet", "--alpha", "0.5"], "exist for --alpha 0.75, 1.0, not 0.5"),
        (["--dataset", "ferplus", "--align", "eyes"], "--align eyes needs 68-point landmarks"),
        (["--dataset", "rafdb", "--colour", "sepia"], "--colour: unknown value 'sepia'"),
    ],
)
def test_bad_options_fail_in_one_line(args: list[str], expected: str, tmp_path) -> None:
    result = invoke(*args, "--out", str(tmp_path / "runs")) if args else invoke("--out", str(tmp_path / "runs"))
    assert expected in error_line(result)
    assert not (tmp_path / "runs").exists()


#: One bad value per numeric option of `curate train` (below, above, or not a number at all).
BAD_NUMBERS = [
    ("--alpha", "0", "(0, 2]"),
    ("--alpha", "-1", "(0, 2]"),
    ("--image-size", "100000", "[32, 512]"),
    ("--image-size", "16", "[32, 512]"),
    ("--epochs", "0", "[1, 10000]"),
    ("--epochs", "1000000", "[1, 10000]"),
    ("--batch-size", "0", "[1, 4096]"),
    ("--batch-size", "100000", "[1, 4096]"),
    ("--learning-rate", "-1", "(0, 1]"),
    ("--learning-rate", "0", "(0, 1]"),
    ("--learning-rate", "3", "(0, 1]"),
    ("--learning-rate", "nan", "(0, 1]"),
    ("--freeze-epochs", "-1", "[0, 10000]"),
    ("--ema", "1", "[0, 1)"),
    ("--ema", "-0.5", "[0, 1)"),
    ("--warmup-epochs", "-1", "[0, 10000]"),
    ("--seed", "-1", f"[0, {2**31 - 1}]"),
    ("--seed", str(2**40), f"[0, {2**31 - 1}]"),
    ("--seeds", "0", "[1, 100]"),
    ("--seeds", "1000", "[1, 100]"),
    ("--va-loss-weight", "-1", "[0, 100]"),
    ("--patience", "-1", "[0, 10000]"),
    ("--holdout-fraction", "0", "(0, 0.5)"),
    ("--holdout-fraction", "0.5", "(0, 0.5)"),
    ("--holdout-seed", "-3", f"[0, {2**31 - 1}]"),
    ("--max-train-examples", "-1", "[0, 1000000000]"),
    ("--max-eval-examples", "-1", "[0, 1000000000]"),
    ("--oof-folds", "1", "0 or an integer in [2, 100]"),
    ("--oof-folds", "1000", "0 or an integer in [2, 100]"),
    ("--oof-epochs", "-1", "[0, 10000]"),
]


def test_every_numeric_option_is_bounded_and_tested() -> None:
    import typing

    from curate.cli.train_cmd import train_command
    from train.config import NUMERIC_BOUNDS

    numeric = set()
    for hint in typing.get_type_hints(train_command, include_extras=True).values():
        if typing.get_origin(hint) is typing.Annotated and typing.get_args(hint)[0] in (int, float):
            numeric.add(typing.get_args(hint)[1].default)  # typer.Option's first declaration: "--name"
    assert numeric, "no numeric options found"
    assert numeric <= {"--" + field.replace("_", "-") for field in NUMERIC_BOUNDS}
    assert numeric == {option for option, _, _ in BAD_NUMBERS}


@pytest.mark.parametrize(("option", "value", "allowed"), BAD_NUMBERS)
def test_numeric_option_out_of_range_fails_in_one_line_and_writes_nothing(
    option: str, value: str, allowed: str, tmp_path
) -> None:
    runs, workspace = tmp_path / "runs", tmp_path / "workspace"
    result = invoke("--dataset", "rafdb", option, value, "--out", str(runs), "--workspace", str(workspace))
    line = error_line(result)
    assert line.startswith(f"error: {option}: value ") and "is out of range; allowed" in line, line
    assert line.endswith(allowed), line
    assert not runs.exists() and not workspace.exists()
    assert list(tmp_path.iterdir()) == []


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


def test_compare_refuses_mixed_datasets_and_writes_nothing(tmp_path) -> None:
    from test_train_compare import perfect, write_run

    write_run(tmp_path, "a", "drop-7-plus", 0, perfect)
    write_run(tmp_path, "r", "drop-7-plus", 1, perfect, dataset="rafdb")
    result = invoke("compare", "a", "r", "--runs-dir", str(tmp_path), "--out", str(tmp_path / "out" / "table"))
    assert "runs measured under different protocols (different datasets" in error_line(result)
    assert not (tmp_path / "out").exists()
    table = invoke("compare", "a", "--runs-dir", str(tmp_path))
    assert table.exit_code == 0 and "| ↳ always Happy (majority class) |" in table.output


def test_python_dash_m_train_is_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "train", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and "--policies" in result.stdout and "python -m train" in result.stdout
