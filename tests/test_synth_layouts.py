"""curate.synth generators: determinism, label-noise ledgers, annotations-only mode, CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from curate import labels
from curate.formats import affectnet, ferplus, rafdb
from curate.synth import generate_affectnet, generate_ferplus, generate_rafdb, manifest_path, noise_ledger_path


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


TINY = {
    "affectnet-original": (generate_affectnet, {"layout": "original", "scale": 0.0002}),
    "affectnet-cropped": (generate_affectnet, {"layout": "cropped", "scale": 0.0002}),
    "ferplus": (generate_ferplus, {"scale": 0.002}),
    "rafdb": (generate_rafdb, {"scale": 0.005}),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_same_seed_same_bytes_for_any_worker_count(name, tmp_path):
    generate, options = TINY[name]
    one = generate(tmp_path / "one", seed=5, workers=1, label_noise=0.05, **options)
    two = generate(tmp_path / "two", seed=5, workers=2, label_noise=0.05, **options)
    generate(tmp_path / "other", seed=6, workers=2, **options)
    assert one.images_written == two.images_written > 0
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "two")
    assert tree_digest(tmp_path / "one") != tree_digest(tmp_path / "other")
    manifests = [json.loads(manifest_path(tmp_path / n).read_text()) for n in ("one", "two")]
    assert [m.pop("noise_ledger") for m in manifests] == ["one.noise_ledger.parquet", "two.noise_ledger.parquet"]
    assert manifests[0] == manifests[1]
    assert noise_ledger_path(tmp_path / "one").read_bytes() == noise_ledger_path(tmp_path / "two").read_bytes()
    # manifest and ledger live next to the manual dir, never inside it
    assert one.manifest_path.parent == tmp_path and one.noise_ledger_path.parent == tmp_path
    assert not any(p.suffix in (".json", ".parquet") for p in (tmp_path / "one").rglob("*"))


def ledger_check(report, tables, rows: int, rate: float) -> pl.DataFrame:
    ledger = pl.read_parquet(report.noise_ledger_path)
    assert ledger.columns == ["id", "split", "given_label", "true_label"]
    assert ledger.height == report.flipped == round(rate * rows)
    assert (ledger["given_label"] != ledger["true_label"]).all()
    assert ledger["id"].n_unique() == ledger.height
    # the files carry the flipped label
    written = tables.annotations.select("id", "split", "label").join(ledger, on="id")
    assert written.height == ledger.height
    assert (written["label"] == written["given_label"].cast(pl.Int8)).all()
    assert (written["split"] == written["split_right"]).all()
    return ledger


def test_noise_ledger_affectnet(tmp_path):
    report = generate_affectnet(tmp_path / "a", scale=0.001, seed=3, label_noise=0.1, annotations_only=True)
    tables = affectnet.read(tmp_path / "a")
    ledger = pl.read_parquet(report.noise_ledger_path)
    assert ledger.height == report.flipped == round(0.1 * report.rows)
    assert (ledger["given_label"] != ledger["true_label"]).all()
    # realistic confusions only (Fear<->Surprise, Disgust<->Anger, ...), never to or from 9 / 10
    pairs = set(zip(ledger["true_label"].to_list(), ledger["given_label"].to_list(), strict=True))
    assert all(t <= 8 and g <= 8 for t, g in pairs)
    assert (3, 4) in pairs or (4, 3) in pairs
    written = dict(zip(tables.annotations["id"], tables.annotations["label"], strict=True))
    for row in ledger.iter_rows(named=True):
        if row["id"] in written:  # a flipped row may also be a non-positive-box reject
            assert written[row["id"]] == row["given_label"]
    manifest = json.loads(report.manifest_path.read_text())
    assert manifest["noise_ledger"] == report.noise_ledger_path.name == "a.noise_ledger.parquet"
    true_total = sum(sum(c.values()) for c in manifest["true_class_counts"].values())
    assert true_total == report.rows


def test_noise_ledger_ferplus_and_rafdb(tmp_path):
    report = generate_ferplus(tmp_path / "f", scale=0.05, seed=4, label_noise=0.2, annotations_only=True)
    tables = ferplus.read(tmp_path / "f")
    ledger = ledger_check(report, tables, report.rows, 0.2)
    # FER+ votes keep pointing at the true class: the flipped FER2013 label disagrees with them
    votes = tables.annotations.join(ledger, on="id").select("votes", "true_label")
    winners = labels.ferplus_vote_targets(np.stack(votes["votes"].to_list()), "argmax").label
    assert (winners == votes["true_label"].to_numpy()).mean() > 0.8
    report = generate_rafdb(tmp_path / "r", scale=0.05, seed=4, label_noise=0.15, annotations_only=True)
    ledger_check(report, rafdb.read(tmp_path / "r"), report.rows, 0.15)


def test_annotations_only_writes_no_images(tmp_path):
    report = generate_affectnet(tmp_path / "a", scale=0.02, seed=1, annotations_only=True)
    assert report.images_written == 0
    assert not (tmp_path / "a" / "Manually_Annotated_Images").exists()
    tables = affectnet.read(tmp_path / "a")
    assert tables.rows_in == report.rows
    assert tables.rejects["reason"].to_list() == ["non-positive face box"] * 3
    boxes = tables.annotations.select("face_width", "face_height").to_numpy()
    assert (boxes > 0).all()
    landmarks = np.stack(tables.annotations["landmarks"].head(200).to_list()).reshape(-1, 68, 2)
    x = tables.annotations["face_x"].head(200).to_numpy()[:, None]
    w = tables.annotations["face_width"].head(200).to_numpy()[:, None]
    inside = (landmarks[..., 0] > x - 0.2 * w) & (landmarks[..., 0] < x + 1.2 * w)
    assert inside.mean() > 0.95  # landmarks placed in the face box
    report = generate_rafdb(tmp_path / "r", scale=0.02, seed=1, annotations_only=True)
    assert report.images_written == 0 and rafdb.read(tmp_path / "r").rows_in == report.rows
    report = generate_affectnet(tmp_path / "c", layout="cropped", scale=0.001, seed=1, annotations_only=True)
    assert affectnet.read(tmp_path / "c").rows_in == report.rows


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    for generate in (generate_affectnet, generate_ferplus, generate_rafdb):
        with pytest.raises(ValueError, match="not empty"):
            generate(tmp_path / "out", scale=0.001, annotations_only=True)


def test_cli_synth(tmp_path):
    from curate.cli import app

    runner = CliRunner()
    out = tmp_path / "raf"
    result = runner.invoke(
        app,
        [
            "synth",
            "rafdb",
            "--out",
            str(out),
            "--scale",
            "0.005",
            "--seed",
            "2",
            "--label-noise",
            "0.1",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "manifest:" in result.output and "noise ledger:" in result.output
    assert manifest_path(out).is_file() and noise_ledger_path(out).is_file()
    assert rafdb.read(out).rejects.is_empty()
    again = runner.invoke(app, ["synth", "rafdb", "--out", str(out), "--scale", "0.005"])
    assert again.exit_code == 1 and "not empty" in again.output
    bad = runner.invoke(app, ["synth", "affectnet", "--out", str(tmp_path / "a"), "--layout", "weird"])
    assert bad.exit_code == 1 and "unknown AffectNet layout" in bad.output
    for command in ("affectnet", "ferplus", "rafdb"):
        help_text = runner.invoke(app, ["synth", command, "--help"]).output
        assert "--out" in help_text and "--annotations-only" in help_text


def _synth_error_line(result) -> str:
    text = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert result.exit_code == 1, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text  # one line, no traceback
    return lines[0]


@pytest.mark.parametrize("command", ["affectnet", "ferplus", "rafdb"])
def test_cli_synth_out_that_is_a_file_fails_in_one_line(tmp_path, command):
    from curate.cli import app

    runner = CliRunner()
    taken = tmp_path / "taken.csv"
    taken.write_text("keep me\n")
    line = _synth_error_line(runner.invoke(app, ["synth", command, "--out", str(taken), "--scale", "0.001"]))
    assert str(taken) in line and "is not a folder" in line
    inside = _synth_error_line(runner.invoke(app, ["synth", command, "--out", str(taken / "sub"), "--scale", "0.001"]))
    assert str(taken) in inside and "is a file" in inside
    assert taken.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.csv"]  # no manifest, no ledger


@pytest.mark.parametrize(
    ("command", "options", "expected"),
    [
        ("rafdb", ["--scale", "0"], "--scale: value 0.0 is out of range"),
        ("rafdb", ["--scale", "-1"], "--scale: value -1.0 is out of range"),
        ("ferplus", ["--scale", "nan"], "--scale: value nan is out of range"),
        ("affectnet", ["--scale", "100"], "--scale: value 100.0 is out of range"),
        ("affectnet", ["--scale", "0.001", "--validation-scale", "0"], "--validation-scale: value 0.0 is out of range"),
        ("rafdb", ["--label-noise", "2"], "--label-noise: value 2.0 is out of range"),
        ("ferplus", ["--label-noise", "-0.1"], "--label-noise: value -0.1 is out of range"),
        ("affectnet", ["--seed", "-1"], "--seed: value -1 is out of range"),
        ("rafdb", ["--workers", "0"], "--workers: value 0 is out of range"),
        ("affectnet", ["--layout", "weird"], "unknown AffectNet layout 'weird'"),
        ("ferplus", ["--votes-from", "/nonexistent/fer2013new.csv"], "vote file not found"),
        ("ferplus", ["--votes-from", "/nonexistent/fer2013new.csv", "--scale", "0.5"], "scale does not apply"),
    ],
)
def test_cli_synth_refused_options_leave_nothing_behind(tmp_path, command, options, expected):
    from curate.cli import app

    result = CliRunner().invoke(app, ["synth", command, "--out", str(tmp_path / "out"), *options])
    assert expected in _synth_error_line(result)
    assert list(tmp_path.iterdir()) == []  # no output folder, no manifest


@pytest.mark.parametrize("existed", [False, True])
def test_failed_generation_removes_what_it_wrote(tmp_path, monkeypatch, existed):
    from curate.synth import common

    out = tmp_path / "raf"
    if existed:
        out.mkdir()

    def crash(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(common, "finish", crash)
    with pytest.raises(RuntimeError, match="disk on fire"):
        generate_rafdb(out, scale=0.005, label_noise=0.1, annotations_only=True, workers=1)
    assert [p.name for p in tmp_path.iterdir()] == (["raf"] if existed else [])
    assert not existed or list(out.iterdir()) == []  # an empty folder given stays, emptied
