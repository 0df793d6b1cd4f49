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


#: Seeds of the edited-copy fixture; 5 and 17 were tried (both within the margins below).
EDIT_SEED = 17


@pytest.fixture(scope="module")
def edited(synth_affectnet_original: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pl.DataFrame]:
    """Every kind of :data:`audit.EDIT_KINDS` injected 5 times (40 copies)."""
    work = tmp_path_factory.mktemp("audit_edits") / "original"
    shutil.copytree(synth_affectnet_original, work)
    truth = audit.inject_duplicates(work, 5 * len(audit.EDIT_KINDS), seed=EDIT_SEED, kinds=audit.EDIT_KINDS)
    return work, audit.hash_images(audit.load_images("affectnet", work), workers=2), truth


def recall_by_kind(pairs: pl.DataFrame, truth: pl.DataFrame) -> dict[str, float]:
    return {kind: audit.score_pairs(pairs, truth.filter(pl.col("kind") == kind))["recall"] for kind in audit.EDIT_KINDS}


def test_verification_is_invariant_to_brightness_contrast_gamma(edited):
    _, hashed, truth = edited
    pairs = audit.pairs_from_hashes(hashed)  # rank-normalised thumbnails
    raw = audit.pairs_from_hashes(hashed, normalise="raw", max_pixel_diff=6.0)
    found, before = recall_by_kind(pairs, truth), recall_by_kind(raw, truth)
    for kind in ("exact", "resized", "contrast", "gamma"):
        assert found[kind] == 1.0, (kind, found)
    for kind in ("jpeg60", "brightness"):  # a JPEG copy may pass the pHash threshold, a bright one saturate
        assert found[kind] >= 0.8, (kind, found)
    # raw grey levels miss the intensity edits: the normalisation is what finds them
    assert max(before["brightness"], before["contrast"], before["gamma"]) <= 0.4, before
    # known misses: a flip changes the pHash (unless flips=True, below), a 5 % tighter face box
    # moves it past the threshold
    assert found["flip"] == 0.0 and found["crop"] == 0.0, found
    # no new false pairs: everything found is an injected pair
    assert audit.score_pairs(pairs, truth)["precision"] == 1.0
    assert audit.score_pairs(raw, truth)["precision"] == 1.0


def test_flips_are_found_when_asked(edited):
    _, hashed, truth = edited
    pairs = audit.pairs_from_hashes(hashed, flips=True)
    found = recall_by_kind(pairs, truth)
    assert found["flip"] == 1.0, found  # injector seeds 5, 17 and 23: every mirrored copy, precision 1.0
    flipped = truth.filter(pl.col("kind") == "flip")
    assert audit.score_pairs(pairs.filter(pl.col("kind") == "flip"), flipped)["recall"] == 1.0
    # the other kinds are found as before, and nothing found is a false pair
    assert {k: v for k, v in found.items() if k != "flip"} == {
        k: v for k, v in recall_by_kind(audit.pairs_from_hashes(hashed), truth).items() if k != "flip"
    }
    assert audit.score_pairs(pairs, truth)["precision"] == 1.0
    summary = audit.pair_summary(pairs)
    assert int(summary["flip"].sum()) == pairs.filter(pl.col("kind") == "flip").height > 0


def test_the_mirrored_hash_is_the_hash_of_the_mirrored_image(edited):
    import imagehash
    from PIL import Image, ImageOps

    work, hashed, _ = edited
    images = audit.load_images("affectnet", work).head(5)
    for row, hashes in zip(images.iter_rows(named=True), hashed.head(5).iter_rows(named=True), strict=True):
        box = (row["face_x"], row["face_y"], row["face_width"], row["face_height"])
        face = audit._face_crop(Image.open(row["path"]).convert("RGB"), box).convert("L")
        expected = np.packbits(np.asarray(imagehash.phash(face, hash_size=16).hash).ravel()).tobytes()
        mirrored = np.packbits(np.asarray(imagehash.phash(ImageOps.mirror(face), hash_size=16).hash).ravel())
        assert hashes["phash"] == expected  # resizing once before imagehash gives imagehash's own hash
        distance = np.unpackbits(np.frombuffer(hashes["phash_flip"], np.uint8) ^ mirrored).sum()
        assert distance <= 4  # the mirror of the resized face, not the resized mirror: rounding only


