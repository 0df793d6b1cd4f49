"""curate.formats.ferplus and the FERPlus generator, checked with the csv module."""

from __future__ import annotations

import contextlib
import csv
import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from fixtures_synth import read_manifest

from curate import labels
from curate.formats import ferplus
from curate.formats.schema import ANNOTATION_SCHEMA, FormatError

REPO = Path(__file__).resolve().parents[1]
VOTE_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF".split(",")
USAGE_SPLIT = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
REAL_SIZES = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}


def real_vote_file() -> Path | None:
    for candidate in (
        os.environ.get("FERPLUS_LABELS_CSV"),
        REPO.parent / "shared" / "data" / "ferplus" / "fer2013new.csv",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


REAL = real_vote_file()
needs_real = pytest.mark.skipif(
    REAL is None,
    reason="real fer2013new.csv not found: set FERPLUS_LABELS_CSV or place it at ../shared/data/ferplus/ "
    "relative to the repository root",
)


@contextlib.contextmanager
def gs_in_memory(monkeypatch: pytest.MonkeyPatch):
    """``gs://`` served from fsspec's in-memory file system: no network, no local files.

    Yields ``upload(local_dir, name) -> epath.Path('gs://<bucket>/<name>')`` holding a copy
    of ``local_dir``. Readers given that path can only reach the files through
    ``etils.epath`` (a ``pathlib`` path made from it would not exist). Used by the
    ``memory_gs`` fixtures here and in test_formats_rafdb.py / test_tfds_builders.py.
    """
    import uuid

    fsspec = pytest.importorskip("fsspec")
    from etils import epath
    from etils.epath import backend as epath_backend
    from etils.epath import gpath

    memory = fsspec.filesystem("memory")

    class MemoryBackend(epath_backend._FileSystemSpecBackend):  # every gs:// call goes to `memory`
        def fs(self, path):
            return memory

    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)  # else epath sends gs:// to tf.io.gfile
    monkeypatch.setitem(gpath._PREFIX_TO_BACKEND, "gs", MemoryBackend())
    bucket = epath.Path(f"gs://fer-curate-test-{uuid.uuid4().hex[:12]}")

    def upload(local: Path, name: str):
        target = bucket / name
        for file in sorted(local.rglob("*")):
            if file.is_file():
                destination = target / file.relative_to(local).as_posix()
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(file.read_bytes())
        return target

    try:
        yield upload
    finally:
        if bucket.exists():
            bucket.rmtree()


@pytest.fixture
def memory_gs(monkeypatch):
    with gs_in_memory(monkeypatch) as upload:
        yield upload


def assert_same_tables(left, right) -> None:
    assert left.layout == right.layout and left.files == right.files
    assert left.annotations.equals(right.annotations) and left.rejects.equals(right.rejects)


def csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def test_synthetic_layout_independent_parse(synth_ferplus):
    manifest = read_manifest(synth_ferplus)
    header, pixel_rows = csv_rows(synth_ferplus / "fer2013.csv")
    assert header == ["emotion", "pixels", "Usage"]
    vote_header, vote_rows = csv_rows(synth_ferplus / "fer2013new.csv")
    assert vote_header == VOTE_HEADER
    assert len(pixel_rows) == len(vote_rows) == sum(manifest["split_counts"].values())
    usages = [row[2] for row in pixel_rows]
    # Training rows first, then PublicTest, then PrivateTest, like the release
    assert usages == sorted(usages, key=["Training", "PublicTest", "PrivateTest"].index)
    scale = manifest["scale"]
    for usage, size in REAL_SIZES.items():
        assert usages.count(usage) == max(1, round(size * scale))
    empty = 0
    for i, (pixels, votes) in enumerate(zip(pixel_rows, vote_rows, strict=True)):
        assert len(pixels) == 3 and len(votes) == 12
        assert pixels[2] == votes[0]
        values = [int(v) for v in pixels[1].split(" ")]
        assert len(values) == 2304 and min(values) >= 0 and max(values) <= 255
        assert 0 <= int(pixels[0]) <= 6
        counts = [int(v) for v in votes[2:]]
        assert sum(counts) == 10 and min(counts) >= 0
        if votes[1]:
            assert votes[1] == f"fer{i:07d}.png"
        else:
            empty += 1
            assert counts[-1] == 10  # rejected images: every vote says NF
    assert empty == manifest["quirks"]["empty_image_name"]["count"]


