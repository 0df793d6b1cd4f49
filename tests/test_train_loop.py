"""End to end on a built (synthetic) FERPlus TFDS dataset: `curate train --policies`, the run
folders of the contract, workspace registration, `curate train compare` and determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from typer.testing import CliRunner  # noqa: E402

from curate.cli import app  # noqa: E402

POLICIES = ("drop-8-plus", "merge-8-plus-to-neutral")
TINY = ["--image-size", "32", "--epochs", "1", "--batch-size", "32", "--alpha", "0.75", "--holdout-fraction", "0.2"]
PREDICTION_COLUMNS = [
    "id", "view", "split", "label", "canonical", "predicted", "confidence", "probabilities", "logits", "valence_pred", "arousal_pred",
]  # fmt: skip


@pytest.fixture(scope="module")
def ferplus_tfds(tmp_path_factory) -> Path:
    """Synthetic FERPlus (scale 0.01: ~290 train, ~36 validation, ~36 test rows), built."""
    import tfds_builders  # noqa: F401
    from curate.synth.ferplus import generate_ferplus

    root = tmp_path_factory.mktemp("train-ferplus")
    manual = root / "manual"
    generate_ferplus(manual, scale=0.01, seed=11, workers=1)
    data_dir = root / "tfds"
    builder = tfds.builder("ferplus", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return data_dir


@pytest.fixture(scope="module")
def policy_runs(ferplus_tfds, tmp_path_factory):
    workspace = tmp_path_factory.mktemp("workspace")
    result = CliRunner().invoke(
        app,
        ["train", "--dataset", "ferplus", "--data-dir", str(ferplus_tfds), "--policies", ",".join(POLICIES),
         *TINY, "--workspace", str(workspace), "--no-progress", "--name", "tiny", "--no-export"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return workspace, result.output


@pytest.fixture(scope="module")
def api_run(ferplus_tfds, tmp_path_factory):
    """The first policy's run again, through the library, with the TFLite exports."""
    from train import TrainConfig, train_run

    config = TrainConfig(
        dataset="ferplus", policy=POLICIES[0], data_dir=str(ferplus_tfds), image_size=32, epochs=1, batch_size=32,
        alpha=0.75, holdout_fraction=0.2, name=f"tiny-{POLICIES[0]}",
    )  # fmt: skip
    return train_run(config, runs_dir=tmp_path_factory.mktemp("api-runs"), register=False, verbose=0)


def test_tflite_exports_with_size_latency_and_agreement(api_run) -> None:
    names = {p.name for p in api_run.path.iterdir()}
    assert {"model_float.tflite", "model_int8.tflite", "model_dynamic_int8.tflite"} <= names
    metrics = json.loads((api_run.path / "metrics.json").read_text())
    for kind in ("float", "int8", "dynamic"):
        entry = metrics["export"][kind]
        assert entry["bytes"] == (api_run.path / entry["file"]).stat().st_size > 10_000
        assert entry["latency_ms"] > 0 and entry["latency"]["threads"] == 1
        assert 0.0 <= entry["top1_agreement_with_keras"] <= 1.0
    assert metrics["export"]["float"]["top1_agreement_with_keras"] == 1.0


def test_view_figures_carry_intervals(api_run) -> None:
    metrics = json.loads((api_run.path / "metrics.json").read_text())
    for view in ("balanced", "class_frequency"):
        for key in ("accuracy", "balanced_accuracy"):
            low, high = metrics[view][f"{key}_ci95"]
            assert 0.0 <= low <= metrics[view][key] <= high <= 1.0, (view, key)


