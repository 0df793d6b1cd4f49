"""The DuckDB workspace: ingest, rejects, locking, transactions, runs, hold-out rule."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from workspace_tables import affectnet_rows, ferplus_rows, parsed, rafdb_rows

from curate.studies.holdout import class_frequency_holdout, holdout_key, holdout_key_sql, holdout_sql, in_holdout
from curate.tfds_tables import find_tfds_dir, tfds_batch_to_frame
from curate.workspace import (
    DEFAULT_WORKSPACE,
    SCHEMA_VERSION,
    NothingIngestedError,
    Workspace,
    WorkspaceBusyError,
    WorkspaceError,
    resolve_workspace_dir,
    writing_name,
)


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws", timeout=0)


def test_ingest_stores_one_schema_and_counts(ws):
    summary = ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="hand")
    assert summary.rows == 19
    assert summary.splits == {"train": 14, "validation": 5}
    assert summary.rejects == {}
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    assert ws.ingested() == {"affectnet": 19, "rafdb": 5}
    stored = ws.annotations("affectnet")
    assert stored.schema["landmarks"] == pl.List(pl.Float32)
    assert stored.filter(pl.col("id") == "1/train003.jpg")["landmarks"][0].len() == 136
    with ws.connect() as con:
        (dtype,) = con.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'landmarks' AND column_name = 'landmarks'"
        ).fetchone()
        files = con.execute("SELECT dataset, landmarks_file, rows FROM array_files ORDER BY dataset").fetchall()
        joined = con.execute(
            "SELECT count(*), count(landmarks) FROM annotations_with_landmarks WHERE dataset = 'affectnet'"
        ).fetchone()
    assert dtype == "FLOAT[]"
    # Landmarks live in one zstd Parquet file per dataset under arrays/, joined back by id.
    assert [(d, n) for d, _, n in files] == [("affectnet", 14), ("rafdb", 5)]  # rows that have landmarks
    assert sorted(p.name for p in (ws.root / "arrays").iterdir()) == sorted(f.split("/")[1] for _, f, _ in files)
    assert pq.ParquetFile(ws.root / files[0][1]).metadata.row_group(0).column(1).compression == "ZSTD"
    assert joined == (19, 14)
    # The -2 sentinel arrived as null: never annotated, never in a mean.
    uncertain = stored.filter(pl.col("label") == 9)
    assert uncertain["valence"].null_count() == uncertain.height and not uncertain["va_annotated"].any()


def test_ingest_rejects_with_reasons_and_sentinel_nulled(ws):
    rows = affectnet_rows()[:3]
    rows.append({"id": "bad-label", "split": "train", "label": 11, "raw_label": 11})
    rows.append({"id": "bad-split", "split": "dev", "label": 1})
    rows.append({**rows[0]})  # duplicate id
    rows.append(
        {"id": "sentinel", "split": "train", "label": 0, "valence": -2.0, "arousal": -2.0, "va_annotated": True}
    )
    reader_reject = {
        "dataset": "affectnet",
        "split": "train",
        "source_file": "training.csv",
        "source_row": 7,
        "id": None,
        "reason": "malformed row",
        "detail": "8 fields, expected 9",
    }
    summary = ws.ingest(parsed("affectnet", rows, [reader_reject]), dataset="affectnet", source="hand")
    assert summary.rows == 4
    assert summary.rejects == {"duplicate id": 1, "label out of range": 1, "malformed row": 1, "unknown split": 1}
    rejects = ws.rejects("affectnet")
    assert rejects.height == 4
    assert set(rejects["detail"]) >= {"label=11", "split=dev", "8 fields, expected 9"}
    sentinel = ws.annotations("affectnet").filter(pl.col("id") == "sentinel")
    assert sentinel["valence"][0] is None and sentinel["va_annotated"][0] is False
    with ws.connect() as con:
        (mean,) = con.execute("SELECT avg(valence) FROM annotations WHERE label = 0").fetchone()
    assert mean == pytest.approx((0.0 + 0.1 - 0.1) / 3, abs=1e-6)


def test_reingest_replaces_the_dataset_only(ws):
    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="one")
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="one")
    ws.ingest(parsed("affectnet", affectnet_rows()[:4]), dataset="affectnet", source="two")
    assert ws.ingested() == {"affectnet": 4, "rafdb": 5}
    # The replaced landmark file is gone; the stored landmarks are the new ingest's.
    assert len(list((ws.root / "arrays").iterdir())) == 2
    stored = ws.annotations("affectnet", columns=["id", "landmarks"])
    assert stored.height == 4 and stored["landmarks"].null_count() == 0


def test_landmarks_follow_a_moved_workspace_and_keep_table_order(ws, tmp_path):
    rows = affectnet_rows()
    ws.ingest(parsed("affectnet", rows), dataset="affectnet", source="one")
    moved = Workspace(ws.root.rename(tmp_path / "elsewhere"))
    stored = moved.annotations("affectnet", columns=["id", "landmarks"])
    assert stored["id"].to_list() == [r["id"] for r in rows]
    assert stored["landmarks"].to_list() == [
        None if r.get("landmarks") is None else pytest.approx(r["landmarks"]) for r in rows
    ]


def test_version_1_workspace_is_upgraded_on_open(ws):
    """A workspace written before landmarks moved to arrays/ (schema 1) opens, landmarks intact."""
    import duckdb

    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="one")
    expected = ws.annotations("affectnet")
    with duckdb.connect(str(ws.db_path)) as con:  # rewind to schema 1 by hand
        con.execute("ALTER TABLE annotations ADD COLUMN landmarks FLOAT[]")
        con.execute(
            "UPDATE annotations SET landmarks = l.landmarks FROM read_parquet(?) l WHERE l.id = annotations.id",
            [str(ws.root / con.execute("SELECT landmarks_file FROM array_files").fetchone()[0])],
        )
        con.execute("DROP VIEW annotations_with_landmarks")
        con.execute("DROP VIEW landmarks")
        con.execute("DROP TABLE array_files")
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    for path in (ws.root / "arrays").iterdir():
        path.unlink()
    upgraded = ws.annotations("affectnet")  # a read opens it: upgraded first
    assert upgraded.sort("id").equals(expected.sort("id"))
    with ws.connect() as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        columns = {r[0] for r in con.execute("DESCRIBE annotations").fetchall()}
    assert "landmarks" not in columns and len(list((ws.root / "arrays").iterdir())) == 1


def test_missing_columns_and_unknown_dataset(ws):
    broken = parsed("affectnet", affectnet_rows())
    broken = type(broken)(broken.annotations.drop("landmarks", "votes"), broken.rejects, broken.files, broken.layout)
    with pytest.raises(WorkspaceError, match=r"missing column\(s\) landmarks, votes"):
        ws.ingest(broken, dataset="affectnet", source="hand")
    with pytest.raises(WorkspaceError, match="unknown dataset 'fer'; known datasets: affectnet, ferplus, rafdb"):
        ws.ingest(parsed("fer", []), dataset="fer", source="hand")


def test_failed_write_rolls_back(ws):
    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="one")
    bad = parsed("affectnet", affectnet_rows()[:2])
    bad = type(bad)(bad.annotations, bad.rejects, {"file": object()}, "test")  # fails after the DELETE/INSERT
    with pytest.raises(TypeError):
        ws.ingest(bad, dataset="affectnet", source="two")
    assert ws.ingested() == {"affectnet": 19}
    assert ws.annotations("affectnet").height == 19
    # The failed ingest's landmark file was removed; the committed one still serves.
    assert len(list((ws.root / "arrays").iterdir())) == 1
    assert ws.annotations("affectnet")["landmarks"].null_count() == 5  # the validation rows have none


def test_nothing_ingested_says_what_to_run(ws):
    with pytest.raises(NothingIngestedError, match=r"curate ingest .*curate demo"):
        with ws.connect() as con:
            ws.require_datasets(con)
    ws.register_run("r1", dataset="affectnet", policy="keep-all", path=".", metrics={})
    with ws.connect() as con:
        with pytest.raises(NothingIngestedError, match="nothing ingested"):
            ws.require_datasets(con)
        with pytest.raises(NothingIngestedError, match="dataset 'rafdb' is not ingested"):
            ws.require_datasets(con, "rafdb")
        with pytest.raises(WorkspaceError, match="unknown dataset 'nope'"):
            ws.require_datasets(con, "nope")


def test_split_check_names_available_splits(ws):
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    with ws.connect() as con:
        ws.check_split(con, "rafdb", "train")
        with pytest.raises(
            WorkspaceError, match="split 'validation' does not exist in rafdb.*available splits: train, test"
        ):
            ws.check_split(con, "rafdb", "validation")


def _hold(db_path, read_only):
    code = textwrap.dedent(
        f"""
        import duckdb, sys, time
        con = duckdb.connect({str(db_path)!r}, read_only={read_only})
        print("ready", flush=True)
        sys.stdin.readline()
        """
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_second_writer_gets_busy_error_and_readers_share(ws):
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    writer = _hold(ws.db_path, read_only=False)
    try:
        with pytest.raises(WorkspaceBusyError, match=r"workspace is busy: .* another curate process \(process \d+\)"):
            ws.register_run("r1", dataset="rafdb", policy="keep-all")
        with pytest.raises(WorkspaceBusyError):
            ws.ingested()
    finally:
        writer.communicate("\n")
    reader = _hold(ws.db_path, read_only=True)
    try:
        assert ws.ingested() == {"rafdb": 5}  # concurrent readers are fine
    finally:
        reader.communicate("\n")
    assert ws.ingested() == {"rafdb": 5}


def test_register_run_round_trip(ws):
    metrics = {"balanced": {"accuracy": 0.5}, "class_frequency": {"accuracy": 0.7}, "nan": float("nan")}
    ws.register_run(
        "run-a", dataset="affectnet", policy="merge-to-neutral", path=ws.root / "runs/run-a", metrics=metrics
    )
    ws.register_run("run-b", dataset="ferplus", policy="keep-all", vote_mode="majority", path="x", metrics={})
    ws.register_run(
        "run-a", dataset="affectnet", policy="drop-7-plus", path="y", metrics={"balanced": {"accuracy": 0.4}}
    )
    runs = {r["name"]: r for r in ws.runs()}
    assert set(runs) == {"run-a", "run-b"}
    assert runs["run-a"]["policy"] == "drop-7-plus" and runs["run-a"]["metrics"] == {"balanced": {"accuracy": 0.4}}
    assert runs["run-b"]["vote_mode"] == "majority"
    assert [r["name"] for r in ws.runs("ferplus")] == ["run-b"]
    with pytest.raises(ValueError, match="unknown FER\\+ vote mode"):
        ws.register_run("run-c", dataset="ferplus", policy="keep-all", vote_mode="mostly")
    with pytest.raises(WorkspaceError, match="unknown dataset"):
        ws.register_run("run-c", dataset="fer", policy="keep-all")


def test_studies_and_parquet_export(ws, tmp_path):
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    study_id = ws.save_study("balance", "rafdb", {"x": np.int64(3), "y": [float("inf")]}, out_dir=None)
    assert ws.study(study_id) == {"x": 3, "y": [None]}
    assert [s["kind"] for s in ws.studies()] == ["balance"]
    out = ws.export_parquet("SELECT * FROM annotations ORDER BY id", tmp_path / "a.parquet")
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 5 and meta.row_group(0).column(0).compression == "ZSTD"


def test_workspace_location(monkeypatch, tmp_path):
    monkeypatch.delenv("CURATE_WORKSPACE", raising=False)
    assert resolve_workspace_dir() == resolve_workspace_dir(None) == type(tmp_path)(DEFAULT_WORKSPACE)
    monkeypatch.setenv("CURATE_WORKSPACE", str(tmp_path / "env"))
    assert resolve_workspace_dir() == tmp_path / "env"
    assert resolve_workspace_dir(tmp_path / "arg") == tmp_path / "arg"


# -- the class-frequency hold-out ------------------------------------------------------


def test_holdout_rule_is_fixed_and_vectorised():
    ids = [f"{i % 900}/{i:056x}.jpg" for i in range(4000)]
    mask = class_frequency_holdout(ids, 0.05, 0)
    assert mask.dtype == bool and mask.shape == (4000,)
    assert mask.tolist() == [in_holdout(i, fraction=0.05, seed=0) for i in ids]
    assert 0.035 < mask.mean() < 0.065
    # Same answer from NumPy, Polars and Arrow inputs; another seed gives another hold-out.
    assert (class_frequency_holdout(np.array(ids), 0.05, 0) == mask).all()
    assert (class_frequency_holdout(pl.Series(ids), 0.05, 0) == mask).all()
    assert (class_frequency_holdout(ids, 0.05, 1) != mask).any()
    # Golden values: md5("a") = 0cc175b9...; these must never change across versions.
    assert in_holdout("a", fraction=0.5) is True and in_holdout("a", fraction=0x0CC175B9 / 2**32) is False
    assert in_holdout("a", fraction=(0x0CC175B9 + 0x9E3779B9 + 1) / 2**32, seed=1) is True
    assert in_holdout("a", fraction=(0x0CC175B9 + 0x9E3779B9) / 2**32, seed=1) is False
    assert class_frequency_holdout(["a", "b"], 1.0).all() and not class_frequency_holdout(["a", "b"], 0.0).any()
    assert class_frequency_holdout([], 0.05).shape == (0,)
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        class_frequency_holdout(ids, 1.5)
    # The SQL form gives the same rows, with and without the stored key.
    sql_ids = [*ids, "a", "é/ü.jpg", ""]
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS id", [sql_ids])
    for seed in (0, 3):
        expected = [in_holdout(i, fraction=0.05, seed=seed) for i in sql_ids]
        got = con.execute(f"SELECT {holdout_sql('id', fraction=0.05, seed=seed)} FROM t ORDER BY rowid").fetchall()
        assert [g for (g,) in got] == expected
        keyed = (
            f"SELECT {holdout_sql(key='k', fraction=0.05, seed=seed)} FROM (SELECT {holdout_key_sql('id')} AS k FROM t)"
        )
        assert [g for (g,) in con.execute(keyed).fetchall()] == expected
    assert "holdout_key" in holdout_sql(key="holdout_key", seed=2)


def test_holdout_golden_ids():
    import hashlib

    assert hashlib.md5(b"a").hexdigest().startswith("0cc175b9")  # the documented rule
    ids = ["689/" + "a" * 56 + ".jpg", "train_set/12", "fer0000001", "é/ü.jpg"]
    h = [int(hashlib.md5(i.encode()).hexdigest()[:8], 16) for i in ids]
    expected = [(x + 7 * 0x9E3779B9) % 2**32 < int(0.3 * 2**32) for x in h]
    assert class_frequency_holdout(ids, 0.3, 7).tolist() == expected


def test_stored_holdout_key_matches_the_rule(ws):
    ws.ingest(parsed("rafdb", rafdb_rows()), dataset="rafdb", source="hand")
    with ws.connect() as con:
        rows = con.execute("SELECT id, holdout_key FROM annotations ORDER BY id").fetchall()
    assert [key for _, key in rows] == [holdout_key(i) for i, _ in rows]


# -- built TFDS datasets as input ------------------------------------------------------


def test_tfds_batches_map_to_the_schema(tmp_path):
    n = 3
    batch = {
        "id": np.array([b"1/a.jpg", b"1/b.jpg", b"2/c.png"]),
        "expression": np.array([0, 7, 9]),
        "valence": np.array([0.5, -0.25, 0.0], np.float32),
        "arousal": np.array([0.1, 0.2, 0.0], np.float32),
        "va_annotated": np.array([True, True, False]),
        "source_face_box": np.arange(12, dtype=np.float32).reshape(n, 4),
        "source_landmarks": np.ones((n, 68, 2), np.float32),
        "source_path": np.array([b"Manually_Annotated_Images/1/a.jpg"] * n),
    }
    frame = tfds_batch_to_frame("affectnet", "train", batch, source="tfds")
    assert frame["label"].to_list() == [0, 7, 9]
    assert frame["valence"].to_list()[2] is None and frame["va_annotated"].to_list() == [True, True, False]
    assert frame["face_width"].to_list() == [2.0, 6.0, 10.0]
    assert frame["landmarks"][0].len() == 136
    votes = {
        "id": np.array([b"fer0000000"]),
        "votes": np.array([[1] * 10]),
        "fer2013_label": np.array([6]),
        "label": np.array([0]),
    }
    fer = tfds_batch_to_frame("ferplus", "test", votes, source="tfds")
    assert fer["votes"][0].to_list() == [1] * 10 and fer["raw_label"][0] == 6
    raf = {
        "id": np.array([b"test_0001"]),
        "rafdb_label": np.array([3]),
        "label": np.array([1]),
        "landmarks5": np.zeros((1, 5, 2)),
    }
    raf_frame = tfds_batch_to_frame("rafdb", "test", raf, source="tfds")
    assert raf_frame["raw_label"][0] == 4 and raf_frame["landmarks"][0].len() == 10
    # Version folders: the newest wins, a config narrows the search.
    for version in ("1.0.0", "1.2.0"):
        (tmp_path / "affectnet" / "crop224" / version).mkdir(parents=True)
        (tmp_path / "affectnet" / "crop224" / version / "dataset_info.json").write_text(json.dumps({}))
    assert find_tfds_dir(tmp_path, "affectnet").name == "1.2.0"
    with pytest.raises(WorkspaceError, match="no built TFDS dataset 'rafdb'"):
        find_tfds_dir(tmp_path, "rafdb")


def test_ferplus_votes_stored_as_lists(ws):
    ws.ingest(parsed("ferplus", ferplus_rows()), dataset="ferplus", source="hand")
    with ws.connect() as con:
        (votes,) = con.execute("SELECT votes FROM annotations WHERE id = 'fer0000001'").fetchone()
    assert votes == [4, 6, 0, 0, 0, 0, 0, 0, 0, 0]


def _array_names(ws) -> list[str]:
    return sorted(p.name for p in (ws.root / "arrays").iterdir())


def _committed_array_names(ws) -> list[str]:
    with ws.connect() as con:
        return sorted(f.split("/")[1] for (f,) in con.execute("SELECT landmarks_file FROM array_files").fetchall())


def test_landmark_write_failing_midway_leaves_no_file(ws, monkeypatch):
    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="one")
    committed = _array_names(ws)

    def crash(self, path, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(OSError, match="No space left"):
        ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="two")
    assert _array_names(ws) == committed == _committed_array_names(ws)
    assert ws.annotations("affectnet")["landmarks"].null_count() == 5


def test_killed_ingest_leaves_only_a_temporary_that_the_next_write_sweeps(ws):
    """A writer killed (SIGKILL) while writing the landmark file leaves it under its temporary
    name, never under a name the views could read; the next write transaction deletes it."""
    import socket

    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="one")
    committed = _array_names(ws)
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import polars as pl
        from workspace_tables import affectnet_rows, parsed
        from curate.workspace import Workspace

        original = pl.DataFrame.write_parquet

        def write_then_die(self, path, **kwargs):
            original(self, path, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        pl.DataFrame.write_parquet = write_then_die
        Workspace({str(ws.root)!r}, timeout=0).ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="killed")
        """
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    orphans = [name for name in _array_names(ws) if name not in committed]
    assert len(orphans) == 1, _array_names(ws)
    assert re.fullmatch(
        rf"landmarks-affectnet-[0-9a-f]{{12}}\.parquet\.writing-\d+@{re.escape(socket.gethostname())}\.tmp", orphans[0]
    )
    assert _committed_array_names(ws) == committed  # nothing committed names the half-written file
    # A live writer's temporary (this process's) is left alone; the dead one's is swept on the next write.
    mine = writing_name(ws.root / "arrays" / "landmarks-rafdb-000000000000.parquet")
    mine.write_bytes(b"in progress")
    ws.register_run("r1", dataset="affectnet", policy="keep-all", path=".", metrics={})
    assert _array_names(ws) == sorted([*committed, mine.name])
    mine.unlink()
    ws.ingest(parsed("affectnet", affectnet_rows()), dataset="affectnet", source="again")
    assert _array_names(ws) == _committed_array_names(ws) and len(_array_names(ws)) == 1
