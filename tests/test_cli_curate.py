"""`curate ingest / balance / remap / study remap` through Typer's CliRunner (and one subprocess)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import typer.main
from typer.testing import CliRunner
from workspace_tables import affectnet_rows, parsed, rafdb_rows

from curate.cli import app
from curate.workspace import Workspace

runner = CliRunner()
MY_COMMANDS = (("ingest",), ("balance",), ("remap",), ("study", "remap"))


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from curate.cli.app import console

    monkeypatch.setattr(console, "width", 200)


@pytest.fixture
def ws_dir(tmp_path):
    workspace = Workspace(tmp_path / "ws", timeout=0)
    workspace.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="hand")
    workspace.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    return workspace.root


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def _walk(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _walk(sub, (*path, name))


def test_every_command_has_help_text():
    root = typer.main.get_command(app)
    missing = [" ".join(path) for path, command in _walk(root) if path and not (command.help or "").strip()]
    assert not missing, f"commands without help text: {missing}"
    commands = dict(_walk(root))
    for path in MY_COMMANDS:
        for param in commands[path].params:
            assert (getattr(param, "help", None) or "").strip(), f"{' '.join(path)} {param.name}: no help text"


def test_remap_passes_arguments_to_the_library(ws_dir, tmp_path, monkeypatch):
    import curate.studies.remap as remap_module

    calls = []
    real = remap_module.remap

    def spy(workspace, policy, **kwargs):
        calls.append((workspace.root, policy, kwargs))
        return real(workspace, policy, **kwargs)

    monkeypatch.setattr(remap_module, "remap", spy)
    out = tmp_path / "m.parquet"
    result = runner.invoke(
        app, ["remap", "--policy", "merge-to-neutral", "-d", "affectnet", "--out", str(out), "-w", str(ws_dir)]
    )
    assert result.exit_code == 0, result.output
    assert calls == [(ws_dir, "merge-to-neutral", {"dataset": "affectnet", "out": out, "vote_mode": None})]
    assert "source label" in result.output and "Contempt" in result.output
    assert "kept 19 of 19 rows" in result.output and "exported to" in result.output
    # $CURATE_WORKSPACE names the workspace when --workspace is absent.
    result = runner.invoke(app, ["remap", "--policy", "drop-7-plus"], env={"CURATE_WORKSPACE": str(ws_dir)})
    assert result.exit_code == 0, result.output
    assert calls[-1][:2] == (ws_dir, "drop-7-plus") and calls[-1][2]["dataset"] is None
    assert "kept 15 of 24 rows" in result.output and "dropped 9" in result.output  # AffectNet 7-10: 6 + 3


def test_balance_and_study_pass_arguments(ws_dir, tmp_path, monkeypatch):
    import curate.studies as studies
    import curate.studies.balance as balance_module

    seen = {}
    real_balance, real_study = balance_module.balance, studies.run_remap_study

    def balance_spy(workspace, **kwargs):
        seen["balance"] = kwargs
        return real_balance(workspace, **kwargs)

    def study_spy(workspace, dataset, **kwargs):
        seen["study"] = (dataset, kwargs)
        return real_study(workspace, dataset, **kwargs)

    monkeypatch.setattr(balance_module, "balance", balance_spy)
    monkeypatch.setattr(studies, "run_remap_study", study_spy)
    json_out = tmp_path / "b.json"
    result = runner.invoke(
        app,
        [
            "balance",
            "-d",
            "affectnet",
            "-p",
            "merge-to-neutral",
            "--split",
            "train",
            "--beta",
            "0.99",
            "--json",
            str(json_out),
            "-w",
            str(ws_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["balance"] == {
        "dataset": "affectnet",
        "policy": "merge-to-neutral",
        "split": "train",
        "beta": 0.99,
        "vote_mode": None,
    }
    assert "affectnet / train under merge-to-neutral: 14 rows kept" in result.output
    assert json_out.is_file()
    result = runner.invoke(
        app,
        [
            "study",
            "remap",
            "-d",
            "affectnet",
            "--policies",
            "keep-all, merge-to-neutral",
            "--out",
            str(tmp_path / "rep"),
            "--no-plots",
            "-w",
            str(ws_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    dataset, kwargs = seen["study"]
    assert dataset == "affectnet" and kwargs["policies"] == ["keep-all", "merge-to-neutral"]
    assert kwargs["plots"] is False and kwargs["fraction"] == 0.05 and kwargs["out_dir"] == tmp_path / "rep"
    assert "label policies on affectnet" in result.output and "report:" in result.output
    assert (tmp_path / "rep" / "report.md").is_file() and (tmp_path / "rep" / "study.json").is_file()


def test_user_errors_are_one_line(ws_dir, tmp_path):
    w = ["-w", str(ws_dir)]
    line = _error_line(runner.invoke(app, ["remap", "--policy", "nope", *w]))
    assert "unknown label policy 'nope'" in line
    line = _error_line(runner.invoke(app, ["balance", "--dataset", "nope", *w]))
    assert "unknown dataset 'nope'" in line
    line = _error_line(runner.invoke(app, ["balance", "--dataset", "ferplus", *w]))
    assert "dataset 'ferplus' is not ingested" in line
    line = _error_line(runner.invoke(app, ["balance", "--dataset", "rafdb", "--split", "validation", *w]))
    assert "split 'validation' does not exist in rafdb" in line and "available splits: train, test" in line
    line = _error_line(runner.invoke(app, ["balance", "--beta", "1.5", *w]))
    assert "beta" in line
    empty = ["-w", str(tmp_path / "empty")]
    line = _error_line(runner.invoke(app, ["remap", "--policy", "merge-to-neutral", *empty]))
    assert "curate ingest" in line and "curate demo" in line
    assert not (tmp_path / "empty").exists()
    line = _error_line(runner.invoke(app, ["study", "remap", "-d", "affectnet", *empty]))
    assert "curate ingest" in line
    line = _error_line(runner.invoke(app, ["ingest", "affectnet", *w]))
    assert "exactly one of --manual-dir, --tfds-dir or --votes-file" in line
    line = _error_line(runner.invoke(app, ["ingest", "affectnet", "--manual-dir", str(tmp_path / "nowhere"), *w]))
    assert "no such folder" in line
    line = _error_line(runner.invoke(app, ["ingest", "rafdb", "--votes-file", str(tmp_path / "x.csv"), *w]))
    assert "only for ferplus" in line
    line = _error_line(runner.invoke(app, ["ingest", "fer", "--manual-dir", str(tmp_path), *w]))
    assert "unknown dataset 'fer'" in line


@pytest.fixture(scope="module")
def tiny_affectnet(tmp_path_factory):
    from curate.synth.affectnet import generate_affectnet

    root = tmp_path_factory.mktemp("affectnet") / "manual"
    generate_affectnet(root, annotations_only=True, scale=0.0003, seed=1, workers=1)
    return root


def test_ingest_affectnet_reports_rejects_by_reason(tiny_affectnet, tmp_path):
    manual = tmp_path / "manual"
    shutil.copytree(tiny_affectnet, manual)
    training = manual / "Manually_Annotated_file_lists" / "training.csv"
    lines = training.read_text().splitlines()
    good = lines[1].split(",")
    bad_label = ",".join(["9/" + "b" * 56 + ".jpg", *good[1:6], "11", *good[7:]])
    lines += ["9/short.jpg,1,2,3", bad_label]
    training.write_text("\n".join(lines) + "\n")
    n_rows = len(lines) - 1
    ws = tmp_path / "ws"
    result = runner.invoke(
        app,
        [
            "ingest",
            "affectnet",
            "--manual-dir",
            str(manual),
            "-w",
            str(ws),
            "--show-rejects",
            "10",
            "--rejects-out",
            str(tmp_path / "rejects.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "malformed row" in result.output and "label out of range" in result.output
    assert str(n_rows) in result.output  # the malformed row's line number is listed
    assert (tmp_path / "rejects.parquet").is_file()
    workspace = Workspace(ws)
    stored = workspace.ingested()["affectnet"]
    rejects = workspace.rejects("affectnet")
    validation = (manual / "Manually_Annotated_file_lists" / "validation.csv").read_text().count("\n") - 1
    assert stored + rejects.height == n_rows + validation
    row = rejects.filter(rejects["reason"] == "malformed row")
    assert row["source_row"].to_list() == [n_rows] and row["source_file"][0].endswith("training.csv")
    # Bad input file as a whole: one line naming the file.
    training.write_text("path,x\n1/a.jpg,1\n")
    line = _error_line(runner.invoke(app, ["ingest", "affectnet", "--manual-dir", str(manual), "-w", str(ws)]))
    assert "training.csv" in line


def test_remap_command_in_a_real_subprocess(ws_dir):
    curate = Path(sys.executable).with_name("curate")
    command = [str(curate)] if curate.exists() else [sys.executable, "-m", "curate"]
    env = {**os.environ, "CURATE_WORKSPACE": str(ws_dir), "COLUMNS": "200"}
    done = subprocess.run(
        [*command, "remap", "--policy", "merge-to-neutral"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "merge-to-neutral on affectnet, rafdb" in done.stdout
    assert "kept 24 of 24 rows" in done.stdout and "new balance" in done.stdout


@pytest.mark.slow
def test_ingest_from_a_built_tfds_dataset(tmp_path):
    """Build AffectNet (crop224) from the builder's dummy data, then `curate ingest --tfds-dir`."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tfds_builders  # noqa: F401  (registers the builders)

    manual = Path(__file__).resolve().parents[1] / "tfds_builders" / "affectnet" / "dummy_data"
    data_dir = tmp_path / "tfds"
    builder = tfds.builder("affectnet", config="crop224", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["ingest", "affectnet", "--tfds-dir", str(data_dir), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    from_tfds = Workspace(ws).annotations("affectnet").sort("id")
    from curate.formats import affectnet

    raw = affectnet.read(manual).annotations
    assert 0 < from_tfds.height <= raw.height
    same = raw.join(from_tfds.select("id", "label", "valence", "va_annotated", "landmarks"), on="id", suffix="_tfds")
    assert same.height == from_tfds.height
    assert (same["label"] == same["label_tfds"]).all()
    assert (same["va_annotated"] == same["va_annotated_tfds"]).all()
    assert same.select((pl.col("valence") - pl.col("valence_tfds")).abs().max()).item() < 1e-5
    assert from_tfds["source_file"][0] == "affectnet/crop224/1.0.0"


def test_ingest_with_exclusions_moves_rows_to_rejects(tmp_path):
    from curate import audit
    from curate.exclusions import EXCLUDED_AS_DUPLICATE

    votes = tmp_path / "fer2013new.csv"
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    usages = ["Training"] * 4 + ["PublicTest", "PrivateTest", "Bogus"]
    lines = [header] + [f"{u},fer{i:07d}.png,10,0,0,0,0,0,0,0,0,0" for i, u in enumerate(usages)]
    votes.write_text("\n".join(lines) + "\n")
    exclusions = pl.DataFrame(
        {
            "dataset": ["ferplus", "ferplus", "ferplus", "affectnet"],
            "id": ["fer0000001", "fer0000003", "fer0009999", "fer0000002"],
            "split": ["train", "train", "train", "train"],
            "group": ["ferplus:fer0000005", "ferplus:fer0000004", "ferplus:x", "affectnet:y"],
        }
    )
    path = audit.write_exclusions(exclusions, tmp_path / "excl.parquet")
    ws = tmp_path / "ws"
    result = runner.invoke(
        app, ["ingest", "ferplus", "--votes-file", str(votes), "--exclusions", str(path), "-w", str(ws)]
    )
    assert result.exit_code == 0, result.output
    # Two listed ferplus ids are in the file; the unknown id and the affectnet row do nothing.
    assert "2 rows excluded as duplicates (3 ids listed for ferplus)" in result.output
    assert EXCLUDED_AS_DUPLICATE in result.output
    workspace = Workspace(ws)
    rejects = workspace.rejects("ferplus")
    assert workspace.ingested()["ferplus"] == 4
    assert workspace.ingested()["ferplus"] + rejects.height == len(usages)  # rows_in invariant
    dup = rejects.filter(pl.col("reason") == EXCLUDED_AS_DUPLICATE).sort("id")
    assert dup["id"].to_list() == ["fer0000001", "fer0000003"]
    assert dup["detail"].to_list() == ["duplicate of ferplus:fer0000005", "duplicate of ferplus:fer0000004"]
    with workspace.connect() as con:
        ids = {r[0] for r in con.execute("SELECT id FROM annotations WHERE dataset = 'ferplus'").fetchall()}
    assert ids == {"fer0000000", "fer0000002", "fer0000004", "fer0000005"}
    # Bad exclusion files: one error line each.
    w = ["-w", str(tmp_path / "ws2")]
    line = _error_line(
        runner.invoke(
            app, ["ingest", "ferplus", "--votes-file", str(votes), "--exclusions", str(tmp_path / "no.parquet"), *w]
        )
    )
    assert "no such file" in line
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "noid.parquet")
    line = _error_line(
        runner.invoke(
            app, ["ingest", "ferplus", "--votes-file", str(votes), "--exclusions", str(tmp_path / "noid.parquet"), *w]
        )
    )
    assert "no 'id' column" in line
