"""curate.formats.rafdb and the RAF-DB generator, checked with a plain-Python parser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_synth import read_manifest
from PIL import Image
from test_formats_ferplus import assert_same_tables, gs_in_memory

from curate import labels
from curate.formats import rafdb
from curate.formats.schema import ANNOTATION_SCHEMA, FormatError

PUBLISHED = {"train": (1290, 281, 717, 4772, 1982, 705, 2524), "test": (329, 74, 160, 1185, 478, 162, 680)}
LABEL_FILE = "basic/EmoLabel/list_patition_label.txt"


@pytest.fixture
def memory_gs(monkeypatch):
    """gs:// in memory (see test_formats_ferplus.gs_in_memory)."""
    with gs_in_memory(monkeypatch) as upload:
        yield upload


def numbers(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


def independent(root: Path) -> dict[str, dict[str, object]]:
    """Every listed image with its label and annotation values, in plain Python."""
    out = {}
    for line_no, line in enumerate((root / LABEL_FILE).read_text().splitlines(), start=1):
        name, label = line.split()
        match = re.fullmatch(r"(train_\d{5}|test_\d{4})\.jpg", name)
        assert match, name
        stem = match.group(1)
        annotation = root / "basic" / "Annotation"
        manual = numbers(annotation / "manual" / f"{stem}_manu_attri.txt")
        out[stem] = {
            "line": line_no,
            "label": int(label),
            "box": numbers(annotation / "boundingbox" / f"{stem}_boundingbox.txt"),
            "manual": manual,
            "auto": numbers(annotation / "auto" / f"{stem}_auto_attri.txt"),
        }
    return out


def test_layout_independent_parse(synth_rafdb):
    manifest = read_manifest(synth_rafdb)
    parsed = independent(synth_rafdb)
    per_split = {"train": [], "test": []}
    for stem, entry in parsed.items():
        per_split[stem.split("_")[0]].append(entry["label"])
        assert 1 <= entry["label"] <= 7
        assert len(entry["box"]) == 1 and len(entry["box"][0]) == 4
        assert len(entry["manual"]) == 8 and all(len(p) == 2 for p in entry["manual"][:5])
        assert all(len(v) == 1 and v[0] == int(v[0]) for v in entry["manual"][5:])
        assert len(entry["auto"]) == 37 and all(len(p) == 2 for p in entry["auto"])
        x1, y1, x2, y2 = entry["box"][0]
        with Image.open(synth_rafdb / "basic" / "Image" / "original" / f"{stem}.jpg") as original:
            width, height = original.size
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        eyes = np.array(entry["manual"][:2])
        assert (eyes[:, 0] > x1).all() and (eyes[:, 0] < x2).all()  # landmarks in original pixels
        with Image.open(synth_rafdb / "basic" / "Image" / "aligned" / f"{stem}_aligned.jpg") as aligned:
            assert aligned.size == (100, 100) and aligned.format == "JPEG"
    scale = manifest["scale"]
    for split, counts in PUBLISHED.items():
        assert np.bincount(per_split[split], minlength=8)[1:].tolist() == [max(1, round(c * scale)) for c in counts]
        stems = sorted(s for s in parsed if s.startswith(split))
        width = 5 if split == "train" else 4
        assert stems == [f"{split}_{i:0{width}d}" for i in range(1, len(stems) + 1)]


def test_reader_round_trip(synth_rafdb):
    parsed = independent(synth_rafdb)
    tables = rafdb.read(synth_rafdb)
    assert tables.layout == "basic"
    assert list(tables.annotations.columns) == [*ANNOTATION_SCHEMA, "gender", "race", "age_group", "landmarks_auto"]
    assert tables.rejects.is_empty() and tables.rows_in == len(parsed)
    assert len(tables.files) == 1 + 3 * len(parsed)
    for row in tables.annotations.iter_rows(named=True):
        entry = parsed[row["id"]]
        assert row["split"] == row["id"].split("_")[0]
        assert row["source_row"] == entry["line"] and row["source_file"] == LABEL_FILE
        assert row["source_path"] == f"basic/Image/aligned/{row['id']}_aligned.jpg"
        assert row["raw_label"] == entry["label"]
        assert row["label"] == labels.RAFDB_TO_CANONICAL[entry["label"] - 1]
        x1, y1, x2, y2 = entry["box"][0]
        assert row["face_x"] == pytest.approx(x1) and row["face_width"] == pytest.approx(x2 - x1, abs=1e-4)
        assert row["face_height"] == pytest.approx(y2 - y1, abs=1e-4)
        np.testing.assert_allclose(row["landmarks"], np.ravel(entry["manual"][:5]), rtol=1e-6)
        assert [row["gender"], row["race"], row["age_group"]] == [int(v[0]) for v in entry["manual"][5:]]
        np.testing.assert_allclose(row["landmarks_auto"], np.ravel(entry["auto"]), rtol=1e-6)


def test_every_reject_reason_with_line_numbers(synth_rafdb, tmp_path):
    root = tmp_path / "raf"
    shutil.copytree(synth_rafdb, root)
    lines = (root / LABEL_FILE).read_text().splitlines()
    stems = [line.split()[0][:-4] for line in lines]
    annotation = root / "basic" / "Annotation"
    lines[1] = "train_x.jpg 3"  # line 2: malformed name
    lines[2] = f"{stems[2]}.jpg 3 extra"  # line 3: three tokens
    lines[3] = f"{stems[3]}.jpg 8"  # line 4
    lines[4] = f"{stems[4]}.jpg 0"  # line 5
    lines[5] = lines[0]  # line 6: duplicate of line 1
    (annotation / "auto" / f"{stems[6]}_auto_attri.txt").unlink()  # line 7
    manual = annotation / "manual" / f"{stems[7]}_manu_attri.txt"
    manual.write_text("\n".join(manual.read_text().splitlines()[1:]) + "\n")  # line 8: 4 landmarks
    (annotation / "boundingbox" / f"{stems[8]}_boundingbox.txt").write_text("50 60 40 90\n")  # line 9
    lines.insert(9, "")  # a blank line 10 shifts the rest by one
    (root / LABEL_FILE).write_text("\n".join(lines) + "\n")
    tables = rafdb.read(root)
    got = {r["source_row"]: r["reason"] for r in tables.rejects.iter_rows(named=True)}
    assert got == {
        2: "malformed row",
        3: "malformed row",
        4: "label out of range",
        5: "label out of range",
        6: "duplicate id",
        7: "missing annotation file",
        8: "malformed annotation",
        9: "non-positive face box",
    }
    assert set(tables.rejects["reason"]) <= set(rafdb.REASONS)
    missing = tables.rejects.filter(tables.rejects["source_row"] == 7)["detail"][0]
    assert missing == f"basic/Annotation/auto/{stems[6]}_auto_attri.txt"
    assert tables.rows_in == len(lines) - 1
    assert tables.annotations["source_row"].to_list()[:2] == [1, 11]


def test_missing_label_file(tmp_path):
    (tmp_path / "basic" / "Image" / "aligned").mkdir(parents=True)
    with pytest.raises(FormatError, match="list_patition_label.txt: missing file"):
        rafdb.read(tmp_path)


def test_no_known_copy_names_what_was_looked_for_and_what_was_found(tmp_path):
    (tmp_path / "DATASET").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    with pytest.raises(FormatError) as error:
        rafdb.read(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert "basic/EmoLabel/list_patition_label.txt" in message and "train/<1-7>/" in message
    assert message.endswith("top-level entries found: DATASET, notes.txt")
    with pytest.raises(FormatError, match=r"top-level entries found: \(none\)$"):
        rafdb.read(tmp_path / "DATASET")


def test_reader_on_cluster_storage(synth_rafdb, memory_gs, tmp_path):
    """A gs:// ``epath.Path`` reads like the local dir, missing annotation files included."""
    manual = tmp_path / "rafdb"
    shutil.copytree(synth_rafdb, manual)
    stem = rafdb.read(manual).annotations["id"][0]
    (manual / rafdb.annotation_path("auto", stem)).unlink()
    remote = memory_gs(manual, "rafdb")
    assert str(remote).startswith("gs://") and not Path(str(remote)).exists()
    local = rafdb.read(manual)
    assert local.rejects["reason"].to_list() == ["missing annotation file"]
    assert_same_tables(rafdb.read(remote), local)
    assert_same_tables(rafdb.read(str(remote)), local)


# --------------------------------------------------------------------------------------
# The copies people hold, written by hand (tiny JPEGs, a few rows) and by the generator
# --------------------------------------------------------------------------------------

#: (stem, RAF label 1-7) of the hand-written copies.
HAND_ROWS: tuple[tuple[str, int], ...] = (
    ("train_00001", 5),
    ("train_00002", 1),
    ("train_00003", 7),
    ("train_00004", 4),
    ("test_0001", 4),
    ("test_0002", 2),
)
ORIGINAL_SIZE = (200, 160)


def tiny_jpeg(path: Path, size: tuple[int, int] = (100, 100), shade: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 2 * shade % 256, 40)).save(path, format="JPEG")


def hand_box(i: int) -> tuple[float, float, float, float]:
    """x1 y1 x2 y2 of row ``i``, in original-image pixels."""
    return (20.0 + i, 30.0, 120.0 + i, 140.0)


def write_basic_by_hand(
    root: Path, rows=HAND_ROWS, *, original: bool = True, annotations: bool = True
) -> dict[str, dict[str, object]]:
    """A ``basic`` copy written line by line; returns stem -> label, box, landmarks, attributes."""
    (root / "basic" / "EmoLabel").mkdir(parents=True)
    (root / LABEL_FILE).write_text("".join(f"{stem}.jpg {label}\n" for stem, label in rows))
    expected = {}
    for i, (stem, label) in enumerate(rows):
        tiny_jpeg(root / "basic" / "Image" / "aligned" / f"{stem}_aligned.jpg", shade=10 * i)
        if original:
            tiny_jpeg(root / "basic" / "Image" / "original" / f"{stem}.jpg", ORIGINAL_SIZE, shade=10 * i)
        x1, y1, x2, y2 = hand_box(i)
        five = [[50.0 + i, 60.0], [90.0, 60.0], [70.0, 90.0], [55.0, 110.0], [85.0, 110.0 + i]]
        attributes = [i % 3, (i + 1) % 3, i % 5]
        auto = [[30.0 + k, 40.0 + k + i] for k in range(37)]
        expected[stem] = {"label": label, "box": (x1, y1, x2, y2), "five": five, "auto": auto, "attrs": attributes}
        if annotations:
            folder = root / "basic" / "Annotation"
            for kind in ("boundingbox", "manual", "auto"):
                (folder / kind).mkdir(parents=True, exist_ok=True)
            (folder / "boundingbox" / f"{stem}_boundingbox.txt").write_text(f"{x1} {y1} {x2} {y2}\n")
            manual = "".join(f"{x} {y}\n" for x, y in five) + "".join(f"{a}\n" for a in attributes)
            (folder / "manual" / f"{stem}_manu_attri.txt").write_text(manual)
            (folder / "auto" / f"{stem}_auto_attri.txt").write_text("".join(f"{x} {y}\n" for x, y in auto))
    return expected


def write_folders_by_hand(root: Path, rows=HAND_ROWS, *, csv_lines: dict[str, list[str]] | None = None) -> None:
    """``<split>/<label>/<stem>_aligned.jpg``; ``csv_lines``: split -> lines of ``<split>_labels.csv``."""
    for i, (stem, label) in enumerate(rows):
        tiny_jpeg(root / stem.split("_")[0] / str(label) / f"{stem}_aligned.jpg", shade=10 * i)
    for split, lines in (csv_lines or {}).items():
        (root / f"{split}_labels.csv").write_text("".join(line + "\n" for line in lines))


def hand_csv(rows=HAND_ROWS, split: str = "train") -> list[str]:
    return ["image,label"] + [f"{stem}_aligned.jpg,{label}" for stem, label in rows if stem.startswith(split)]


def rows_of(tables) -> dict[str, dict[str, object]]:
    return {row["id"]: row for row in tables.annotations.iter_rows(named=True)}


def test_basic_without_originals_is_aligned_only_and_keeps_every_annotation(tmp_path):
    expected = write_basic_by_hand(tmp_path, original=False)
    tables = rafdb.read(tmp_path)
    assert tables.layout == "basic-aligned-only" == rafdb.detect_layout(tmp_path)
    assert tables.rejects.is_empty() and tables.rows_in == len(HAND_ROWS)
    for stem, row in rows_of(tables).items():
        x1, y1, x2, y2 = expected[stem]["box"]
        assert row["raw_label"] == expected[stem]["label"]
        assert row["label"] == labels.RAFDB_TO_CANONICAL[expected[stem]["label"] - 1]
        assert (row["face_x"], row["face_y"], row["face_width"], row["face_height"]) == (x1, y1, x2 - x1, y2 - y1)
        assert row["landmarks"] == pytest.approx(np.ravel(expected[stem]["five"]).tolist())
        assert row["landmarks_auto"] == pytest.approx(np.ravel(expected[stem]["auto"]).tolist())
        assert [row["gender"], row["race"], row["age_group"]] == expected[stem]["attrs"]
    # An empty original folder is no original folder; one file in it makes the copy basic.
    (tmp_path / "basic" / "Image" / "original").mkdir()
    assert rafdb.detect_layout(tmp_path) == "basic-aligned-only"
    tiny_jpeg(tmp_path / "basic" / "Image" / "original" / "train_00001.jpg", ORIGINAL_SIZE)
    assert rafdb.read(tmp_path).layout == "basic"


def test_basic_without_annotation_folder_is_labels_only(tmp_path):
    rows = (*HAND_ROWS, ("train_00009", 8), ("train_00001", 3))  # out of range, duplicate: still rejected
    write_basic_by_hand(tmp_path, rows, annotations=False)
    tables = rafdb.read(tmp_path)
    assert tables.layout == "basic-labels-only"
    assert tables.files == {LABEL_FILE: tables.files[LABEL_FILE]}  # no annotation file read
    assert {r["source_row"]: r["reason"] for r in tables.rejects.iter_rows(named=True)} == {
        7: "label out of range",
        8: "duplicate id",
    }
    assert tables.annotations.height + tables.rejects.height == len(rows)
    assert sorted(rows_of(tables)) == sorted(stem for stem, _ in HAND_ROWS)
    empty = ["face_x", "face_y", "face_width", "face_height", "landmarks", "gender", "race", "age_group"]
    assert tables.annotations.select(pl.col([*empty, "landmarks_auto"]).is_null().all()).row(0) == (True,) * 9


def test_an_annotation_folder_missing_stops_the_read(tmp_path):
    write_basic_by_hand(tmp_path)
    shutil.rmtree(tmp_path / "basic" / "Annotation" / "auto")
    with pytest.raises(FormatError, match=r"^basic/Annotation/auto/: missing folder .*remove basic/Annotation/"):
        rafdb.read(tmp_path)


def test_folder_per_label_without_csv(tmp_path):
    write_folders_by_hand(tmp_path)
    tiny_jpeg(tmp_path / "train" / "8" / "train_00005_aligned.jpg")  # label out of range
    tiny_jpeg(tmp_path / "train" / "6" / "train_00001_aligned.jpg")  # also in train/5/: duplicate
    tiny_jpeg(tmp_path / "train" / "3" / "test_0007_aligned.jpg")  # a test image under train/
    tiny_jpeg(tmp_path / "train" / "3" / "photo.png")
    tiny_jpeg(tmp_path / "test" / "test_0003_aligned.jpg")  # no label folder
    (tmp_path / "test" / "4" / ".DS_Store").write_text("not a row")
    (tmp_path / "train" / ".hidden").mkdir()
    tables = rafdb.read(tmp_path)
    assert tables.layout == "folder-per-label"
    assert sorted(tables.files) == ["test/", "train/"]
    got = {r["source_file"]: (r["split"], r["reason"]) for r in tables.rejects.iter_rows(named=True)}
    assert got == {
        "train/8/train_00005_aligned.jpg": ("train", "label out of range"),
        "train/6/train_00001_aligned.jpg": ("train", "duplicate id"),
        "train/3/test_0007_aligned.jpg": ("train", "wrong split"),
        "train/3/photo.png": ("train", "malformed file name"),
        "test/test_0003_aligned.jpg": ("test", "not in a label folder"),
    }
    assert set(tables.rejects["reason"]) <= set(rafdb.REASONS)
    assert tables.rejects.filter(pl.col("reason") == "duplicate id")["detail"][0] == (
        "also at train/5/train_00001_aligned.jpg"
    )
    rows = rows_of(tables)
    assert {stem: row["raw_label"] for stem, row in rows.items()} == dict(HAND_ROWS)
    for stem, row in rows.items():
        split = stem.split("_")[0]
        assert row["split"] == split and row["label"] == labels.RAFDB_TO_CANONICAL[row["raw_label"] - 1]
        assert row["source_path"] == row["source_file"] == f"{split}/{row['raw_label']}/{stem}_aligned.jpg"
        assert row["source_row"] == 0 and row["face_x"] is None and row["landmarks"] is None
    assert tables.rows_in == len(HAND_ROWS) + 5


def test_folder_per_label_with_csv_counts_both_kinds_of_orphans(tmp_path):
    train_csv = hand_csv()
    train_csv.insert(2, "train_00001_aligned.jpg,5")  # line 3: listed again
    train_csv.append("train_00042_aligned.jpg,3")  # line 7: no such image
    train_csv.append("train_00043_aligned.jpg,nine")  # line 8
    train_csv.append("train_00044_aligned.jpg,0")  # line 9
    train_csv.append("test_0001.jpg,4")  # line 10: a test image in the train list
    test_csv = ["Image, Label"] + [line.replace("_aligned", "") for line in hand_csv(split="test")[1:]]  # basic names
    write_folders_by_hand(tmp_path, csv_lines={"train": train_csv, "test": test_csv})
    tiny_jpeg(tmp_path / "train" / "2" / "train_00050_aligned.jpg")  # in no CSV row
    tables = rafdb.read(tmp_path)
    assert tables.layout == "folder-per-label"
    assert sorted(tables.files) == ["test/", "test_labels.csv", "train/", "train_labels.csv"]
    got = {(r["source_file"], r["source_row"]): r["reason"] for r in tables.rejects.iter_rows(named=True)}
    assert got == {
        ("train_labels.csv", 3): "duplicate id",
        ("train_labels.csv", 7): "missing image file",
        ("train_labels.csv", 8): "malformed row",
        ("train_labels.csv", 9): "label out of range",
        ("train_labels.csv", 10): "wrong split",
        ("train/2/train_00050_aligned.jpg", 0): "not in label list",
    }
    rows = rows_of(tables)
    assert {stem: row["raw_label"] for stem, row in rows.items()} == dict(HAND_ROWS)
    assert rows["train_00001"]["source_file"] == "train_labels.csv" and rows["train_00001"]["source_row"] == 2
    assert rows["train_00004"]["source_row"] == 6 and rows["test_0002"]["source_row"] == 3
    assert rows["test_0002"]["source_path"] == "test/2/test_0002_aligned.jpg"
    per_split = tables.rejects.group_by("split").len().sort("split").rows()
    assert per_split == [("train", 6)]
    assert tables.rows_in == len(HAND_ROWS) + 6


def test_folder_per_label_csv_and_folder_disagree(tmp_path):
    csv = hand_csv()
    csv[3] = "train_00003_aligned.jpg,2"  # the image lies in train/7/
    csv[4] = "train_00004_aligned.jpg,1"  # and this one in train/4/
    write_folders_by_hand(tmp_path, csv_lines={"train": csv})
    with pytest.raises(FormatError) as error:
        rafdb.read(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "train_labels.csv:4: train_00003_aligned.jpg has label 2 in the CSV but lies in "
        "train/7/train_00003_aligned.jpg (label folder 7) (1 more such rows)"
    )


def test_folder_per_label_bad_csv_header(tmp_path):
    write_folders_by_hand(tmp_path, csv_lines={"test": ["file,emotion", "test_0001_aligned.jpg,4"]})
    with pytest.raises(FormatError, match=r"^test_labels.csv:1: bad header 'file,emotion'; expected image,label$"):
        rafdb.read(tmp_path)


@pytest.mark.parametrize("layout", ["basic-aligned-only", "basic-labels-only", "folder-per-label"])
def test_generator_layouts_hold_the_same_rows(layout, tmp_path):
    from curate.synth.rafdb import generate_rafdb

    generate_rafdb(tmp_path / "basic", scale=0.002, seed=7, workers=1)
    report = generate_rafdb(tmp_path / layout, scale=0.002, seed=7, workers=1, layout=layout)
    assert report.layout == layout
    basic, other = rafdb.read(tmp_path / "basic"), rafdb.read(tmp_path / layout)
    assert basic.layout == "basic" and other.layout == layout and other.rejects.is_empty()
    columns = ["id", "split", "raw_label", "label"]
    annotation_columns = ["face_x", "face_y", "face_width", "face_height", "landmarks", *rafdb.EXTRA_COLUMNS]
    if layout == "basic-aligned-only":
        columns += annotation_columns
    else:
        assert other.annotations.select(pl.col(annotation_columns).is_null().all()).row(0) == (True,) * 9
    assert other.annotations.select(columns).sort("id").equals(basic.annotations.select(columns).sort("id"))
    for row in other.annotations.iter_rows(named=True):
        with Image.open(tmp_path / layout / row["source_path"]) as image:
            assert image.size == (100, 100)
    assert not (tmp_path / layout / "basic" / "Image" / "original").exists()
    assert (tmp_path / layout / "basic" / "Annotation").exists() == (layout == "basic-aligned-only")
    if layout == "folder-per-label":
        assert report.manifest_path.exists()
        assert not (tmp_path / layout / "basic").exists()
        assert (tmp_path / layout / "train_labels.csv").read_text().startswith("image,label\ntrain_")


def test_cli_synth_writes_a_folder_per_label_copy(tmp_path):
    from typer.testing import CliRunner

    from curate.cli import app

    runner = CliRunner()
    out = tmp_path / "raf"
    args = ["synth", "rafdb", "--out", str(out), "--layout", "folder-per-label", "--scale", "0.002", "--workers", "1"]
    result = runner.invoke(app, [*args, "--no-labels-csv"])
    assert result.exit_code == 0, result.output
    assert "rafdb (folder-per-label)" in result.output
    tables = rafdb.read(out)
    assert tables.layout == "folder-per-label" and sorted(tables.files) == ["test/", "train/"]
    assert (
        tables.rejects.is_empty()
        and tables.rows_in == read_manifest(out)["split_counts"]["train"] + (read_manifest(out)["split_counts"]["test"])
    )
    bad = runner.invoke(app, ["synth", "rafdb", "--out", str(tmp_path / "b"), "--layout", "kaggle"])
    assert bad.exit_code == 1 and "unknown RAF-DB layout 'kaggle'" in bad.output
    assert "basic-aligned-only" in bad.output