def test_normalise_thumbs():
    rng = np.random.default_rng(2)
    thumbs = rng.integers(20, 200, size=(4, 256)).astype(np.uint8)
    gamma = np.rint(255 * (thumbs / 255.0) ** 0.8).astype(np.uint8)
    affine = np.rint(thumbs * 1.2 + 10).astype(np.uint8)
    rank = audit.normalise_thumbs(thumbs, "rank")
    assert rank.min() >= 0 and rank.max() <= 255
    assert np.abs(audit.normalise_thumbs(gamma, "rank") - rank).mean() < 1.0
    assert np.abs(audit.normalise_thumbs(affine, "rank") - rank).mean() < 1.0
    zscore = audit.normalise_thumbs(thumbs, "zscore")
    assert np.abs(audit.normalise_thumbs(affine, "zscore") - zscore).mean() < 0.5
    assert np.abs(audit.normalise_thumbs(gamma, "raw") - audit.normalise_thumbs(thumbs, "raw")).mean() > 5
    flat = audit.normalise_thumbs(np.full((1, 256), 7, dtype=np.uint8), "zscore")
    assert (flat == 0).all()
    with pytest.raises(ValueError, match="not one of raw, zscore, rank"):
        audit.normalise_thumbs(thumbs, "histogram")


def test_inject_duplicates_rejects_unknown_kinds(tmp_path):
    with pytest.raises(ValueError, match="give one or more of exact"):
        audit.inject_duplicates(tmp_path, 1, kinds=("rotate",))


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
         "--workers", "2", "--method", "ivf", "-w", str(ws.root)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "affectnet/train" in result.output and "duplicate_pairs" in result.output
    pairs = pl.read_parquet(out)
    assert audit.score_pairs(pairs, truth)["recall"] >= 0.95
    assert pl.read_parquet(drop).height > 0
    with ws.connect() as con:
        (stored,) = con.execute("SELECT count(*) FROM duplicate_pairs").fetchone()
    assert stored == pairs.height


def test_cli_duplicates_from_a_tfds_build(injected, tmp_path):
    # the builder's stored crops are hashed instead of the sources: the same injected copies
    # are found (exact copies stay exact: the builder stores the same pixels for both)
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  (registers the builders)

    work, truth = injected
    data_dir = tmp_path / "tfds"
    builder = tfds.builder("affectnet", config="crop224", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(work)))
    out = tmp_path / "pairs.parquet"
    args = ["audit", "duplicates", "-d", "affectnet", "--tfds-dir", str(data_dir), "--out", str(out)]
    result = runner.invoke(app, [*args, "--workers", "2", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    built = builder.info.splits.total_num_examples
    assert f"{built:,} images from affectnet" in result.output
    pairs = pl.read_parquet(out)
    assert audit.score_pairs(pairs, truth)["recall"] >= 0.95
    exact = truth.filter(pl.col("kind") == "exact")
    assert audit.score_pairs(pairs.filter(pl.col("kind") == "exact"), exact)["recall"] == 1.0
    # from the sources, for comparison: the same pairs among the injected ones
    hashed = audit.hash_images(audit.load_images("affectnet", work), workers=2)
    assert audit.score_pairs(audit.pairs_from_hashes(hashed), truth)["recall"] >= 0.95
    missing = runner.invoke(app, ["audit", "duplicates", "-d", "rafdb", "--tfds-dir", str(data_dir)])
    assert missing.exit_code == 1 and "no built TFDS dataset 'rafdb'" in missing.output
    both = runner.invoke(app, [*args, "--manual-dir", str(work)])
    assert both.exit_code == 1 and "one of --manual-dir and --tfds-dir" in both.output


def test_cli_duplicates_errors(tmp_path):
    result = runner.invoke(app, ["audit", "duplicates", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "--dataset" in result.output
    result = runner.invoke(app, ["audit", "duplicates", "-d", "affectnet", "--method", "knn", "-w", str(tmp_path)])
    assert result.exit_code == 1 and "--method knn: not one of auto, exact, lsh, ivf, multihash" in result.output
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


def test_cli_duplicates_refuses_a_search_that_does_not_fit(injected, tmp_path, monkeypatch):
    import psutil

    work, _ = injected

    class Tiny:
        available = 1000

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Tiny())
    result = runner.invoke(
        app,
        ["audit", "duplicates", "-d", "affectnet", "--manual-dir", str(work), "--workers", "1",
         "-w", str(tmp_path / "ws")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "needs about" in result.output and "GiB available" in result.output
