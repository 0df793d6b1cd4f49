"""The dataset registry: the built-in specs, and a dataset registered from the tests alone.

``toyfaces`` below is a whole dataset defined in this file -- its reader (``read``, a CSV
of ``id,split,code``), its raw -> canonical map and its TFDS adapter -- registered with
``curate.datasets.register``. It then goes through ``curate ingest`` -> ``curate remap``
-> ``curate study remap`` with no change to library code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from curate import datasets, labels
from curate.cli import app
from curate.formats import concat_rejects, finish_annotations
from curate.formats.schema import REJECT_SCHEMA, ParsedTables
from curate.tfds_tables import tfds_batch_to_frame
from curate.workspace import Workspace

runner = CliRunner()

# Raw code -> canonical: 0 Neutral, 1 Happy, 2 Sad, 3 Contempt (a label that policies drop or merge).
TOY_TO_CANONICAL = {0: 0, 1: 1, 2: 2, 3: 7}


def read(manual_dir, **_options) -> ParsedTables:
    """The toyfaces reader: ``labels.csv`` with ``id,split,code``; unknown codes are rejected."""
    relative = "labels.csv"
    raw = pl.read_csv(Path(manual_dir) / relative, schema_overrides={"id": pl.String, "split": pl.String})
    rows = raw.with_row_index("source_row", offset=2).with_columns(
        pl.lit("toyfaces").alias("dataset"), pl.lit(relative).alias("source_file")
    )
    known = pl.col("code").is_in(list(TOY_TO_CANONICAL))
    kept = rows.filter(known).with_columns(
        pl.col("code").alias("raw_label"),
        pl.col("code").replace_strict(TOY_TO_CANONICAL, return_dtype=pl.Int8).alias("label"),
    )
    rejects = rows.filter(~known).select(
        "dataset", "split", "source_file", pl.col("source_row").cast(pl.Int64), "id",
        pl.lit("label out of range").alias("reason"), pl.col("code").cast(pl.String).alias("detail"),
    ).cast(REJECT_SCHEMA)  # fmt: skip
    return ParsedTables(finish_annotations(kept), concat_rejects([rejects]), {relative: "-"}, "toy")


def _toy_columns(batch, n):
    codes = np.asarray(batch["code"], dtype=np.int64)
    return {
        "raw_label": pl.Series("raw_label", codes).cast(pl.Int16),
        "label": pl.Series("label", [TOY_TO_CANONICAL[c] for c in codes.tolist()]).cast(pl.Int8),
    }


@pytest.fixture
def toyfaces():
    spec = datasets.register(
        datasets.DatasetSpec(
            name="toyfaces",
            reader=__name__,
            raw_to_canonical=TOY_TO_CANONICAL,
            label_feature="label",
            splits=("train", "test"),
            train_split="train",
            balanced_view_split="test",
            test_split="test",
            tfds_columns=_toy_columns,
            default_policy="drop-7-plus",
        )
    )
    yield spec
    datasets.unregister("toyfaces")


def test_built_in_specs_agree_with_the_taxonomy():
    assert datasets.names() == ("affectnet", "ferplus", "rafdb")
    assert datasets.to_canonical("ferplus", range(7)).tolist() == list(labels.FER2013_TO_CANONICAL)
    assert datasets.to_canonical("rafdb", [0, 1, 7, 8]).tolist() == [-1, 3, 0, -1]
    assert datasets.to_canonical("affectnet", range(11)).tolist() == list(range(11))
    assert [datasets.get(n).votes for n in datasets.names()] == [False, True, False]
    assert [datasets.get(n).aligns_by_eyes for n in datasets.names()] == [True, False, False]
    assert [datasets.get(n).balanced_view_is_test for n in datasets.names()] == [False, False, True]
    with pytest.raises(datasets.UnknownDatasetError, match="unknown dataset 'imagenet'; known datasets: affectnet"):
        datasets.get("imagenet")


def test_a_spec_must_name_its_own_splits():
    with pytest.raises(ValueError, match="split 'validation' is not one of"):
        datasets.DatasetSpec(
            name="bad", reader=__name__, raw_to_canonical={0: 0}, label_feature="label", splits=("train",),
            train_split="train", balanced_view_split="validation", test_split=None,
            tfds_columns=_toy_columns, default_policy="keep-all",
        )  # fmt: skip
    with pytest.raises(ValueError, match="already registered"):
        datasets.register(datasets.get("rafdb"))


def test_tfds_batch_goes_through_the_registry_adapter(toyfaces):
    frame = tfds_batch_to_frame("toyfaces", "train", {"id": np.array([b"a", b"b"]), "code": np.array([3, 1])}, source="x")
    assert frame.select("id", "dataset", "raw_label", "label").rows() == [("a", "toyfaces", 3, 7), ("b", "toyfaces", 1, 1)]


def test_a_dataset_registered_by_the_tests_goes_through_ingest_remap_and_study(toyfaces, tmp_path):
    manual = tmp_path / "toyfaces"
    manual.mkdir()
    rng = np.random.default_rng(0)
    lines = ["id,split,code"]
    for i in range(240):
        lines.append(f"t{i:03d},{'train' if i < 180 else 'test'},{int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))}")
    lines.append("bad,train,9")  # one row the reader rejects: it must be counted, not lost
    (manual / "labels.csv").write_text("\n".join(lines) + "\n")
    ws = tmp_path / "ws"

    result = runner.invoke(app, ["ingest", "toyfaces", "--manual-dir", str(manual), "-w", str(ws)])
    assert result.exit_code == 0, result.output
    with Workspace(ws).connect() as con:
        counts = dict(con.execute("SELECT split::VARCHAR, count(*) FROM annotations GROUP BY 1").fetchall())
        (rejected,) = con.execute("SELECT count(*) FROM rejects WHERE dataset = 'toyfaces'").fetchone()
    assert counts == {"train": 180, "test": 60} and rejected == 1

    result = runner.invoke(app, ["remap", "--policy", "merge-to-neutral", "-d", "toyfaces", "-w", str(ws)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "study"
    result = runner.invoke(
        app, ["study", "remap", "-d", "toyfaces", "--policies", "drop-7-plus,merge-to-neutral",
              "--out", str(out), "--no-plots", "-w", str(ws)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    study = json.loads((out / "study.json").read_text())
    assert "toyfaces" in json.dumps(study)
    assert (out / "report.md").is_file()


def test_a_workspace_made_before_a_dataset_was_registered_takes_it(tmp_path):
    ws = Workspace(tmp_path / "ws", timeout=0)
    with ws.connect(write=True):
        pass  # the schema now exists with the built-in datasets only
    datasets.register(
        datasets.DatasetSpec(
            name="late", reader=__name__, raw_to_canonical=TOY_TO_CANONICAL, label_feature="label",
            splits=("train", "test"), train_split="train", balanced_view_split="test", test_split="test",
            tfds_columns=_toy_columns, default_policy="keep-all",
        )
    )  # fmt: skip
    try:
        parsed = ParsedTables(
            finish_annotations(pl.DataFrame({"id": ["x"], "dataset": ["late"], "split": ["train"], "label": [1]})),
            pl.DataFrame(schema=REJECT_SCHEMA), {}, "toy",
        )  # fmt: skip
        ws.ingest(parsed, dataset="late", source="hand")
        with ws.connect() as con:
            rows = con.execute("SELECT dataset::VARCHAR, id FROM annotations ORDER BY 1").fetchall()
        assert rows == [("late", "x")]
    finally:
        datasets.unregister("late")
