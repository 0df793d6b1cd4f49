"""The exclusion list (``curate.exclusions``): reading, validating, selecting and applying it."""

from __future__ import annotations

import hashlib

import polars as pl
import pytest
from workspace_tables import affectnet_rows, parsed

from curate import audit
from curate.exclusions import (
    COLUMNS,
    DETAIL_COLUMN,
    EXCLUDED_AS_DUPLICATE,
    ExclusionListError,
    apply_exclusions,
    duplicate_detail,
    listed_detail,
    match,
    parse_exclusion_list,
    read_exclusion_list,
)
from curate.formats.schema import REJECT_SCHEMA, append_rejects, reject_frame


def _write(path, **columns):
    pl.DataFrame(columns).write_parquet(path)
    return path


# -- reading and validating --------------------------------------------------------------


def test_read_errors_name_the_file_and_the_reason(tmp_path):
    missing = tmp_path / "missing.parquet"
    with pytest.raises(ExclusionListError, match="no such file") as caught:
        read_exclusion_list(missing)
    assert caught.value.path == str(missing) and caught.value.reason == "no such file"
    assert str(caught.value) == f"{missing}: no such file"
    assert isinstance(caught.value, ValueError)

    text = tmp_path / "list.parquet"
    text.write_text("id\nfer1\n")
    with pytest.raises(ExclusionListError, match=r"not a readable Parquet exclusion list \(") as caught:
        read_exclusion_list(text, option="--exclusions")
    assert str(caught.value).startswith(f"--exclusions {text}: ")

    no_id = _write(tmp_path / "noid.parquet", x=[1], dataset=["ferplus"])
    with pytest.raises(ExclusionListError, match=r"no 'id' column \(columns: x, dataset\)"):
        read_exclusion_list(no_id)

    nested = _write(tmp_path / "nested.parquet", id=[[1, 2]])
    with pytest.raises(ExclusionListError, match="column 'id' holds"):
        read_exclusion_list(nested)

    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    with pytest.raises(ExclusionListError, match="no such file"):
        read_exclusion_list(folder)


def test_read_keeps_the_rows_and_hashes_the_bytes(tmp_path):
    path = _write(tmp_path / "excl.parquet", dataset=["ferplus"], id=["fer1"], split=["train"], group=["ferplus:fer2"])
    listed = read_exclusion_list(str(path))
    assert listed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert listed.source == str(path) and listed.name == "excl.parquet"
    assert listed.frame.columns == list(COLUMNS)
    same = parse_exclusion_list(path.read_bytes(), source="memory", name="given")
    assert same.sha256 == listed.sha256 and same.name == "given"


# -- selecting the rows of one dataset ---------------------------------------------------


def test_for_dataset_filters_dedupes_and_details(tmp_path):
    path = _write(
        tmp_path / "excl.parquet",
        dataset=["ferplus", "affectnet", "ferplus", "ferplus", "ferplus", "ferplus"],
        id=["a", "b", None, "c", "a", "d"],
        group=["ferplus:k1", "affectnet:k", "ferplus:k2", None, "ferplus:other", ""],
    )
    listed = read_exclusion_list(path)
    rows = listed.for_dataset("ferplus")
    assert rows.columns == ["id", "detail"]
    assert rows.rows() == [
        ("a", duplicate_detail("ferplus:k1")),  # the first row of an id wins
        ("c", listed_detail("excl.parquet")),  # no group: named by the file
        ("d", listed_detail("excl.parquet")),
    ]
    assert listed.ids("ferplus") == ("a", "c", "d")
    assert listed.details("affectnet") == {"b": "duplicate of affectnet:k"}
    assert listed.ids("rafdb") == ()


def test_without_dataset_or_group_columns_every_row_counts(tmp_path):
    listed = read_exclusion_list(_write(tmp_path / "ids.parquet", id=[3, 1, 3]), name="ids list")
    assert listed.ids("rafdb") == ("3", "1")  # integer ids read as text
    assert set(listed.details("rafdb").values()) == {"listed in ids list"}


