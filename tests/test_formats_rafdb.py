"""curate.formats.rafdb and the RAF-DB generator, checked with a plain-Python parser."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
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
    with pytest.raises(FormatError, match="list_patition_label.txt: missing file"):
        rafdb.read(tmp_path)


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
