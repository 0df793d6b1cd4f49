"""One FER+ label per FERPlus row, the same in the TFDS build, the workspace, the trainer and the review app.

A hand-written FERPlus manual dir (:data:`ROWS`) holds votes chosen to hit each case of the
FER+ authors' majority rule: a clear majority, no majority (unknown), the ``unknown`` column
winning, not-a-face with an empty ``Image name``, Contempt (no FER2013 class), a tie, single
votes zeroed as outliers, and rows where FER2013's label and the FER+ label disagree. The
expected labels are written by hand and checked against :func:`majority_oracle`, a plain
transcription of the authors' rule, so neither depends on :mod:`curate.labels`.
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from curate import labels
from curate.cli import app
from curate.formats import ferplus as fmt
from curate.workspace import SCHEMA_VERSION, Workspace

runner = CliRunner()

# Vote columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
#: (Usage, FER2013 emotion, votes, expected FER+ majority label (canonical), what the row tests).
ROWS: tuple[tuple[str, int, tuple[int, ...], int, str], ...] = (
    ("Training", 3, (2, 8, 0, 0, 0, 0, 0, 0, 0, 0), 1, "Happy by majority; FER2013 Happy agrees"),
    ("Training", 6, (4, 0, 0, 3, 3, 0, 0, 0, 0, 0), 9, "no emotion above half: unknown"),
    ("Training", 0, (0, 0, 0, 0, 0, 0, 0, 0, 0, 10), 10, "not a face (empty Image name)"),
    ("Training", 0, (0, 0, 0, 0, 2, 2, 0, 6, 0, 0), 7, "Contempt; FER2013 Angry"),
    ("Training", 2, (0, 0, 7, 0, 0, 0, 3, 0, 0, 0), 3, "Surprise; FER2013 Fear disagrees"),
    ("Training", 6, (4, 0, 0, 0, 0, 0, 0, 0, 6, 0), 9, "the unknown column wins"),
    ("Training", 6, (10, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, "unanimous Neutral"),
    ("Training", 4, (1, 0, 0, 8, 0, 0, 0, 0, 1, 0), 2, "Sad; single votes are outliers"),
    ("PublicTest", 4, (1, 0, 0, 9, 0, 0, 0, 0, 0, 0), 2, "Sad"),
    ("PublicTest", 6, (10, 0, 0, 0, 0, 0, 0, 0, 0, 0), 0, "Neutral"),
    ("PublicTest", 3, (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), 1, "Happy"),
    ("PublicTest", 1, (0, 0, 0, 0, 0, 7, 0, 3, 0, 0), 5, "Disgust"),
    ("PrivateTest", 1, (0, 0, 0, 0, 6, 4, 0, 0, 0, 0), 6, "Anger; FER2013 Disgust disagrees"),
    ("PrivateTest", 3, (0, 5, 5, 0, 0, 0, 0, 0, 0, 0), 9, "a 5-5 tie: unknown"),
    ("PrivateTest", 6, (9, 1, 0, 0, 0, 0, 0, 0, 0, 0), 0, "Neutral"),
    ("PrivateTest", 3, (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), 1, "Happy"),
)
IDS = [f"fer{i:07d}" for i in range(len(ROWS))]
EXPECTED = {row_id: row[3] for row_id, row in zip(IDS, ROWS, strict=True)}
FER2013 = {row_id: labels.FER2013_TO_CANONICAL[row[1]] for row_id, row in zip(IDS, ROWS, strict=True)}
SPLIT = {row_id: fmt.USAGE_TO_SPLIT[row[0]] for row_id, row in zip(IDS, ROWS, strict=True)}
LEFT_OUT = {row_id for row_id, label in EXPECTED.items() if label in (9, 10)}
#: Under ``probability`` the no-majority row and the tie get their distribution's argmax.
EXPECTED_PROBABILITY = EXPECTED | {"fer0000001": 0, "fer0000013": 1}


def majority_oracle(votes: Any) -> int:
    """The FER+ authors' majority rule, transcribed: canonical label, 9 unknown, 10 NF."""
    kept = [v if v > 1 else 0 for v in (int(x) for x in votes)]
    top = max(kept)
    if top * 2 <= sum(kept):
        return 9
    column = kept.index(top)
    return (0, 1, 3, 2, 6, 5, 4, 7, 9, 10)[column]