def test_run_folders_follow_the_contract(policy_runs) -> None:
    import pyarrow.parquet as pq

    workspace, output = policy_runs
    assert "epoch 1/1:" in output and "bal-acc" in output  # one summary line per epoch
    for policy in POLICIES:
        run = workspace / "runs" / f"tiny-{policy}"
        names = {p.name for p in run.iterdir()}
        assert names == {
            "config.json", "history.csv", "metrics.json", "predictions.parquet", "confusion_balanced.png",
            "confusion_class_frequency.png", "confusion_test.png", "model.keras", "COMPLETE",
            "reliability_balanced.png", "reliability_class_frequency.png", "reliability_test.png",
        }  # fmt: skip
        assert not (workspace / "runs" / f"tiny-{policy}.partial").exists()
        config = json.loads((run / "config.json").read_text())
        for key in ("dataset", "policy", "vote_mode", "data_dir", "image_size", "model", "seed", "class_names"):
            assert key in config
        assert config["vote_mode"] == "majority" and config["num_classes"] == (8 if policy == "drop-8-plus" else 8)
        metrics = json.loads((run / "metrics.json").read_text())
        for view in ("balanced", "class_frequency", "test"):
            for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "confusion_matrix"):
                assert key in metrics[view]
            assert set(metrics[view]["per_class"]["Happy"]) == {"precision", "recall", "f1", "support"}
        assert metrics["balanced"]["split"] == "validation" and metrics["test"]["split"] == "test"
        assert metrics["protocol"] == ("ferplus-8-majority@1" if policy == "drop-8-plus" else None)
        assert metrics["data_fingerprint"].startswith("sha256:")
        # slices, calibration and the FER+ vote figures of every view (tests/test_evaluation.py checks the numbers)
        calibration = metrics["calibration"]
        assert set(calibration["views"]) == {"balanced", "class_frequency", "test"}
        assert all(0.0 <= v["ece"] <= 1.0 for v in calibration["views"].values())
        assert all(0.0 < v["ece_noise_floor"] <= 1.0 for v in calibration["views"].values())
        assert calibration["temperature"] is None or calibration["temperature"] > 0
        diagnostics = metrics["diagnostics"]["test"]
        assert set(diagnostics["slices"]) == {"vote_agreement"}
        assert diagnostics["votes"]["rows"] > 0 and diagnostics["votes"]["kl_divergence"] >= 0
        table = pq.read_table(run / "predictions.parquet")
        assert table.column_names == PREDICTION_COLUMNS
        rows = table.to_pylist()
        assert {r["view"] for r in rows} == {"balanced", "class_frequency", "test"}
        assert all(abs(sum(r["probabilities"]) - 1) < 1e-4 and len(r["logits"]) == 8 for r in rows)
        assert all(r["valence_pred"] is None for r in rows)
        history = (run / "history.csv").read_text().splitlines()
        assert history[0].startswith("epoch,") and "val_balanced_accuracy" in history[0] and len(history) == 2


def test_runs_are_registered_and_compared(policy_runs, tmp_path) -> None:
    from curate.workspace import Workspace

    workspace, output = policy_runs
    registered = {run["name"]: run for run in Workspace(workspace).runs("ferplus")}
    assert set(registered) == {f"tiny-{p}" for p in POLICIES}
    assert registered["tiny-drop-8-plus"]["vote_mode"] == "majority"
    assert 0.0 <= registered["tiny-drop-8-plus"]["metrics"]["balanced"]["accuracy"] <= 1.0
    comparison = workspace / "runs" / "comparisons"
    markdown = next(comparison.glob("*.md")).read_text()
    assert markdown.startswith("# Policy comparison on ferplus") and "merge-8-plus-to-neutral" in markdown
    assert "## Common ground: Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger" in markdown
    again = CliRunner().invoke(
        app,
        [
            "train",
            "compare",
            *[f"tiny-{p}" for p in POLICIES],
            "--workspace",
            str(workspace),
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "t.json").read_text()) == json.loads(next(comparison.glob("*.json")).read_text())


def test_same_seed_same_metrics(policy_runs, api_run) -> None:
    import pyarrow.parquet as pq

    workspace, _ = policy_runs
    first = json.loads((workspace / "runs" / f"tiny-{POLICIES[0]}" / "metrics.json").read_text())
    for view in ("balanced", "class_frequency", "test"):
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix"):
            assert api_run.metrics[view][key] == first[view][key], (view, key)
    logits_a = np.stack(
        pq.read_table(workspace / "runs" / f"tiny-{POLICIES[0]}" / "predictions.parquet")["logits"].to_pylist()
    )
    logits_b = np.stack(pq.read_table(api_run.path / "predictions.parquet")["logits"].to_pylist())
    assert np.array_equal(logits_a, logits_b)


def test_existing_run_is_not_overwritten(policy_runs, ferplus_tfds) -> None:
    workspace, _ = policy_runs
    result = CliRunner().invoke(
        app,
        ["train", "--dataset", "ferplus", "--data-dir", str(ferplus_tfds), "--policy", POLICIES[0], *TINY,
         "--workspace", str(workspace), "--name", f"tiny-{POLICIES[0]}"],
    )  # fmt: skip
    assert result.exit_code == 1 and "exists" in result.output


def test_policy_leaving_the_dataset_empty_writes_nothing(ferplus_tfds, tmp_path) -> None:
    policy = tmp_path / "none-only.toml"
    policy.write_text(
        'name = "none-only"\nclasses = ["None"]\nmapping = { None = "None" }\n'
        'drop = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt", "Uncertain", "No-Face"]\n'
    )
    result = CliRunner().invoke(
        app,
        ["train", "--dataset", "ferplus", "--data-dir", str(ferplus_tfds), "--policy", str(policy), *TINY,
         "--out", str(tmp_path / "runs")],
    )  # fmt: skip
    assert result.exit_code == 1 and "leaves no training rows in ferplus" in result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
