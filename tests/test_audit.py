"""Duplicate and valence/arousal audits (curate.audit, `curate audit ...`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

import curate.cli.audit_cmd  # noqa: F401 - registers `curate audit` on the app
from curate import audit
from curate.cli import app
from curate.formats import affectnet as fmt
from curate.workspace import Workspace

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    from curate.cli.app import console

    monkeypatch.setattr(console, "width", 200)


@pytest.fixture(scope="module")
def injected(synth_affectnet_original: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    work = tmp_path_factory.mktemp("audit") / "original"
    shutil.copytree(synth_affectnet_original, work)
    truth = audit.inject_duplicates(work, 30, seed=5)
    return work, truth


def test_inject_duplicates_writes_rows_and_files(injected):
    work, truth = injected
    assert truth.height == 30
    assert truth["kind"].value_counts()["count"].to_list() == [10, 10, 10]
    assert (truth["split_a"] != truth["split_b"]).all()
    rows = fmt.read(work).annotations
    ids = set(rows["id"].to_list())
    assert set(truth["id_b"]) <= ids and set(truth["id_a"]) <= ids
    for new_id in truth["id_b"]:
        assert (work / fmt.IMAGES_DIR / new_id).is_file()


def test_find_duplicates_recall_precision(injected):
    work, truth = injected
    images = audit.load_images("affectnet", work)
    pairs = audit.find_duplicates(images, workers=2)
    score = audit.score_pairs(pairs, truth)
    assert score["recall"] >= 0.95, score
    assert score["precision"] >= 0.95, score
    exact_truth = {frozenset(p) for p in truth.filter(pl.col("kind") == "exact").select("id_a", "id_b").rows()}
    exact_found = {frozenset(p) for p in pairs.filter(pl.col("kind") == "exact").select("id_a", "id_b").rows()}
    assert exact_truth <= exact_found
    assert pairs.schema == pl.Schema(audit.PAIR_SCHEMA)
    summary = audit.pair_summary(pairs)
    assert summary["total"].sum() == pairs.height
    assert set(summary["group_a"]) | set(summary["group_b"]) <= {"affectnet/train", "affectnet/validation"}
    # every injected copy crosses train/validation: the exclusion list drops the train side
    drop = audit.exclusion_ids(pairs)
    assert drop.height == pairs.height
    assert (drop["split"] == "train").all()


def test_near_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(300, 4), dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, size=(300, 4)).astype(np.uint64)
    hashes = np.concatenate([base, base[:50] ^ flips[:50]])
    i, j, d = audit.near_pairs(hashes, 6, block=64, width=100)
    full = np.bitwise_count(hashes[:, None, :] ^ hashes[None, :, :]).sum(-1)
    bi, bj = np.nonzero(np.triu(full <= 6, k=1))
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == sorted(zip(bi.tolist(), bj.tolist(), strict=True))
    assert (d == full[i, j]).all()
    assert len(i) == 50


def test_exclusion_ids_keeps_test_then_validation():
    pairs = pl.DataFrame(
        {
            "id_a": ["a", "b", "x"], "dataset_a": ["rafdb", "rafdb", "rafdb"], "split_a": ["train", "train", "train"],
            "id_b": ["b", "c", "y"], "dataset_b": ["rafdb", "rafdb", "rafdb"], "split_b": ["train", "test", "train"],
            "kind": ["exact", "near", "near"], "distance": [0, 10, 3], "pixel_diff": [0.0, 2.0, 1.0],
        },
        schema=audit.PAIR_SCHEMA,
    )  # fmt: skip
    drop = audit.exclusion_ids(pairs)
    assert drop.sort("id")["id"].to_list() == ["a", "b", "y"]
    assert set(drop.filter(pl.col("id").is_in(["a", "b"]))["group"]) == {"rafdb:c"}
    assert drop.filter(pl.col("id") == "y")["group"].item() == "rafdb:x"
    assert audit.exclusion_ids(pairs.head(0)).height == 0


def test_ferplus_and_rafdb_images_hash(synth_ferplus, synth_rafdb):
    images = pl.concat(
        [audit.load_images("ferplus", synth_ferplus).head(60), audit.load_images("rafdb", synth_rafdb).head(60)],
        how="vertical_relaxed",
    )
    # an exact copy of one FERPlus image under another id and split
    copy = images.head(1).with_columns(pl.lit("fer9999999").alias("id"), pl.lit("test").alias("split"))
    hashed = audit.hash_images(pl.concat([images, copy], how="vertical_relaxed"), workers=1)
    assert hashed["ok"].all()
    pairs = audit.pairs_from_hashes(hashed)
    assert pairs.filter((pl.col("kind") == "exact") & (pl.col("id_b") == "fer9999999")).height == 1


def test_cli_duplicates_stores_pairs(injected, tmp_path):
    work, truth = injected
    ws = Workspace(tmp_path / "ws", timeout=0)
    ws.ingest(fmt.read(work), dataset="affectnet", source=str(work))
    out = tmp_path / "pairs.parquet"
    drop = tmp_path / "drop.parquet"
    result = runner.invoke(
        app,
        ["audit", "duplicates", "--dataset", "affectnet", "--out", str(out), "--exclusions-out", str(drop),
         "--workers", "2", "-w", str(ws.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "affectnet/train" in result.output and "duplicate_pairs" in result.output
    pairs = pl.read_parquet(out)
    assert audit.score_pairs(pairs, truth)["recall"] >= 0.95
    assert pl.read_parquet(drop).height > 0
    with ws.connect() as con:
        (stored,) = con.execute("SELECT count(*) FROM duplicate_pairs").fetchone()
    assert stored == pairs.height


def test_cli_duplicates_errors(tmp_path):
    result = runner.invoke(app, ["audit", "duplicates", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "--dataset" in result.output
    result = runner.invoke(app, ["audit", "duplicates", "--dataset", "affectnet", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "manual dir" in result.output


# -- valence / arousal -----------------------------------------------------------------


@pytest.fixture(scope="module")
def va_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame, list[str]]:
    from curate.synth.affectnet import generate_affectnet

    out = tmp_path_factory.mktemp("audit_va") / "affectnet"
    generate_affectnet(out, layout="original", scale=0.01, annotations_only=True, seed=7)
    frame = fmt.read(out).annotations
    happy = frame.filter((pl.col("label") == 1) & pl.col("va_annotated"))["id"].sample(20, seed=1).to_list()
    corrupted = frame.with_columns(
        pl.when(pl.col("id").is_in(happy)).then(pl.lit(-0.9, dtype=pl.Float32)).otherwise("valence").alias("valence")
    )
    return out, corrupted, happy


def test_va_outliers_flags_injected(va_table):
    _, frame, happy = va_table
    scored = audit.va_outliers(frame)
    flagged = scored.filter("outlier")
    hits = flagged.filter(pl.col("id").is_in(happy)).height
    assert hits >= 18
    others = scored.filter(~pl.col("id").is_in(happy))
    assert others["outlier"].mean() < 0.02
    # rows without V/A (labels 9, 10) are left out
    assert scored.filter(pl.col("label") >= 9).height == 0
    summary = audit.va_summary(scored)
    assert summary.filter(pl.col("label") == 1)["centre_valence"].item() > 0.3


def test_cli_va(va_table, tmp_path):
    _, frame, happy = va_table
    from curate.formats.schema import ParsedTables, empty_rejects

    ws = Workspace(tmp_path / "ws", timeout=0)
    ws.ingest(ParsedTables(frame, empty_rejects(), {}, "original"), dataset="affectnet", source="synthetic")
    out = tmp_path / "va.parquet"
    result = runner.invoke(app, ["audit", "va", "--out", str(out), "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    assert "Happy" in result.output and "flagged" in result.output
    flagged = pl.read_parquet(out)
    assert flagged.filter(pl.col("id").is_in(happy)).height >= 18
    result = runner.invoke(app, ["audit", "va", "-w", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "nothing ingested" in result.output