def test_the_audit_writes_what_this_module_reads(tmp_path):
    pairs = pl.DataFrame(
        {
            "id_a": ["t1"],
            "dataset_a": ["affectnet"],
            "split_a": ["train"],
            "id_b": ["v1"],
            "dataset_b": ["affectnet"],
            "split_b": ["validation"],
        }
    )
    drop = audit.exclusion_ids(pairs)
    assert drop.columns == list(COLUMNS) and audit.exclusion_ids(pairs.head(0)).columns == list(COLUMNS)
    listed = read_exclusion_list(audit.write_exclusions(drop, tmp_path / "drop.parquet"))
    assert listed.details("affectnet") == {"t1": "duplicate of affectnet:v1"}


# -- applying it ---------------------------------------------------------------------------


def test_match_splits_every_row_once_in_order():
    frame = pl.DataFrame({"id": ["x", "b", "a", "y", None], "n": [0, 1, 2, 3, 4]})
    listed = pl.DataFrame({"id": ["a", "b", "zz"], "detail": ["da", "db", "dz"]})
    kept, matched = match(frame, listed)
    assert kept.columns == frame.columns and kept["n"].to_list() == [0, 3, 4]
    assert matched["n"].to_list() == [1, 2] and matched[DETAIL_COLUMN].to_list() == ["db", "da"]
    kept, matched = match(frame, listed.head(0))
    assert kept.equals(frame) and matched.height == 0


def test_apply_moves_rows_to_rejects_without_losing_one(tmp_path):
    rows = affectnet_rows()
    tables = parsed(
        "affectnet",
        rows,
        rejects=[{"dataset": "affectnet", "split": "train", "source_file": "f.csv", "source_row": 99, "reason": "bad"}],
    )
    first, second = rows[0]["id"], rows[5]["id"]
    path = _write(
        tmp_path / "excl.parquet",
        dataset=["affectnet", "affectnet", "affectnet", "rafdb"],
        id=[second, first, "not/there.jpg", rows[1]["id"]],
        group=["affectnet:k2", "affectnet:k1", "affectnet:k3", "rafdb:x"],
    )
    updated, excluded, listed = apply_exclusions(tables, read_exclusion_list(path), "affectnet")
    assert (excluded, listed) == (2, 3)
    assert updated.rows_in == tables.rows_in
    assert updated.annotations.height == tables.annotations.height - 2
    assert updated.annotations.schema == tables.annotations.schema
    assert {first, second}.isdisjoint(updated.annotations["id"].to_list())
    assert updated.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert updated.rejects.head(1).equals(tables.rejects)  # earlier rejects first, untouched
    moved = updated.rejects.filter(pl.col("reason") == EXCLUDED_AS_DUPLICATE)
    assert moved.select("id", "detail").rows() == [
        (first, "duplicate of affectnet:k1"),
        (second, "duplicate of affectnet:k2"),
    ]
    assert moved["source_row"].to_list() == [rows[0]["source_row"], rows[5]["source_row"]]

    untouched, excluded, listed = apply_exclusions(tables, read_exclusion_list(path), "ferplus")
    assert untouched is tables and (excluded, listed) == (0, 0)


# -- the reject-frame constructor ------------------------------------------------------------


def test_reject_frame_and_append_rejects():
    rows = pl.DataFrame(
        {
            "id": ["a", "b"],
            "dataset": ["rafdb", "rafdb"],
            "split": pl.Series(["train", "test"], dtype=pl.Categorical),
            "source_file": ["f", "f"],
            "source_row": pl.Series([2, 3], dtype=pl.Int32),
            "why": ["x", None],
            "label": [1, 2],
        }
    )
    fixed = reject_frame(rows, reason="some reason")
    assert fixed.schema == pl.Schema(REJECT_SCHEMA)
    assert fixed["reason"].to_list() == ["some reason"] * 2 and fixed["detail"].to_list() == [None, None]
    per_row = reject_frame(rows.lazy(), reason=pl.col("why").fill_null("y"), detail=pl.format("label={}", "label"))
    assert per_row.collect().select("reason", "detail").rows() == [("x", "label=1"), ("y", "label=2")]
    both = append_rejects(fixed, per_row.collect().with_columns(pl.lit(1).alias("extra")))
    assert both.height == 4 and both.schema == pl.Schema(REJECT_SCHEMA)
