"""curate.review: a run's protocol card and data fingerprint, and duplicate groups from the workspace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from review_fixtures import fo, write_affectnet, write_run  # noqa: F401
from typer.testing import CliRunner

from curate import audit, labels
from curate.cli import app
from curate.review import duplicates
from curate.review import load as rl
from curate.review.fields import INFO_KEY, RunFields
from curate.review.runs import RunInfo
from curate.workspace import Workspace

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()

PROTOCOL = "affectnet-8@1"
FINGERPRINT = "sha256:0123456789abcdef"


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def _pairs(rows: list[tuple[str, str, str, str, str, str]]) -> pl.DataFrame:
    """A fake ``duplicate_pairs`` frame (as ``curate audit duplicates`` stores it)."""
    return pl.DataFrame(
        [(*row, "exact" if n % 2 else "near", n % 2 * 20, 1.5) for n, row in enumerate(rows)],
        schema=audit.PAIR_SCHEMA,
        orient="row",
    )


def test_duplicate_groups_are_connected_components() -> None:
    pairs = _pairs(
        [
            ("b", "affectnet", "train", "a", "affectnet", "train"),
            ("c", "affectnet", "validation", "b", "affectnet", "train"),
            ("d", "affectnet", "train", "f1", "ferplus", "train"),
            ("e", "affectnet", "train", "f1", "ferplus", "train"),  # d and e joined through FERPlus
            ("x", "affectnet", "train", "y", "affectnet", "test"),
        ]
    )
    groups = duplicates.duplicate_groups(pairs)
    by_id = {(d, i): (g, s) for d, i, g, s in groups.iter_rows()}
    assert len(by_id) == 8
    assert by_id[("affectnet", "a")] == by_id[("affectnet", "b")] == by_id[("affectnet", "c")] == (0, 3)
    assert by_id[("affectnet", "d")] == by_id[("affectnet", "e")] == by_id[("ferplus", "f1")] == (1, 3)
    assert by_id[("affectnet", "x")] == by_id[("affectnet", "y")] == (2, 2)
    assert duplicates.duplicate_groups(pairs.head(0)).height == 0


def test_run_provenance_falls_back_to_metrics_json(tmp_path: Path) -> None:
    run = RunInfo(name="r", path=tmp_path, config={"protocol": None})
    assert run.provenance() == (None, None)
    (tmp_path / "metrics.json").write_text(json.dumps({"protocol": PROTOCOL, "data_fingerprint": FINGERPRINT}))
    assert run.provenance() == (PROTOCOL, FINGERPRINT)
    config_first = RunInfo(name="r", path=tmp_path, config={"protocol": "rafdb-7@1", "data_fingerprint": "f"})
    assert config_first.provenance() == ("rafdb-7@1", "f")


def test_protocol_and_duplicates_in_app_and_report(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    frame = write_affectnet(root)  # 33 train + 11 validation rows
    ids = frame["id"].to_list()
    workspace = tmp_path / "ws"
    # A run of protocol affectnet-8, laid out as the trainer does (config.json records the card).
    policy = labels.get_policy("drop-8-plus")
    mapped = policy.apply(frame["label"].to_numpy())
    keep = mapped >= 0
    kept = [i for i, k in zip(ids, keep, strict=True) if k]
    run_dir = write_run(workspace / "runs" / "proto-run", ids=kept, given=mapped[keep], policy=policy.name)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(config | {"protocol": PROTOCOL, "data_fingerprint": FINGERPRINT}))
    pairs = _pairs(
        [
            (ids[0], "affectnet", "train", ids[1], "affectnet", "train"),
            (ids[1], "affectnet", "train", ids[40], "affectnet", "validation"),  # a train/validation leak
            (ids[5], "affectnet", "train", "fer0000001", "ferplus", "train"),  # its copy is in another dataset
            (ids[10], "affectnet", "train", "fer0000009", "ferplus", "train"),
            (ids[20], "affectnet", "train", "fer0000009", "ferplus", "train"),  # joined through FERPlus
            (ids[30], "affectnet", "train", "9/not-in-dataset.jpg", "affectnet", "train"),
            ("fer0000002", "ferplus", "train", "fer0000003", "ferplus", "test"),  # not this dataset's
        ]
    )
    audit.store_pairs(Workspace(workspace), pairs, ["affectnet", "ferplus"])

    result = _invoke(
        "review", "load", "affectnet", "--manual-dir", str(root), "--run", "proto-run", "--name", "rv-proto",
        "--workspace", str(workspace),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"protocol {PROTOCOL}, data {FINGERPRINT}" in result.output
    assert "duplicates: 7 samples in 4 groups" in result.output

    ds = fo.load_dataset("rv-proto")
    fields = RunFields.for_run("proto-run")
    record = ds.info[INFO_KEY]["runs"][fields.key]
    assert record["protocol"] == PROTOCOL and record["data_fingerprint"] == FINGERPRINT
    prediction = ds.exists(fields.pred).first()[fields.pred]
    assert prediction.protocol == PROTOCOL and prediction.data_fingerprint == FINGERPRINT
    assert f"{fields.pred}.protocol" in ds.get_field_schema(flat=True)  # filterable in the App's sidebar
    config = ds.get_evaluation_info(record["eval_key"]).config
    assert config.protocol == PROTOCOL and config.data_fingerprint == FINGERPRINT
    assert f"run proto-run: protocol {PROTOCOL}, data {FINGERPRINT}" in ds.description

    group = dict(zip(*ds.exists(duplicates.GROUP_FIELD).values(["source_id", duplicates.GROUP_FIELD]), strict=True))
    assert set(group) == {ids[i] for i in (0, 1, 40, 5, 10, 20, 30)}
    assert group[ids[0]] == group[ids[1]] == group[ids[40]] and group[ids[10]] == group[ids[20]]
    assert len({group[ids[i]] for i in (0, 5, 10, 30)}) == 4 and set(group.values()) == {1, 2, 3, 4}
    size = dict(zip(*ds.exists(duplicates.SIZE_FIELD).values(["source_id", duplicates.SIZE_FIELD]), strict=True))
    assert size[ids[0]] == 3 and size[ids[5]] == 2 and size[ids[10]] == 3 and size[ids[30]] == 2
    view = ds.load_saved_view("duplicates")
    ordered = view.values(duplicates.GROUP_FIELD)
    assert len(view) == 7 and ordered == sorted(ordered)  # copies side by side

    result = _invoke("review", "report", "--name", "rv-proto")
    assert result.exit_code == 0, result.output
    assert f"protocol {PROTOCOL}, data {FINGERPRINT}" in result.output
    assert "duplicates: 7 samples in 4 groups, 1 of them across splits" in result.output
    assert "duplicates" in result.output.split("Saved views")[1]

    # The pairs are gone from the workspace: the next load removes the groups and the view.
    audit.store_pairs(Workspace(workspace), pairs.head(0), ["affectnet"])
    summary = rl.load("affectnet", manual_dir=root, name="rv-proto", workspace=Workspace(workspace))
    assert not summary.built and summary.duplicates["samples"] == 0 and "duplicates" not in summary.views
    ds = fo.load_dataset("rv-proto")
    assert not ds.has_sample_field(duplicates.GROUP_FIELD) and "duplicates" not in ds.list_saved_views()