def test_expected_labels_follow_the_authors_rule():
    assert [majority_oracle(row[2]) for row in ROWS] == [row[3] for row in ROWS]
    assert {row[3] for row in ROWS} >= {0, 1, 2, 3, 5, 6, 7, 9, 10}
    assert sum(FER2013[i] != EXPECTED[i] for i in IDS if i not in LEFT_OUT) >= 3  # the two label sources differ


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ferplus_labels") / "manual"
    pixels = np.random.default_rng(7).integers(0, 256, size=(len(ROWS), 48, 48), dtype=np.uint8)
    usage = [row[0] for row in ROWS]
    fmt.write_fer2013(out / fmt.FER2013_FILE, [row[1] for row in ROWS], pixels, usage)
    names = [None if row[3] == 10 else fmt.image_name(i) for i, row in enumerate(ROWS)]
    fmt.write_ferplus_votes(out / fmt.FERPLUS_FILE, usage, names, [row[2] for row in ROWS])
    return out


@pytest.fixture(scope="module")
def tfds_dir(manual_dir, tmp_path_factory) -> Path:
    tfds = pytest.importorskip("tensorflow_datasets")
    import tfds_builders  # noqa: F401  (registers the builders)

    data_dir = tmp_path_factory.mktemp("ferplus_tfds")
    builder = tfds.builder("ferplus", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return data_dir


def _ingested(tmp_path: Path, manual_dir: Path, *extra: str) -> Path:
    ws_dir = tmp_path / "ws"
    result = runner.invoke(app, ["ingest", "ferplus", "--manual-dir", str(manual_dir), "-w", str(ws_dir), *extra])
    assert result.exit_code == 0, result.output
    return ws_dir


def _workspace_labels(ws: Workspace) -> dict[str, int]:
    frame = ws.annotations("ferplus", columns=["id", "label"])
    return dict(zip(frame["id"].to_list(), frame["label"].to_list(), strict=True))


# -- (a) the TFDS build ----------------------------------------------------------------


def test_tfds_label_is_the_ferplus_majority(tfds_dir):
    import tensorflow_datasets as tfds

    builder = tfds.builder("ferplus", data_dir=str(tfds_dir))
    assert str(builder.info.version) == "2.0.0"
    seen = {}
    for split in ("train", "validation", "test"):
        for example in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
            row_id = example["id"].decode()
            seen[row_id] = int(example["label"])
            assert labels.FER2013_TO_CANONICAL[int(example["fer2013_label"])] == FER2013[row_id]
            assert SPLIT[row_id] == split
    assert seen == EXPECTED  # every row is an example; unknown / NF rows carry 9 / 10


# -- (b) the workspace -----------------------------------------------------------------


def test_workspace_labels_and_keep_all_remap(manual_dir, tmp_path):
    ws = Workspace(_ingested(tmp_path, manual_dir), timeout=0)
    assert _workspace_labels(ws) == EXPECTED
    frame = ws.annotations("ferplus", columns=["id", "raw_label", "fer2013_label"])
    assert dict(zip(frame["id"], frame["fer2013_label"], strict=True)) == FER2013
    assert frame["raw_label"].to_list() == [row[1] for row in ROWS]  # FER2013's own code, untouched
    with ws.connect() as con:
        assert con.execute("SELECT vote_mode FROM ingests WHERE dataset = 'ferplus'").fetchone() == ("majority",)

    result = runner.invoke(app, ["remap", "--policy", "keep-all", "-d", "ferplus", "-w", str(ws.root)])
    assert result.exit_code == 0, result.output
    kept = len(ROWS) - len(LEFT_OUT)
    assert f"kept {kept} of {len(ROWS)} rows" in result.output and f"dropped {len(LEFT_OUT)}" in result.output
    assert "left out by every policy (Uncertain 3, No-Face 1)" in result.output
    with ws.connect() as con:
        rows = con.execute(
            "SELECT id, class_index, dropped_by FROM remapped WHERE policy = 'keep-all' ORDER BY id"
        ).fetchall()
    assert {i for i, class_index, _ in rows if class_index is None} == LEFT_OUT
    assert {i: why for i, _, why in rows if why} == dict.fromkeys(LEFT_OUT, "vote mode")
    assert {i: c for i, c, _ in rows if c is not None} == {i: v for i, v in EXPECTED.items() if i not in LEFT_OUT}

    # Class counts per split are FER+'s, not FER2013's.
    from curate.studies.balance import balance

    report = balance(ws, dataset="ferplus", policy="keep-all")
    for split in ("train", "validation", "test"):
        group = report.groups[("ferplus", split)]
        expected = collections.Counter(v for i, v in EXPECTED.items() if SPLIT[i] == split and i not in LEFT_OUT)
        assert group["counts"] == [expected.get(c, 0) for c in range(labels.NUM_CANONICAL)]
        assert group["dropped"] == sum(1 for i in LEFT_OUT if SPLIT[i] == split)
    fer2013 = collections.Counter(v for i, v in FER2013.items() if SPLIT[i] == "train")
    assert report.groups[("ferplus", "train")]["counts"] != [fer2013.get(c, 0) for c in range(labels.NUM_CANONICAL)]


def test_workspace_from_the_tfds_build_agrees(tfds_dir, tmp_path):
    ws_dir = tmp_path / "ws"
    result = runner.invoke(app, ["ingest", "ferplus", "--tfds-dir", str(tfds_dir), "-w", str(ws_dir)])
    assert result.exit_code == 0, result.output
    ws = Workspace(ws_dir, timeout=0)
    assert _workspace_labels(ws) == EXPECTED
    frame = ws.annotations("ferplus", columns=["id", "fer2013_label"])
    assert dict(zip(frame["id"], frame["fer2013_label"], strict=True)) == FER2013


def test_version_2_workspace_is_relabelled_on_open(manual_dir, tmp_path):
    ws = Workspace(_ingested(tmp_path, manual_dir), timeout=0)
    with duckdb.connect(str(ws.db_path)) as con:  # rewind to schema 2 by hand: FER2013's label in `label`
        con.execute("UPDATE annotations SET label = fer2013_label WHERE dataset = 'ferplus'")
        con.execute("ALTER TABLE annotations DROP COLUMN fer2013_label")
        con.execute("ALTER TABLE ingests DROP COLUMN vote_mode")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    assert _workspace_labels(ws) == EXPECTED  # a read opens it: upgraded first
    frame = ws.annotations("ferplus", columns=["id", "fer2013_label"])
    assert dict(zip(frame["id"], frame["fer2013_label"], strict=True)) == FER2013
    with ws.connect() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert con.execute("SELECT vote_mode FROM ingests").fetchone() == ("majority",)


# -- (c) the trainer -------------------------------------------------------------------


def test_trainer_rows_agree(tfds_dir):
    pytest.importorskip("tensorflow")
    from curate import readtime
    from train.config import TrainConfig
    from train.data import scan_splits
    from train.sources import TFDSSource

    config = TrainConfig(dataset="ferplus", policy="keep-all", data_dir=str(tfds_dir))
    source = TFDSSource("ferplus", data_dir=str(tfds_dir))
    scans = scan_splits(source, config)
    seen, kept = {}, set()
    for scan in scans.values():
        seen.update(zip(scan.ids.tolist(), scan.canonical.tolist(), strict=True))
        kept.update(i for i, k in zip(scan.ids.tolist(), scan.keep.tolist(), strict=True) if k)
    assert seen == EXPECTED
    assert kept == set(IDS) - LEFT_OUT  # keep-all still leaves unknown / NF out
    # The tf.data path gives the same labels to the rows it keeps.
    ds = readtime.policy_dataset(source.load("test", images=True), "ferplus", "keep-all")
    got = sorted(int(label) for _, label in ds.as_numpy_iterator())
    assert got == sorted(v for i, v in EXPECTED.items() if SPLIT[i] == "test" and i not in LEFT_OUT)


# -- (d) the review app's samples ------------------------------------------------------


def _review_labels(frame: pl.DataFrame) -> dict[str, dict[str, Any]]:
    from curate.review.documents import sample_fields

    policies = list(labels.BUILTIN_POLICIES.values())
    return {fields["source_id"]: fields for fields in sample_fields(frame, "ferplus", policies)}


def _check_review(samples: dict[str, dict[str, Any]]) -> None:
    assert {i: s["ground_truth"]["label"] for i, s in samples.items()} == {
        i: labels.CANONICAL_NAMES[v] for i, v in EXPECTED.items()
    }
    assert {i: s["fer2013_label"]["label"] for i, s in samples.items()} == {
        i: labels.CANONICAL_NAMES[v] for i, v in FER2013.items()
    }
    for row_id, sample in samples.items():
        if row_id in LEFT_OUT:  # in no policy's ground truth, listed as dropped by every one
            assert sample["gt_keep_all"] is None and sample["gt_drop_no_face"] is None
            assert sample["policy_dropped"] == list(labels.BUILTIN_POLICIES)
        else:
            assert sample["gt_keep_all"] == {"label": labels.CANONICAL_NAMES[EXPECTED[row_id]]}


def test_review_samples_from_the_manual_dir(manual_dir, tmp_path):
    from curate.review.sources import prepare_manual, source_for

    table = prepare_manual(source_for("ferplus", manual_dir=manual_dir), cache_dir=tmp_path / "cache")
    _check_review(_review_labels(table.frame))


def test_review_samples_from_the_tfds_build(tfds_dir, tmp_path):
    from curate.review.sources import prepare_tfds, source_for

    table = prepare_tfds(source_for("ferplus", data_dir=tfds_dir), cache_dir=tmp_path / "cache")
    _check_review(_review_labels(table.frame))


# -- --vote-mode on the commands ---------------------------------------------------------


def test_ingest_vote_mode(manual_dir, tmp_path):
    ws = Workspace(_ingested(tmp_path, manual_dir, "--vote-mode", "probability"), timeout=0)
    assert _workspace_labels(ws) == EXPECTED_PROBABILITY
    with ws.connect() as con:
        assert con.execute("SELECT vote_mode FROM ingests").fetchone() == ("probability",)


def test_remap_vote_mode_relabels_the_workspace(manual_dir, tmp_path):
    ws = Workspace(_ingested(tmp_path, manual_dir), timeout=0)
    w = ["-d", "ferplus", "-w", str(ws.root)]
    result = runner.invoke(app, ["remap", "--policy", "drop-8-plus", "--vote-mode", "probability", *w])
    assert result.exit_code == 0, result.output
    assert f"kept {len(ROWS) - 2} of {len(ROWS)} rows" in result.output  # only the NF row and 'unknown wins'
    assert "labels from FER+ votes (probability)" in result.output
    assert _workspace_labels(ws) == EXPECTED_PROBABILITY
    with ws.connect() as con:
        assert con.execute("SELECT vote_mode FROM ingests").fetchone() == ("probability",)
    result = runner.invoke(app, ["remap", "--policy", "drop-8-plus", "--vote-mode", "majority", *w])
    assert result.exit_code == 0, result.output
    assert _workspace_labels(ws) == EXPECTED


def test_balance_and_study_vote_mode_leave_the_workspace_unchanged(manual_dir, tmp_path):
    ws = Workspace(_ingested(tmp_path, manual_dir), timeout=0)
    json_out = tmp_path / "b.json"
    w = ["-d", "ferplus", "-w", str(ws.root)]
    result = runner.invoke(
        app, ["balance", "-p", "keep-all", "--vote-mode", "probability", "--json", str(json_out), *w]
    )
    assert result.exit_code == 0, result.output
    import json

    groups = {g["split"]: g for g in json.loads(json_out.read_text())["groups"]}
    assert groups["test"]["counts"][:2] == [1, 2] and groups["test"]["dropped"] == 0  # the tie became Happy
    assert groups["train"]["counts"][0] == 2 and groups["train"]["dropped"] == 2  # no-majority row -> Neutral
    assert _workspace_labels(ws) == EXPECTED
    result = runner.invoke(
        app,
        ["study", "remap", "--policies", "keep-all", "--vote-mode", "probability", "--no-plots"]
        + ["--out", str(tmp_path / "rep"), *w],
    )
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "rep" / "study.json").read_text())
    assert results["vote_mode"] == "probability" and results["vote_excluded"] == {"Uncertain": 1, "No-Face": 1}
    assert results["per_policy"]["keep-all"]["kept"] == {"train": 6, "validation": 4, "test": 4}
    assert "under the `probability` vote mode" in (tmp_path / "rep" / "report.md").read_text()
    assert _workspace_labels(ws) == EXPECTED


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["balance", "-d", "ferplus", "--vote-mode", "loudest"], "unknown FER+ vote mode 'loudest'"),
        (["remap", "-p", "keep-all", "-d", "ferplus", "--vote-mode", "loudest"], "unknown FER+ vote mode 'loudest'"),
        (["balance", "-d", "affectnet", "--vote-mode", "majority"], "--vote-mode applies to ferplus only"),
        (["study", "remap", "-d", "all", "--vote-mode", "majority"], "--vote-mode needs one dataset with votes"),
    ],
)
def test_vote_mode_errors_are_one_line(manual_dir, tmp_path, args, message):
    from workspace_tables import affectnet_rows, parsed

    ws = Workspace(_ingested(tmp_path, manual_dir), timeout=0)
    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="hand")
    result = runner.invoke(app, [*args, "-w", str(ws.root)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output


def test_ingest_vote_mode_refused_for_a_dataset_without_votes(tmp_path, synth_rafdb):
    result = runner.invoke(
        app, ["ingest", "rafdb", "--manual-dir", str(synth_rafdb), "--vote-mode", "majority", "-w", str(tmp_path)]
    )
    assert result.exit_code == 1 and "a vote mode applies to ferplus only" in result.output


# -- the real FER+ vote file -------------------------------------------------------------


def _real_votes_file() -> Path | None:
    import os

    repo = Path(__file__).resolve().parents[1]
    for candidate in (
        os.environ.get("FERPLUS_LABELS_CSV"),
        repo.parent / "shared" / "data" / "ferplus" / "fer2013new.csv",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def test_real_vote_file_labels_and_keep_all(tmp_path):
    real = _real_votes_file()
    if real is None:
        pytest.skip("real fer2013new.csv not found: set FERPLUS_LABELS_CSV or place it at ../shared/data/ferplus/")
    votes = pl.read_csv(real, columns=list(labels.FERPLUS_VOTE_COLUMNS)).to_numpy()
    oracle = [majority_oracle(row) for row in votes.tolist()]
    ws_dir = tmp_path / "ws"
    result = runner.invoke(app, ["ingest", "ferplus", "--votes-file", str(real), "-w", str(ws_dir)])
    assert result.exit_code == 0, result.output
    ws = Workspace(ws_dir, timeout=0)
    frame = ws.annotations("ferplus", columns=["id", "label"]).sort("id")
    assert frame["id"].to_list() == [f"fer{i:07d}" for i in range(len(oracle))]
    assert frame["label"].to_list() == oracle
    result = runner.invoke(app, ["remap", "--policy", "keep-all", "-d", "ferplus", "-w", str(ws_dir)])
    assert result.exit_code == 0, result.output
    kept = sum(label < 9 for label in oracle)
    assert kept == 31_412  # the FER+ authors' majority-mode count (docs/studies.md)
    assert f"kept {kept:,} of {len(oracle):,} rows" in result.output