def test_class_mix_follows_ferplus(tmp_path):
    from curate.synth.ferplus import generate_ferplus

    generate_ferplus(tmp_path / "mix", scale=0.15, seed=9, annotations_only=True)
    _, vote_rows = csv_rows(tmp_path / "mix" / "fer2013new.csv")
    votes = np.array([[int(v) for v in row[2:]] for row in vote_rows])
    winners = labels.ferplus_vote_targets(votes, "argmax").label
    share = np.bincount(winners, minlength=11) / len(winners)
    # the real file: neutral 36%, happy 26%, surprise 12%, sad 12%, anger 9%
    assert share[0] == pytest.approx(0.36, abs=0.05)
    assert share[1] == pytest.approx(0.26, abs=0.05)
    assert share[3] == pytest.approx(0.12, abs=0.04)
    assert share[6] == pytest.approx(0.087, abs=0.03)
    majority = labels.ferplus_vote_targets(votes, "majority")
    assert 0.03 < 1 - majority.keep.mean() < 0.3  # some unknown / NF winners, as in the real file


def test_reader_round_trip(synth_ferplus):
    _, pixel_rows = csv_rows(synth_ferplus / "fer2013.csv")
    _, vote_rows = csv_rows(synth_ferplus / "fer2013new.csv")
    tables = ferplus.read(synth_ferplus, with_pixels=True)
    assert tables.layout == "fer2013+ferplus"
    assert list(tables.annotations.columns) == [*ANNOTATION_SCHEMA, "image_name", "pixels"]
    assert "pixels" not in ferplus.read(synth_ferplus).annotations.columns
    assert set(tables.files) == {"fer2013.csv", "fer2013new.csv"}
    assert tables.rejects.is_empty() and tables.rows_in == len(pixel_rows)
    for i, row in enumerate(tables.annotations.iter_rows(named=True)):
        pixels, votes = pixel_rows[i], vote_rows[i]
        assert row["id"] == f"fer{i:07d}"
        assert row["source_row"] == i + 2 and row["source_file"] == "fer2013.csv"
        assert row["split"] == USAGE_SPLIT[pixels[2]]
        assert row["raw_label"] == int(pixels[0])
        assert row["label"] == labels.FER2013_TO_CANONICAL[int(pixels[0])]
        assert row["votes"] == [int(v) for v in votes[2:]]
        assert row["image_name"] == (votes[1] or None)
        assert row["pixels"] == pixels[1]
        assert row["source_path"] is None and row["landmarks"] is None


def test_reader_on_cluster_storage(synth_ferplus, memory_gs):
    """The reader takes a gs:// ``epath.Path`` (or its text) and reads it through epath."""
    remote = memory_gs(synth_ferplus, "ferplus")
    assert str(remote).startswith("gs://") and not Path(str(remote)).exists()
    local = ferplus.read(synth_ferplus, with_pixels=True)
    assert_same_tables(ferplus.read(remote, with_pixels=True), local)
    assert_same_tables(ferplus.read(str(remote), with_pixels=True), local)
    votes = ferplus.read_votes(remote / "fer2013new.csv")
    assert_same_tables(votes, ferplus.read_votes(synth_ferplus / "fer2013new.csv"))
    with pytest.raises(FormatError, match="fer2013new.csv: missing file"):
        (remote / "fer2013new.csv").unlink()
        ferplus.read(remote)


def fer_line(emotion="3", pixels=None, usage="Training") -> str:
    pixels = pixels if pixels is not None else " ".join(["128"] * 2304)
    return f"{emotion},{pixels},{usage}"


def vote_line(usage="Training", name="fer0000000.png", votes="10,0,0,0,0,0,0,0,0,0") -> str:
    return f"{usage},{name},{votes}"


