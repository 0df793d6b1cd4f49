"""curate.corrections (FiftyOne-free) and the App-tags -> Parquet -> annotations round trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from review_fixtures import fo, write_affectnet  # noqa: F401

from curate import corrections as corr


def _annotations() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "dataset": ["rafdb", "rafdb", "rafdb", "affectnet"],
            "split": ["train"] * 4,
            "label": pl.Series([0, 1, 2, 3], dtype=pl.Int8),
        }
    )


def test_parse_tags() -> None:
    assert corr.parse_tag("relabel:fear") == ("relabel", 4)
    assert corr.parse_tag("relabel: No-Face") == ("relabel", 10)
    assert corr.parse_tag("relabel:no_face") == ("relabel", 10)
    assert corr.parse_tag("relabel:happiness") == ("relabel", 1)
    assert corr.parse_tag("relabel:7") == ("relabel", 7)
    assert corr.parse_tag("Exclude") == ("exclude", None)
    assert corr.parse_tag("reviewed") is None
    with pytest.raises(corr.CorrectionError, match="unknown label 'feer'"):
        corr.parse_tag("relabel:feer")


def test_corrections_from_tags_reports_all_problems() -> None:
    table = corr.corrections_from_tags(
        [
            ("a", ["relabel:fear", "reviewed"]),
            ("b", ["exclude"]),
            ("c", ["nice"]),
            ("d", ["relabel:fear", "relabel:4"]),
        ],
        dataset="rafdb",
        source="test",
    )
    assert table.select("id", "action", "new_label", "new_label_name").rows() == [
        ("a", "relabel", 4, "Fear"),
        ("b", "exclude", None, None),
        ("d", "relabel", 4, "Fear"),
    ]
    assert table.schema == pl.Schema(corr.corrections_schema())
    with pytest.raises(corr.CorrectionError) as error:
        corr.corrections_from_tags(
            [("a", ["relabel:fear", "exclude"]), ("b", ["relabel:sad", "relabel:anger"]), ("c", ["relabel:meh"])],
            dataset="rafdb",
            source="test",
        )
    message = str(error.value)
    assert "1 tag(s) with an unknown label" in message and "c: 'relabel:meh'" in message
    assert "2 sample(s) with conflicting" in message and "a (" in message and "b (" in message


def test_apply_corrections() -> None:
    annotations = _annotations()
    corrections = corr.corrections_from_tags(
        [("a", ["relabel:fear"]), ("b", ["exclude"]), ("c", ["relabel:sad"]), ("zz", ["exclude"])],
        dataset="rafdb",
        source="test",
    )
    result, changed = corr.apply_corrections(annotations, corrections)
    assert changed == 2  # a relabelled, b excluded; c already Sad, zz unknown
    assert result.columns == annotations.columns and result.schema == annotations.schema
    assert result.select("id", "label").rows() == [("a", 4), ("c", 2), ("d", 3)]
    again, changed_again = corr.apply_corrections(result, corrections)
    assert changed_again == 0 and again.equals(result)
    # Keys include the dataset: the same id in another dataset is untouched.
    other = corr.corrections_from_tags([("d", ["exclude"])], dataset="rafdb", source="test")
    assert corr.apply_corrections(annotations, other)[1] == 0


def test_validation_and_file_round_trip(tmp_path: Path) -> None:
    corrections = corr.corrections_from_tags([("a", ["relabel:anger"])], dataset="rafdb", source="test")
    path = corr.write_corrections(corrections, tmp_path / "out" / "c.parquet")
    assert corr.read_corrections(path).equals(corrections)
    duplicated = pl.concat([corrections, corrections])
    with pytest.raises(corr.CorrectionError, match="share a .dataset, id. key"):
        corr.apply_corrections(_annotations(), duplicated)
    with pytest.raises(corr.CorrectionError, match="unknown action"):
        corr.validate_corrections(corrections.with_columns(pl.lit("delete").alias("action")))
    with pytest.raises(corr.CorrectionError, match="without a canonical label"):
        corr.validate_corrections(corrections.with_columns(pl.lit(None, dtype=pl.Int8).alias("new_label")))
    with pytest.raises(corr.CorrectionError, match="lacks column"):
        corr.validate_corrections(corrections.drop("action"))
    with pytest.raises(corr.CorrectionError, match="cannot read"):
        corr.read_corrections(tmp_path / "missing.parquet")


def test_importing_corrections_does_not_import_fiftyone() -> None:
    code = "import sys, curate.corrections; assert 'fiftyone' not in sys.modules and 'polars' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_round_trip_app_tags_to_annotations(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    from curate import datasets
    from curate.review import corrections as review_corrections
    from curate.review import load as rl

    root = tmp_path / "affectnet"
    write_affectnet(root, n_train=8, n_validation=3)
    rl.load("affectnet", manual_dir=root, name="rv-corrections", cache_dir=tmp_path / "cache")
    ds = fo.load_dataset("rv-corrections")
    ids = sorted(ds.values("source_id"))
    ds.match({"source_id": ids[0]}).tag_samples("relabel:fear")  # as the App's tag button does
    ds.match({"source_id": ids[1]}).tag_samples("exclude")
    ds.match({"source_id": ids[2]}).tag_labels("relabel:surprise", label_fields="ground_truth")
    ds.match({"source_id": ids[3]}).tag_samples("reviewed")
    table, path = review_corrections.export_corrections(ds, tmp_path / "corrections.parquet")
    assert sorted(table.select("id", "action", "new_label").rows()) == sorted(
        [(ids[0], "relabel", 4), (ids[1], "exclude", None), (ids[2], "relabel", 3)]
    )
    assert set(table["dataset"]) == {"affectnet"} and set(table["source"]) == {"fiftyone:rv-corrections"}

    annotations = datasets.read("affectnet", root).annotations
    before = dict(zip(annotations["id"], annotations["label"], strict=True))
    corrected, changed = corr.apply_corrections(annotations, corr.read_corrections(path))
    after = dict(zip(corrected["id"], corrected["label"], strict=True))
    expected = int(before[ids[0]] != 4) + 1 + int(before[ids[2]] != 3)
    assert changed == expected
    assert ids[1] not in after and after[ids[0]] == 4 and after[ids[2]] == 3
    assert corrected.height == annotations.height - 1

    ds.match({"source_id": ids[4]}).tag_samples(["relabel:sad", "exclude"])
    with pytest.raises(corr.CorrectionError, match="conflicting"):
        review_corrections.export_corrections(ds, tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
