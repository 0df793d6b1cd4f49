"""`curate review ...` through Typer's runner: arguments in, library calls, printed output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from review_fixtures import fo, write_affectnet, write_run  # noqa: F401
from typer.testing import CliRunner

from curate import labels
from curate.cli import app
from curate.cli.review_cmds import review_app

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_every_review_command_has_help() -> None:
    for command in review_app.registered_commands:
        assert command.callback.__doc__, command.name
        result = _invoke("review", command.name or command.callback.__name__, "--help")
        assert result.exit_code == 0, result.output


def test_load_report_export(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    frame = write_affectnet(root, n_train=22, n_validation=11, seed=5)
    workspace = tmp_path / "ws"
    policy = labels.get_policy("drop-7-plus")
    mapped = policy.apply(frame["label"].to_numpy())
    keep = mapped >= 0
    ids = [i for i, k in zip(frame["id"].to_list(), keep, strict=True) if k]
    truth = mapped[keep]
    model_says = truth.copy()
    model_says[:3] = (model_says[:3] + 2) % policy.num_classes  # three confident mistakes
    # Found by name in the workspace's runs/ folder (as the trainer lays it out).
    write_run(workspace / "runs" / "cli-run", ids=ids, given=truth, true=model_says, policy=policy.name)
    result = _invoke(
        "review", "load", "affectnet", "--manual-dir", str(root), "--run", "cli-run", "--name", "rv-cli",
        "--workspace", str(workspace),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"rv-cli: {frame.height} samples" in result.output and "built" in result.output
    assert "eval key eval_cli_run_drop_7_plus" in result.output
    assert "misclassified" in result.output and "likely-label-errors" in result.output
    assert fo.load_dataset("rv-cli").load_saved_view("misclassified").count() == 3
    record = fo.load_dataset("rv-cli").info["curate"]["runs"]["cli_run"]
    assert record["landmark_model"] is True and record["scores"]["confident_learning_probabilities"] == "run"

    result = _invoke(
        "review", "load", "affectnet", "--manual-dir", str(root), "--run", "cli-run", "--name", "rv-cli",
        "--workspace", str(workspace), "--no-landmark-model",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fo.load_dataset("rv-cli").info["curate"]["runs"]["cli_run"]["landmark_model"] is False

    result = _invoke("review", "report", "--name", "rv-cli")
    assert result.exit_code == 0, result.output
    assert "run cli-run (active): accuracy" in result.output and "ground truth" in result.output
    assert "merged-by-policy" in result.output
    assert "label issues flagged (confident learning on run probabilities)" in " ".join(result.output.split())

    ds = fo.load_dataset("rv-cli")
    ds.match({"source_id": ids[0]}).tag_samples("relabel:disgust")
    result = _invoke("review", "export-corrections", "--name", "rv-cli", "--workspace", str(workspace))
    assert result.exit_code == 0, result.output
    written = workspace / "exports" / "corrections_rv-cli.parquet"
    assert "1 corrections from 'rv-cli'" in result.output and written.is_file()
    assert pl.read_parquet(written).select("id", "new_label").rows() == [(ids[0], 5)]

    result = _invoke("review", "list")
    assert result.exit_code == 0 and "rv-cli" in result.output and "cli-run" in result.output


def test_user_errors_are_one_line(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    write_affectnet(root, n_train=4, n_validation=2)
    result = _invoke(
        "review", "load", "affectnet", "--manual-dir", str(root), "--run", "nope", "--workspace", str(tmp_path)
    )
    assert result.exit_code == 1 and "run 'nope' not found" in result.output
    result = _invoke("review", "load", "affectnet", "--workspace", str(tmp_path / "empty"))
    assert result.exit_code == 1 and "give --manual-dir or --data-dir" in result.output
    result = _invoke("review", "load", "emotions", "--manual-dir", str(root))
    assert result.exit_code == 1 and "unknown dataset 'emotions'" in result.output
    result = _invoke("review", "report", "--name", "does-not-exist")
    assert result.exit_code == 1 and "no FiftyOne dataset 'does-not-exist'" in result.output
    result = _invoke("review", "app", "--name", "does-not-exist", "--port", "5999")
    assert result.exit_code == 1 and "no FiftyOne dataset" in result.output
    assert "Traceback" not in result.output


def test_defaults_come_from_the_workspace(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    """Without --manual-dir the workspace's ingest source is used; --run finds registered runs by name."""
    from curate import datasets
    from curate.workspace import Workspace

    root = tmp_path / "affectnet"
    frame = write_affectnet(root, n_train=6, n_validation=3, seed=11)
    ws = Workspace(tmp_path / "ws")
    ws.ingest(datasets.read("affectnet", root), dataset="affectnet", source=str(root))
    policy = labels.get_policy("keep-all")
    run = write_run(
        tmp_path / "elsewhere" / "registered",
        ids=frame["id"].to_list(),
        given=frame["label"].to_list(),
        policy=policy.name,
    )
    ws.register_run("registered", dataset="affectnet", policy=policy.name, path=run)
    result = _invoke(
        "review", "load", "affectnet", "--run", "registered", "--name", "rv-ws", "--workspace", str(ws.root)
    )
    assert result.exit_code == 0, result.output
    ds = fo.load_dataset("rv-ws")
    assert ds.info["curate"]["source"]["path"] == str(root.resolve())
    assert ds.info["curate"]["runs"]["registered"]["path"] == str(run.resolve())