def write_pair(root: Path, fer_lines: list[str], vote_lines: list[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(fer_lines) + "\n")
    (root / "fer2013new.csv").write_text(",".join(VOTE_HEADER) + "\n" + "\n".join(vote_lines) + "\n")


def test_every_reject_reason_with_line_numbers(tmp_path):
    fer_lines = [
        fer_line(),  # 2 kept
        "3," + " ".join(["1"] * 2304),  # 3 two fields
        fer_line(emotion="x"),  # 4 unparsable emotion
        fer_line(),  # 5 votes row malformed (in fer2013new.csv)
        fer_line(usage="Bogus"),  # 6 unknown usage
        fer_line(),  # 7 usage mismatch: fer2013new.csv's Usage is not a known one
        fer_line(emotion="7"),  # 8 label out of range
        fer_line(pixels=" ".join(["1"] * 2303)),  # 9 pixel count
        fer_line(pixels=" ".join(["1"] * 2303 + ["256"])),  # 10 malformed pixels
        fer_line(pixels=" ".join(["1"] * 2303 + ["a"])),  # 11 malformed pixels
        fer_line(emotion="0", usage="PrivateTest"),  # 12 kept, empty image name
    ]
    vote_lines = [vote_line() for _ in fer_lines]
    vote_lines[3] = vote_line(votes="10,0,0,0,0,0,0,0,-1,0")
    vote_lines[4] = vote_line(usage="Bogus")
    vote_lines[5] = vote_line(usage="Validation")  # two known but different Usages: see test_fer2013_variants
    vote_lines[10] = vote_line(usage="PrivateTest", name="", votes="0,0,0,0,0,0,0,0,0,10")
    write_pair(tmp_path, fer_lines, vote_lines)
    tables = ferplus.read(tmp_path)
    got = {(r["source_file"], r["source_row"]): r["reason"] for r in tables.rejects.iter_rows(named=True)}
    assert got == {
        ("fer2013.csv", 3): "malformed row",
        ("fer2013.csv", 4): "malformed row",
        ("fer2013new.csv", 5): "malformed row",
        ("fer2013.csv", 6): "unknown usage",
        ("fer2013new.csv", 7): "usage mismatch",
        ("fer2013.csv", 8): "label out of range",
        ("fer2013.csv", 9): "pixel count",
        ("fer2013.csv", 10): "malformed pixels",
        ("fer2013.csv", 11): "malformed pixels",
    }
    assert set(tables.rejects["reason"]) <= set(ferplus.REASONS)
    assert tables.annotations.select("id", "split", "label", "image_name").rows() == [
        ("fer0000000", "train", 1, "fer0000000.png"),
        ("fer0000010", "test", 6, None),
    ]
    assert tables.rows_in == len(fer_lines)


def test_format_errors(tmp_path):
    write_pair(tmp_path / "short", [fer_line(), fer_line()], [vote_line()])
    with pytest.raises(FormatError, match="aligned row by row"):
        ferplus.read(tmp_path / "short")
    write_pair(tmp_path / "nofer", [fer_line()], [vote_line()])
    (tmp_path / "nofer" / "fer2013.csv").unlink()
    with pytest.raises(FormatError, match="fer2013.csv: missing file"):
        ferplus.read(tmp_path / "nofer")
    write_pair(tmp_path / "header", [fer_line()], [vote_line()])
    (tmp_path / "header" / "fer2013.csv").write_text("label,pixels,Usage\n" + fer_line() + "\n")
    with pytest.raises(FormatError, match="fer2013.csv: bad header"):
        ferplus.read(tmp_path / "header")


def test_pixels_to_text_matches_join():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 48, 48), dtype=np.uint8)
    images[0, 0, 0], images[0, -1, -1] = 0, 255
    text = ferplus.pixels_to_text(images).to_list()
    assert text == [" ".join(str(v) for v in image.ravel()) for image in images]


def test_votes_from_requires_all_rows(tmp_path):
    from curate.synth.ferplus import generate_ferplus

    write_pair(tmp_path / "src", [fer_line()], [vote_line()])
    with pytest.raises(ValueError, match="scale does not apply"):
        generate_ferplus(tmp_path / "out", votes_from=tmp_path / "src" / "fer2013new.csv", scale=0.5)


@needs_real
def test_read_votes_real_file():
    tables = ferplus.read_votes(REAL)
    assert tables.rows_in == 35_887 and tables.rejects.is_empty()
    assert tables.annotations["split"].value_counts().sort("split").rows() == [
        ("test", 3589),
        ("train", 28709),
        ("validation", 3589),
    ]
    assert tables.annotations["image_name"].null_count() > 0  # rejected images have no name
    assert tables.annotations["label"].null_count() == 35_887


@needs_real
def test_votes_from_real_file_aligned(tmp_path):
    """Mode (b), annotations-only (pixels from a pool): alignment and labels of every row."""
    from curate.synth.ferplus import generate_ferplus

    out = tmp_path / "real"
    report = generate_ferplus(out, votes_from=REAL, annotations_only=True, seed=1)
    assert (out / "fer2013new.csv").read_bytes() == REAL.read_bytes()
    assert report.rows == 35_887
    tables = ferplus.read(out)
    assert tables.rows_in == 35_887 and tables.rejects.is_empty()
    votes = np.stack(tables.annotations["votes"].to_list())
    winner = labels.ferplus_vote_targets(votes, "majority").label
    fer_labels = tables.annotations["label"].to_numpy()
    basic = winner <= 6
    assert (fer_labels[basic] == winner[basic]).all()  # FER2013 emotion = the vote winner
    assert re.fullmatch(r"fer\d{7}", tables.annotations["id"][0])


@needs_real
@pytest.mark.slow
def test_votes_from_real_file_with_images(tmp_path):
    from curate.synth.ferplus import generate_ferplus

    report = generate_ferplus(tmp_path / "real", votes_from=REAL, seed=2)
    assert report.images_written == 35_887
    tables = ferplus.read(tmp_path / "real")
    assert tables.rows_in == 35_887 == tables.annotations.height
    assert pl.read_csv(tmp_path / "real" / "fer2013.csv", columns=["Usage"])["Usage"].to_list() == [
        row[0] for row in csv_rows(REAL)[1]
    ]
