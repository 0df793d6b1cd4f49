"""curate.formats.affectnet: both layouts, checked against small independent parsers (csv, np.load)."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_synth import read_manifest
from PIL import Image

from curate.formats import affectnet
from curate.formats.schema import ANNOTATION_SCHEMA, REJECT_SCHEMA, FormatError

# Published counts (docs/datasets.md), written out here so the test does not trust the generator.
PUBLISHED_TRAIN = (74874, 134415, 25459, 14090, 6378, 3803, 24882, 3750, 33088, 11645, 82414)
COLUMNS = "face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal".split(",")
ID_PATTERN = re.compile(r"^\d+/[0-9a-f]{56}\.(jpg|JPG|jpeg|png|PNG|bmp|tif)$")
PIL_FORMAT = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tif": "TIFF"}


def independent_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) of an original-layout CSV, with the csv module."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [(i + 2, fields) for i, fields in enumerate(rows[1:]) if fields]


def scaled(count: int, scale: float) -> int:
    return max(1, round(count * scale))


# --------------------------------------------------------------------------------------
# Original layout written by the generator
# --------------------------------------------------------------------------------------


def test_original_layout_independent_parse(synth_affectnet_original):
    manifest = read_manifest(synth_affectnet_original)
    scale = manifest["scale"]
    lists = synth_affectnet_original / "Manually_Annotated_file_lists"
    counts = {}
    for split, name in (("train", "training.csv"), ("validation", "validation.csv")):
        header, rows = independent_rows(lists / name)
        assert header[0] in ("subDirectory_filePath", "#subDirectory_filePath")
        assert header[0] == manifest["header"]
        assert header[1:] == COLUMNS
        labels_seen = []
        for _, fields in rows:
            assert len(fields) == 9
            assert ID_PATTERN.match(fields[0]), fields[0]
            assert len(fields[5].split(";")) == 136
            [float(v) for v in fields[5].split(";")]
            expression = int(fields[6])
            assert 0 <= expression <= 10
            valence, arousal = float(fields[7]), float(fields[8])
            if expression in (9, 10):
                assert valence == arousal == -2
            else:
                assert -1 <= valence <= 1 and -1 <= arousal <= 1
            labels_seen.append(expression)
        counts[split] = np.bincount(labels_seen, minlength=11)
    assert counts["train"].tolist() == [scaled(c, scale) for c in PUBLISHED_TRAIN]
    assert counts["validation"].tolist() == [scaled(500, scale)] * 11  # balanced
    # class proportions of the training split follow the published ones
    published = np.array(PUBLISHED_TRAIN) / sum(PUBLISHED_TRAIN)
    assert np.abs(counts["train"] / counts["train"].sum() - published).max() < 0.01


def test_original_images_and_quirks(synth_affectnet_original):
    manifest = read_manifest(synth_affectnet_original)
    images = synth_affectnet_original / "Manually_Annotated_Images"
    missing = set(manifest["quirks"]["missing_image"]["ids"])
    truncated = set(manifest["quirks"]["truncated_image"]["ids"])
    assert len(missing) == 1 and len(truncated) == 1
    extensions = set()
    tifs = 0
    for name in ("training.csv", "validation.csv"):
        _, rows = independent_rows(synth_affectnet_original / "Manually_Annotated_file_lists" / name)
        for _, fields in rows:
            row_id = fields[0]
            path = images / row_id
            extension = row_id.rsplit(".", 1)[1]
            extensions.add(extension)
            if row_id in missing:
                assert not path.exists()
                continue
            with Image.open(path) as image:
                assert image.format == PIL_FORMAT[extension.lower()]
                if row_id in truncated:
                    with pytest.raises(OSError):
                        image.load()
                    continue
                image.load()
                width, height = image.size
            tifs += extension == "tif"
            x, y, w, h = (int(v) for v in fields[1:5])
            if w > 0 and h > 0:  # the face box lies inside a larger picture
                assert 0 <= x and 0 <= y and x + w <= width + 1 and y + h <= height + 1
                assert w < width or h < height
    assert extensions == {"jpg", "JPG", "jpeg", "png", "PNG", "bmp", "tif"}
    assert tifs == manifest["quirks"]["tif_lzw"]["count"]


def test_original_reader_round_trip(synth_affectnet_original):
    manifest = read_manifest(synth_affectnet_original)
    tables = affectnet.read(synth_affectnet_original)
    assert tables.layout == "original"
    assert list(tables.annotations.columns) == list(ANNOTATION_SCHEMA)
    assert dict(tables.annotations.schema) == ANNOTATION_SCHEMA
    assert dict(tables.rejects.schema) == REJECT_SCHEMA
    assert set(tables.files) == {
        "Manually_Annotated_file_lists/training.csv",
        "Manually_Annotated_file_lists/validation.csv",
    }
    expected = {}
    for split, name in (("train", "training.csv"), ("validation", "validation.csv")):
        _, rows = independent_rows(synth_affectnet_original / "Manually_Annotated_file_lists" / name)
        for line, fields in rows:
            expected[fields[0]] = (split, line, fields)
    assert tables.rows_in == len(expected) == sum(manifest["split_counts"].values())
    # the injected non-positive boxes are the only reader rejects, at their lines
    bad_ids = manifest["quirks"]["non_positive_box"]["ids"]
    assert tables.rejects["reason"].to_list() == ["non-positive face box"] * len(bad_ids)
    assert sorted(tables.rejects["id"].to_list()) == sorted(bad_ids)
    for row in tables.rejects.iter_rows(named=True):
        assert row["source_row"] == expected[row["id"]][1]
    assert tables.annotations.height == len(expected) - len(bad_ids)
    for row in tables.annotations.iter_rows(named=True):
        split, line, fields = expected[row["id"]]
        assert (row["split"], row["source_row"]) == (split, line)
        assert row["source_path"] == "Manually_Annotated_Images/" + fields[0]
        assert [row["face_x"], row["face_y"], row["face_width"], row["face_height"]] == [float(v) for v in fields[1:5]]
        np.testing.assert_array_equal(row["landmarks"], np.array(fields[5].split(";"), dtype=np.float32))
        assert row["label"] == row["raw_label"] == int(fields[6])
        if float(fields[7]) == -2:
            assert row["valence"] is None and row["arousal"] is None and row["va_annotated"] is False
        else:
            assert row["valence"] == pytest.approx(float(fields[7]), abs=1e-6)
            assert row["arousal"] == pytest.approx(float(fields[8]), abs=1e-6)
            assert row["va_annotated"] is True


def test_writer_round_trip(synth_affectnet_original, tmp_path):
    first = affectnet.read(synth_affectnet_original)
    affectnet.write_original(tmp_path, first.annotations, header="#subDirectory_filePath")
    second = affectnet.read(tmp_path)
    assert second.rejects.is_empty()
    columns = [c for c in ANNOTATION_SCHEMA if c != "source_row"]  # rejected lines are gone
    assert second.annotations.select(columns).equals(first.annotations.select(columns))


def test_fast_and_careful_paths_agree(synth_affectnet_original):
    data = (synth_affectnet_original / "Manually_Annotated_file_lists" / "training.csv").read_bytes()
    from curate.formats import read_lines

    fast = affectnet._typed_rows(data)
    careful = affectnet._typed_careful(read_lines(data).slice(1)).drop("_landmarks_ok")
    assert fast.equals(careful)


# --------------------------------------------------------------------------------------
# Every reject reason of the original layout, with line numbers
# --------------------------------------------------------------------------------------

LANDMARKS = ";".join(f"{v:.2f}" for v in np.linspace(10, 200, 136))


def line(row_id: str, *, box=("10", "12", "50", "60"), landmarks=LANDMARKS, expression="3", va=("0.5", "-0.25")) -> str:
    return ",".join([row_id, *box, landmarks, expression, *va])


def write_lists(root: Path, training: list[str], validation: list[str], header: str = "subDirectory_filePath") -> None:
    folder = root / "Manually_Annotated_file_lists"
    folder.mkdir(parents=True)
    head = ",".join([header, *COLUMNS])
    (folder / "training.csv").write_bytes(("\n".join([head, *training]) + "\n").encode())
    (folder / "validation.csv").write_bytes(("\n".join([head, *validation]) + "\n").encode())


def test_every_reject_reason_with_line_numbers(tmp_path):
    training = [
        line("1/a.jpg"),  # 2 kept
        "1/b.jpg,1,2,3",  # 3 too few fields
        line("1/c.jpg") + ",extra",  # 4 too many fields
        line("1/d.jpg", box=("abc", "1", "2", "3")),  # 5 unparsable number
        line("1/e.jpg", expression="11"),  # 6
        line("1/f.jpg", landmarks=LANDMARKS.rsplit(";", 1)[0]),  # 7: 135 values
        line("1/g.jpg", landmarks=LANDMARKS.replace("10.00", "x", 1)),  # 8: a value that is not a number
        line("1/h.jpg", box=("10", "12", "0", "60")),  # 9
        line("1/i.jpg", va=("1.5", "0")),  # 10
        line("1/j.jpg", va=("0", "-1.5")),  # 11
        line("1/a.jpg"),  # 12 duplicate of line 2
        "",  # 13 blank: skipped, still counted as a line
        line("1/k.jpg") + "\r",  # 14 CRLF line, kept
        line('"1/q.jpg"'),  # 15 quoted id, kept as 1/q.jpg
        line("1/s.jpg", va=("-2", "-2")),  # 16 sentinel on label 3: kept, not annotated
        line('"1/r.jpg'),  # 17 broken quoting
        line(""),  # 18 empty id
        line("1/t.jpg", box=("nan", "1", "2", "3")),  # 19 not finite
        line("1/u,v.jpg"),  # 20 a comma in the id: 10 fields
        line("1/w.jpg", box=("10", "12", "50")),  # 21 a box value missing: 8 fields
        line("1/x.jpg", va=("0.5",)),  # 22 arousal missing: 8 fields
    ]
    validation = [line("2/a.png", expression="0"), line("1/a.jpg"), line("2/b.png", expression="10", va=("-2", "-2"))]
    write_lists(tmp_path, training, validation, header="#subDirectory_filePath")
    tables = affectnet.read(tmp_path)
    rejects = {(r["split"], r["source_row"]): r["reason"] for r in tables.rejects.iter_rows(named=True)}
    assert rejects == {
        ("train", 3): "malformed row",
        ("train", 4): "malformed row",
        ("train", 5): "malformed row",
        ("train", 6): "label out of range",
        ("train", 7): "landmarks count",
        ("train", 8): "landmarks count",
        ("train", 9): "non-positive face box",
        ("train", 10): "valence out of range",
        ("train", 11): "arousal out of range",
        ("train", 12): "duplicate id",
        ("train", 17): "malformed row",
        ("train", 18): "malformed row",
        ("train", 19): "malformed row",
        ("train", 20): "malformed row",
        ("train", 21): "malformed row",
        ("train", 22): "malformed row",
        ("validation", 3): "duplicate id",
    }
    assert set(tables.rejects["reason"]) <= set(affectnet.REASONS)
    train_rejects = tables.rejects.filter(pl.col("split") == "train")
    detail = dict(zip(train_rejects["source_row"], train_rejects["detail"], strict=True))
    assert detail[3] == "4 fields, expected 9" and detail[4] == "10 fields, expected 9"
    assert (detail[20], detail[21], detail[22]) == ("10 fields, expected 9", "8 fields, expected 9", "8 fields, expected 9")
    assert detail[7] == "135 values, expected 136"
    duplicate = tables.rejects.filter(pl.col("split") == "validation").row(0, named=True)
    assert duplicate["detail"] == "first seen at Manually_Annotated_file_lists/training.csv:2"
    kept = tables.annotations
    assert kept.select("split", "source_row", "id").rows() == [
        ("train", 2, "1/a.jpg"),
        ("train", 14, "1/k.jpg"),
        ("train", 15, "1/q.jpg"),
        ("train", 16, "1/s.jpg"),
        ("validation", 2, "2/a.png"),
        ("validation", 4, "2/b.png"),
    ]
    sentinel = kept.filter(pl.col("id") == "1/s.jpg").row(0, named=True)
    assert sentinel["label"] == 3 and sentinel["valence"] is None and sentinel["va_annotated"] is False
    # invariant: every non-blank data line is an annotation or a reject
    assert tables.rows_in == len([t for t in training if t]) + len(validation) == kept.height + tables.rejects.height


def test_format_errors(tmp_path):
    with pytest.raises(FormatError, match=r"training\.csv.*train_set"):
        affectnet.read(tmp_path)
    write_lists(tmp_path / "bad", [line("1/a.jpg")], [line("1/b.jpg")], header="path")
    with pytest.raises(FormatError, match="training.csv: bad header"):
        affectnet.read(tmp_path / "bad")
    write_lists(tmp_path / "half", [line("1/a.jpg")], [])
    (tmp_path / "half" / "Manually_Annotated_file_lists" / "validation.csv").unlink()
    with pytest.raises(FormatError, match="validation.csv: missing file"):
        affectnet.read(tmp_path / "half")


# --------------------------------------------------------------------------------------
# Cropped layout
# --------------------------------------------------------------------------------------


def independent_cropped(root: Path) -> dict[str, dict[str, object]]:
    """Every id of the cropped layout, from np.load on each file."""
    out: dict[str, dict[str, object]] = {}
    for folder, split in (("train_set", "train"), ("val_set", "validation")):
        for path in sorted((root / folder / "annotations").iterdir()):
            match = re.fullmatch(r"(\d+)_(exp|val|aro|lnd)\.npy", path.name)
            assert match, path.name
            entry = out.setdefault(f"{folder}/{match.group(1)}", {"split": split})
            entry[match.group(2)] = np.load(path)
    return out


def test_cropped_layout_independent_parse(synth_affectnet_cropped):
    manifest = read_manifest(synth_affectnet_cropped)
    parsed = independent_cropped(synth_affectnet_cropped)
    assert len(parsed) == sum(manifest["split_counts"].values())
    per_split: dict[str, list[int]] = {"train": [], "validation": []}
    for key, entry in parsed.items():
        assert set(entry) == {"split", "exp", "val", "aro", "lnd"}
        assert entry["exp"].dtype.kind == "U"  # text, like the release
        label = int(entry["exp"])
        assert 0 <= label <= 7
        assert entry["lnd"].shape == (136,)
        assert -1 <= float(entry["val"]) <= 1
        per_split[entry["split"]].append(label)
        folder, number = key.split("/")
        with Image.open(synth_affectnet_cropped / folder / "images" / f"{number}.jpg") as image:
            assert image.size == (224, 224) and image.format == "JPEG"
    train_numbers = sorted(int(k.split("/")[1]) for k in parsed if k.startswith("train_set/"))
    assert train_numbers[-1] > len(train_numbers) - 1  # integer ids with gaps
    scale = manifest["scale"]
    assert np.bincount(per_split["train"], minlength=8).tolist() == [scaled(c, scale) for c in PUBLISHED_TRAIN[:8]]
    assert set(per_split["validation"]) == set(range(8))


def test_cropped_reader_round_trip(synth_affectnet_cropped):
    parsed = independent_cropped(synth_affectnet_cropped)
    tables = affectnet.read(synth_affectnet_cropped)
    assert tables.layout == "cropped"
    assert tables.rejects.is_empty()
    assert tables.rows_in == len(parsed)
    assert len(tables.files) == 4 * len(parsed)
    for row in tables.annotations.iter_rows(named=True):
        entry = parsed[row["id"]]
        assert row["split"] == entry["split"] and row["source_row"] == 0
        assert row["label"] == int(entry["exp"])
        assert row["valence"] == pytest.approx(float(entry["val"]), abs=1e-6)
        np.testing.assert_allclose(row["landmarks"], entry["lnd"], rtol=1e-6)
        assert row["face_x"] is None
        folder, number = row["id"].split("/")
        assert row["source_path"] == f"{folder}/images/{number}.jpg"
        assert row["source_file"] == f"{folder}/annotations/{number}_exp.npy"


def test_cropped_reject_reasons(synth_affectnet_cropped, tmp_path):
    root = tmp_path / "cropped"
    shutil.copytree(synth_affectnet_cropped, root)
    annotations = root / "train_set" / "annotations"
    numbers = sorted(int(p.name.split("_")[0]) for p in annotations.glob("*_exp.npy"))[:5]
    (annotations / f"{numbers[0]}_val.npy").unlink()
    (annotations / f"{numbers[1]}_lnd.npy").write_bytes(b"not a numpy file")
    np.save(annotations / f"{numbers[2]}_exp.npy", np.array("12"))
    np.save(annotations / f"{numbers[3]}_lnd.npy", np.zeros(100))
    np.save(annotations / f"{numbers[4]}_val.npy", np.array(3.0))
    shutil.copyfile(root / "train_set" / "images" / f"{numbers[0]}.jpg", root / "train_set" / "images" / "999999.jpg")
    tables = affectnet.read(root)
    reasons = {r["id"]: r["reason"] for r in tables.rejects.iter_rows(named=True)}
    assert reasons == {
        f"train_set/{numbers[0]}": "missing annotation file",
        f"train_set/{numbers[1]}": "malformed annotation",
        f"train_set/{numbers[2]}": "label out of range",
        f"train_set/{numbers[3]}": "landmarks count",
        f"train_set/{numbers[4]}": "valence out of range",
        "train_set/999999": "missing annotation file",
    }
    assert tables.rows_in == len(independent_cropped(synth_affectnet_cropped)) + 1


@pytest.mark.slow
def test_full_size_training_csv(tmp_path):
    from curate.synth.affectnet import generate_affectnet

    report = generate_affectnet(tmp_path / "full", annotations_only=True, seed=7)
    assert report.split_counts == {"train": sum(PUBLISHED_TRAIN), "validation": 5500}
    tables = affectnet.read(tmp_path / "full")
    assert tables.rows_in == sum(PUBLISHED_TRAIN) + 5500
    assert tables.rejects["reason"].to_list() == ["non-positive face box"] * 3
