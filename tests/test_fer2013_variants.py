"""The FER2013 copies people hold, read by curate.formats.ferplus into one schema.

Every copy here is a small file written by the test as CSV text (no generator in between):
``fer2013.csv``, Kaggle's ``icml_face_data.csv`` (``emotion, Usage, pixels``) and Kaggle's
``train.csv`` + ``test.csv`` pair (splits by position; ``test.csv`` with or without
``emotion``). Each must give the annotations of the equivalent ``fer2013.csv`` (ids,
splits, votes, pixels, labels), the same rejects with the same reasons, and
``rows_in == examples + rejects`` per split; a copy not aligned with ``fer2013new.csv``
(row count, Usage, a shift by one row, a missing header) is refused with one line.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from test_formats_ferplus import REAL, needs_real  # noqa: E402  (the real vote file, one lookup)

from curate import labels
from curate.formats import ferplus
from curate.formats.schema import FormatError

VOTE_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
SPLIT_OF = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
COPY_NAMES = ("fer2013", "icml_face_data", "kaggle-train-test", "kaggle-train-test-labelled")
REPO = Path(__file__).resolve().parents[1]


#: Annotation columns a copy must reproduce exactly (source_file / source_row name its own files).
SAME_COLUMNS = ["id", "dataset", "split", "raw_label", "label", "votes", "image_name", "pixels"]


def pixel_text(row: int) -> str:
    """2,304 values, different for every row (so a shifted pixel column would show)."""
    return " ".join(str((row * 31 + k) % 256) for k in range(2304))


def make_rows(n_train: int = 6, n_half: int = 3) -> list[dict[str, Any]]:
    """FER2013-like rows in release order: Training, then PublicTest, then PrivateTest."""
    usages = ["Training"] * n_train + ["PublicTest"] * n_half + ["PrivateTest"] * n_half
    rows = []
    for i, usage in enumerate(usages):
        votes = [0] * 10
        votes[i % 8] = 6 + i % 3
        votes[(i + 3) % 8] += 10 - votes[i % 8]
        rows.append(
            {
                "emotion": str(i % 7),
                "pixels": pixel_text(i),
                "usage": usage,
                "name": "" if i == 4 else f"fer{i:07d}.png",  # one image the FER+ annotators rejected
                "votes": ",".join(map(str, votes)),
                "votes_usage": usage,
            }
        )
    return rows


def write_votes(root: Path, rows: list[dict[str, Any]]) -> None:
    lines = [f"{r['votes_usage']},{r['name']},{r['votes']}" for r in rows]
    (root / "fer2013new.csv").write_text(VOTE_HEADER + "\n" + "\n".join(lines) + "\n")


def write_copy(
    root: Path,
    copy: str,
    rows: list[dict[str, Any]],
    *,
    votes: bool = True,
    header: str | None = None,
    quote_pixels: bool = False,
) -> Path:
    """Write ``rows`` as the FER2013 copy ``copy`` (and ``fer2013new.csv``) into ``root``.

    A row may carry ``"line"`` (the whole data line, verbatim) or ``"extra"`` (text appended
    to the line: a wrong field count) to inject defects the same way into every copy.
    """
    root.mkdir(parents=True, exist_ok=True)

    def line(row: dict[str, Any], fields: list[str]) -> str:
        if "line" in row:
            return row["line"]
        pixels = f'"{row["pixels"]}"' if quote_pixels else row["pixels"]
        values = {"emotion": row["emotion"], "pixels": pixels, "Usage": row["usage"]}
        return ",".join(values[f] for f in fields) + row.get("extra", "")

    def write(name: str, default_header: str, fields: list[str], part: list[dict[str, Any]]) -> None:
        text = (header or default_header) + "\n" + "".join(line(r, fields) + "\n" for r in part)
        (root / name).write_text(text)

    if copy == "fer2013":
        write("fer2013.csv", "emotion,pixels,Usage", ["emotion", "pixels", "Usage"], rows)
    elif copy == "icml_face_data":
        write("icml_face_data.csv", "emotion, Usage, pixels", ["emotion", "Usage", "pixels"], rows)
    else:
        n_train = sum(r["usage"] == "Training" for r in rows)
        write("train.csv", "emotion,pixels", ["emotion", "pixels"], rows[:n_train])
        test_fields = ["emotion", "pixels"] if copy == "kaggle-train-test-labelled" else ["pixels"]
        test_header = ",".join(test_fields) if header is None else header
        (root / "test.csv").write_text(
            test_header + "\n" + "".join(line(r, test_fields) + "\n" for r in rows[n_train:])
        )
    if votes:
        write_votes(root, rows)
    return root


def layout_of(copy: str) -> str:
    return ("kaggle-train-test" if copy.startswith("kaggle") else copy) + "+ferplus"


def has_test_labels(copy: str) -> bool:
    return copy != "kaggle-train-test"


def rows_per_split(rows: list[dict[str, Any]]) -> Counter:
    return Counter(SPLIT_OF[r["usage"]] for r in rows)


def assert_accounting(tables, rows: list[dict[str, Any]]) -> None:
    """rows_in == examples + rejects for every split, each split as written."""
    examples = Counter(tables.annotations["split"].to_list())
    rejects = Counter(tables.rejects["split"].to_list())
    expected = rows_per_split(rows)
    for split in ("train", "validation", "test"):
        assert examples[split] + rejects[split] == expected[split], split
    assert tables.rows_in == len(rows)
    assert None not in rejects  # every reject knows its split


def comparable(tables, *, test_labels: bool = True) -> pl.DataFrame:
    frame = tables.annotations.select(SAME_COLUMNS)
    if not test_labels:
        frame = frame.with_columns(
            *(
                pl.when(pl.col("split") == "train").then(pl.col(c)).alias(c)
                for c in ("raw_label", "label")  # what test.csv without emotion cannot give
            )
        )
    return frame


# --------------------------------------------------------------------------------------
# Each copy gives the annotations of fer2013.csv
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("copy", COPY_NAMES)
@pytest.mark.parametrize("quote_pixels", [False, True])
def test_copy_reads_like_fer2013(tmp_path, copy, quote_pixels):
    rows = make_rows()
    reference = ferplus.read(write_copy(tmp_path / "reference", "fer2013", rows), with_pixels=True)
    tables = ferplus.read(write_copy(tmp_path / copy, copy, rows, quote_pixels=quote_pixels), with_pixels=True)
    assert tables.layout == layout_of(copy)
    assert tables.rejects.is_empty() and reference.rejects.is_empty()
    assert_accounting(tables, rows)
    # ids, splits, votes, pixels, labels, image names: those of fer2013.csv, row for row
    assert comparable(tables).equals(comparable(reference, test_labels=has_test_labels(copy)))
    assert tables.annotations["id"].to_list() == [f"fer{i:07d}" for i in range(len(rows))]
    assert tables.annotations["pixels"].to_list() == [pixel_text(i) for i in range(len(rows))]
    assert tables.annotations["votes"].to_list() == [[int(v) for v in r["votes"].split(",")] for r in rows]
    assert tables.annotations["image_name"].null_count() == 1
    assert set(tables.files) == {*next(c for c in ferplus.COPIES if c.layout == tables.layout).files, "fer2013new.csv"}
    # source_file / source_row: the copy's own file and line (header = line 1)
    where = tables.annotations.select("source_file", "source_row").rows()
    if copy.startswith("kaggle"):
        assert where == [("train.csv", i + 2) for i in range(6)] + [("test.csv", i + 2) for i in range(6)]
    else:
        assert where == [(f"{copy}.csv", i + 2) for i in range(len(rows))]


@pytest.mark.parametrize("copy", ["kaggle-train-test", "kaggle-train-test-labelled"])
def test_kaggle_test_csv_with_and_without_emotion(tmp_path, copy):
    """test.csv as shipped (``pixels``) or labelled (``emotion,pixels``): split by position, labels null or kept."""
    rows = make_rows(n_train=4, n_half=4)
    tables = ferplus.read(write_copy(tmp_path, copy, rows))
    annotations = tables.annotations
    assert (tmp_path / "test.csv").read_text().splitlines()[0] == (
        "pixels" if copy == "kaggle-train-test" else "emotion,pixels"
    )
    assert annotations["split"].to_list() == ["train"] * 4 + ["validation"] * 4 + ["test"] * 4
    test_rows = annotations.filter(pl.col("source_file") == "test.csv")
    if copy == "kaggle-train-test":
        # no FER2013 label: null, not a reject (the FER+ votes label these rows)
        assert test_rows["raw_label"].null_count() == test_rows["label"].null_count() == 8
        assert tables.rejects.is_empty()
    else:
        assert test_rows["raw_label"].to_list() == [int(r["emotion"]) for r in rows[4:]]
        assert test_rows["label"].to_list() == [labels.FER2013_TO_CANONICAL[int(r["emotion"])] for r in rows[4:]]
    train_rows = annotations.filter(pl.col("split") == "train")
    assert train_rows["raw_label"].to_list() == [int(r["emotion"]) for r in rows[:4]]
    assert_accounting(tables, rows)


@pytest.mark.parametrize(
    ("copy", "header"),
    [
        ("fer2013", "emotion, pixels, Usage"),
        ("fer2013", ' "emotion" , "pixels" , "Usage" '),
        ("icml_face_data", "emotion,Usage,pixels"),
        ("icml_face_data", "emotion, Usage, pixels"),
        ("icml_face_data", "emotion,  Usage,\tpixels"),
    ],
)
def test_header_with_spaces(tmp_path, copy, header):
    rows = make_rows()
    tables = ferplus.read(write_copy(tmp_path, copy, rows, header=header))
    assert tables.layout == layout_of(copy) and tables.rejects.is_empty()
    assert_accounting(tables, rows)


def test_icml_data_fields_with_blanks_after_commas(tmp_path):
    """``0, Training, 1 2 3`` (blanks after the commas in the data rows too) reads like ``0,Training,1 2 3``."""
    rows = make_rows()
    for r in rows:
        r["line"] = f"{r['emotion']}, {r['usage']}, {r['pixels']}"
    tables = ferplus.read(write_copy(tmp_path / "icml", "icml_face_data", rows), with_pixels=True)
    reference = ferplus.read(write_copy(tmp_path / "fer", "fer2013", make_rows()), with_pixels=True)
    assert tables.rejects.is_empty()
    assert comparable(tables).equals(comparable(reference))


# --------------------------------------------------------------------------------------
# Same rejects, same reasons, every copy
# --------------------------------------------------------------------------------------


def defective_rows() -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    """12 rows with one defect each where every copy can hold it; id -> (reason, file holding it)."""
    rows = make_rows()
    expected: dict[str, tuple[str, str]] = {}

    def defect(i: int, reason: str, where: str, **change: Any) -> None:
        rows[i].update(change)
        expected[f"fer{i:07d}"] = (reason, where)

    defect(1, "malformed row", "copy", extra=",surplus")  # one field too many
    defect(2, "malformed row", "fer2013new.csv", votes="1,0,0,0,0,0,0,0,0,-1")
    defect(3, "usage mismatch", "fer2013new.csv", votes_usage="Validation")
    defect(6, "pixel count", "copy", pixels=" ".join(["7"] * 2303))
    defect(8, "malformed pixels", "copy", pixels=" ".join(["7"] * 2303 + ["256"]))
    defect(10, "malformed pixels", "copy", pixels=" ".join(["7"] * 2303 + ["x"]))
    defect(11, "pixel count", "copy", pixels=" ".join(["7"] * 2305))
    return rows, expected


def copy_file_of(copy: str, row_index: int, n_train: int = 6) -> tuple[str, int]:
    if copy.startswith("kaggle"):
        return ("train.csv", row_index + 2) if row_index < n_train else ("test.csv", row_index - n_train + 2)
    return (f"{copy}.csv", row_index + 2)


@pytest.mark.parametrize("copy", COPY_NAMES)
def test_same_rejects_and_reasons_in_every_copy(tmp_path, copy):
    rows, expected = defective_rows()
    tables = ferplus.read(write_copy(tmp_path, copy, rows), with_pixels=True)
    got = {r["id"]: (r["reason"], r["source_file"], r["source_row"]) for r in tables.rejects.iter_rows(named=True)}
    want = {}
    for key, (reason, where) in expected.items():
        row_index = int(key[3:])
        source = ("fer2013new.csv", row_index + 2) if where == "fer2013new.csv" else copy_file_of(copy, row_index)
        want[key] = (reason, *source)
    assert got == want
    assert set(tables.rejects["reason"]) <= set(ferplus.REASONS)
    assert_accounting(tables, rows)
    assert (
        tables.rejects.filter(pl.col("id") == "fer0000003")["detail"]
        .item()
        .endswith("has Training, fer2013new.csv has Validation")
    )
    # the rows kept are the rows kept from fer2013.csv, with the same annotations
    reference = ferplus.read(write_copy(tmp_path / "reference", "fer2013", rows), with_pixels=True)
    assert comparable(tables).equals(comparable(reference, test_labels=has_test_labels(copy)))
    assert sorted(tables.rejects.select("id", "split", "reason").rows()) == sorted(
        reference.rejects.select("id", "split", "reason").rows()
    )


@pytest.mark.parametrize("copy", ["fer2013", "icml_face_data", "kaggle-train-test-labelled"])
def test_label_rejects_where_the_copy_has_labels(tmp_path, copy):
    rows = make_rows()
    rows[0]["emotion"] = "7"  # label out of range
    rows[9]["emotion"] = "sad"  # malformed row (unparsable emotion); a test.csv row in the Kaggle pair
    tables = ferplus.read(write_copy(tmp_path, copy, rows))
    got = {(r["id"], r["reason"], r["detail"]) for r in tables.rejects.iter_rows(named=True)}
    assert got == {("fer0000000", "label out of range", "7"), ("fer0000009", "malformed row", "emotion sad")}
    assert_accounting(tables, rows)


@pytest.mark.parametrize("copy", ["fer2013", "icml_face_data"])
def test_unknown_usage_in_copies_with_a_usage_column(tmp_path, copy):
    rows = make_rows()
    rows[2]["usage"] = rows[2]["votes_usage"] = "Trainning"
    tables = ferplus.read(write_copy(tmp_path, copy, rows))
    assert tables.rejects.select("id", "split", "source_file", "reason", "detail").rows() == [
        ("fer0000002", None, f"{copy}.csv", "unknown usage", "Trainning")
    ]
    assert tables.rows_in == len(rows)


def test_unlabelled_kaggle_test_csv_has_no_label_rejects(tmp_path):
    """A test.csv without emotion cannot have a label defect: its rows are kept with null labels."""
    rows = make_rows()
    rows[9]["emotion"] = "sad"  # not written: test.csv has no emotion column
    tables = ferplus.read(write_copy(tmp_path, "kaggle-train-test", rows))
    assert tables.rejects.is_empty()
    assert tables.annotations.filter(pl.col("id") == "fer0000009")["raw_label"].item() is None


# --------------------------------------------------------------------------------------
# Misaligned pairs are refused
# --------------------------------------------------------------------------------------


def copy_label(copy: str) -> str:
    return "train.csv + test.csv" if copy.startswith("kaggle") else f"{copy}.csv"


@pytest.mark.parametrize("copy", COPY_NAMES)
def test_row_count_mismatch_refused(tmp_path, copy):
    rows = make_rows()
    write_copy(tmp_path, copy, rows)
    write_votes(tmp_path, rows[:-1])  # the vote file lost its last row
    with pytest.raises(FormatError) as error:
        ferplus.read(tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{copy_label(copy)} and fer2013new.csv are not aligned: ")
    assert f"12 data rows in {copy_label(copy)} but 11 in fer2013new.csv" in message
    assert "Usage agrees on the first 11 rows" in message


@pytest.mark.parametrize("copy", COPY_NAMES)
def test_usage_mismatch_refused(tmp_path, copy):
    """Both files give a valid Usage and they differ: not aligned (never a per-row guess)."""
    rows = make_rows()
    rows[2]["votes_usage"] = "PrivateTest"
    with pytest.raises(FormatError) as error:
        ferplus.read(write_copy(tmp_path, copy, rows))
    message = str(error.value)
    file, line = copy_file_of(copy, 2)
    by_position = " (by position)" if copy.startswith("kaggle") else ""
    assert message == (
        f"{copy_label(copy)} and fer2013new.csv are not aligned: 12 data rows each; Usage first differs at data "
        f"row 2: {file} line {line} Training{by_position}, fer2013new.csv line 4 PrivateTest; FER+ votes are "
        "matched to pixel rows by order, so the files must be aligned row by row"
    )


def test_alignment_names_the_first_differing_row_of_a_large_pair():
    """The first disagreement by row order, also when Polars joins on many threads."""
    n = 400_000
    usage = np.array(["Training"] * n, dtype=object)
    votes_usage = usage.copy()
    votes_usage[[123_456, 200_000, 399_999]] = "PublicTest"
    index = np.arange(n)
    pixels = pl.DataFrame(
        {"row_index": index, "source_file": ["fer2013.csv"] * n, "source_row": index + 2, "usage": usage.tolist()}
    )
    votes = pl.DataFrame({"row_index": index, "source_row": index + 2, "usage": votes_usage.tolist()})
    with pytest.raises(FormatError, match=r"data rows each; Usage first differs at data row 123456: fer2013.csv line "):
        ferplus.check_alignment(ferplus.COPIES_BY_NAME["fer2013"], pixels, votes)
    ferplus.check_alignment(ferplus.COPIES_BY_NAME["fer2013"], pixels, votes.with_columns(pixels["usage"]))


@pytest.mark.parametrize("copy", COPY_NAMES)
def test_shift_by_one_row_refused(tmp_path, copy):
    """The copy lost its first data row and gained one at the end: same count, every row shifted."""
    rows = make_rows()
    shifted = rows[1:] + [dict(rows[-1], pixels=pixel_text(99))]
    for i, row in enumerate(shifted):
        row["votes_usage"] = rows[i]["usage"]  # fer2013new.csv stays as it was
        row["usage"] = rows[i + 1]["usage"] if i + 1 < len(rows) else "PrivateTest"
    write_copy(tmp_path, copy, shifted, votes=False)  # Kaggle pair: train.csv 5 rows, test.csv 7
    write_votes(tmp_path, rows)
    with pytest.raises(FormatError, match=r"are not aligned: 12 data rows each; Usage first differs at data row 5: "):
        ferplus.read(tmp_path)


@pytest.mark.parametrize("copy", COPY_NAMES)
def test_missing_first_row_refused(tmp_path, copy):
    rows = make_rows()
    write_copy(tmp_path, copy, rows[1:], votes=False)
    write_votes(tmp_path, rows)
    with pytest.raises(FormatError, match=r"11 data rows in .* but 12 in fer2013new.csv; Usage first differs at"):
        ferplus.read(tmp_path)


@pytest.mark.parametrize("copy", COPY_NAMES)
def test_copy_without_header_refused(tmp_path, copy):
    """A header-less copy would shift every row by one: its first line is refused as a header."""
    rows = make_rows()
    write_copy(tmp_path, copy, rows)
    first_file = "train.csv" if copy.startswith("kaggle") else f"{copy}.csv"
    path = tmp_path / first_file
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(FormatError, match=rf"^{first_file}: bad header '\d,"):
        ferplus.read(tmp_path)
    if copy.startswith("kaggle"):  # test.csv without its header
        write_copy(tmp_path, copy, rows)
        test = tmp_path / "test.csv"
        test.write_text("".join(test.read_text().splitlines(keepends=True)[1:]))
        with pytest.raises(FormatError, match=r"^test.csv: bad header .*; expected pixels or emotion,pixels$"):
            ferplus.read(tmp_path)


def test_kaggle_halves_must_match_the_votes(tmp_path):
    """test.csv's halves give PublicTest / PrivateTest; votes with other halves are refused."""
    rows = make_rows(n_train=4, n_half=4)
    rows[8]["votes_usage"] = "PublicTest"  # fer2013new.csv: 5 PublicTest, 3 PrivateTest
    with pytest.raises(FormatError, match=r"data row 8: test.csv line 6 PrivateTest \(by position\), "):
        ferplus.read(write_copy(tmp_path, "kaggle-train-test", rows))


# --------------------------------------------------------------------------------------
# Which copy: priority, never mixed; missing files
# --------------------------------------------------------------------------------------


def test_priority_when_several_copies_are_present(tmp_path, caplog):
    rows = make_rows()
    write_copy(tmp_path, "kaggle-train-test", rows)
    write_copy(tmp_path, "icml_face_data", rows)
    with caplog.at_level(logging.WARNING, logger="curate.formats.ferplus"):
        tables = ferplus.read(tmp_path)
    assert tables.layout == "icml_face_data+ferplus"
    assert set(tables.files) == {"icml_face_data.csv", "fer2013new.csv"}  # train.csv / test.csv not read
    (message,) = [r.getMessage() for r in caplog.records]
    assert "reading icml_face_data.csv" in message and "train.csv + test.csv" in message
    # fer2013.csv wins over both; a broken lower-priority copy is not read at all
    write_copy(tmp_path, "fer2013", rows)
    (tmp_path / "icml_face_data.csv").write_text("not, a, copy\n")
    (tmp_path / "test.csv").write_text("")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="curate.formats.ferplus"):
        tables = ferplus.read(tmp_path)
    assert tables.layout == "fer2013+ferplus" and set(tables.files) == {"fer2013.csv", "fer2013new.csv"}
    assert tables.annotations.height == len(rows)
    assert "reading fer2013.csv" in caplog.records[0].getMessage()


def test_copy_detection_on_cluster_storage(tmp_path, monkeypatch):
    """gs:// (in memory): the absent copies are probed through epath, the Kaggle pair is found and read."""
    from test_formats_ferplus import assert_same_tables, gs_in_memory

    local = write_copy(tmp_path / "pair", "kaggle-train-test", make_rows())
    with gs_in_memory(monkeypatch) as upload:
        remote = upload(local, "pair")
        assert not Path(str(remote)).exists()
        tables = ferplus.read(remote, with_pixels=True)
        (remote / "test.csv").unlink()
        with pytest.raises(FormatError, match="^test.csv: missing file"):
            ferplus.read(remote)
    assert tables.layout == "kaggle-train-test+ferplus"
    assert_same_tables(tables, ferplus.read(local, with_pixels=True))


def test_one_copy_no_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="curate.formats.ferplus"):
        ferplus.read(write_copy(tmp_path, "kaggle-train-test", make_rows()))
    assert not caplog.records


def test_missing_copy_or_half_a_pair(tmp_path):
    rows = make_rows()
    write_votes(tmp_path, rows)
    with pytest.raises(FormatError) as error:
        ferplus.read(tmp_path)
    assert str(error.value) == (
        f"fer2013.csv: missing file (expected at {tmp_path / 'fer2013.csv'}); no other FER2013 copy either "
        "(icml_face_data.csv, or train.csv + test.csv)"
    )
    write_copy(tmp_path, "kaggle-train-test", rows)
    (tmp_path / "test.csv").unlink()
    with pytest.raises(FormatError, match=r"^test.csv: missing file .*; train.csv alone is half of the Kaggle copy"):
        ferplus.read(tmp_path)
    (tmp_path / "fer2013new.csv").unlink()
    write_copy(tmp_path, "kaggle-train-test", rows, votes=False)
    with pytest.raises(FormatError, match="^fer2013new.csv: missing file"):
        ferplus.read(tmp_path)


def test_unlabelled_rows_reach_the_workspace_and_review(tmp_path):
    """Null FER2013 labels are no refusal downstream: the workspace and review label them from the votes."""
    from curate.review.sources import ReviewSource, read_manual_annotations
    from curate.workspace import Workspace

    rows = make_rows()
    manual = write_copy(tmp_path / "manual", "kaggle-train-test", rows)
    tables = ferplus.read(manual)
    summary = Workspace(tmp_path / "ws", timeout=0).ingest(tables, dataset="ferplus", source="hand")
    assert summary.rows == len(rows) and not summary.rejects
    assert summary.layout == "kaggle-train-test+ferplus"
    clean, refused, source = read_manual_annotations(ReviewSource("ferplus", "manual", str(manual)))
    assert refused == 0 and clean.height == len(rows) and source.layout == "kaggle-train-test+ferplus"
    winners = labels.ferplus_vote_targets(
        np.array([[int(v) for v in r["votes"].split(",")] for r in rows]), "majority"
    ).label
    unlabelled = clean.filter(pl.col("raw_label").is_null())
    assert unlabelled.height == 6
    assert unlabelled["label"].to_list() == winners[6:].tolist()


# --------------------------------------------------------------------------------------
# The generator writes every copy (the same rows); the real vote file checks the halves
# --------------------------------------------------------------------------------------


def test_generator_writes_every_copy_with_the_same_rows(tmp_path):
    from curate.synth.ferplus import generate_ferplus

    tables = {}
    for copy in ("fer2013", "icml_face_data", "kaggle-train-test"):
        report = generate_ferplus(tmp_path / copy, scale=0.004, seed=5, annotations_only=True, copy=copy)
        manifest = json.loads(report.manifest_path.read_text())
        tables[copy] = ferplus.read(tmp_path / copy, with_pixels=True)
        assert tables[copy].layout == report.layout == manifest["layout"] == f"{copy}+ferplus"
        assert sorted(manifest["files"]) == sorted(tables[copy].files)
        assert tables[copy].rejects.is_empty()
    assert (tmp_path / "icml_face_data" / "icml_face_data.csv").read_text().startswith("emotion, Usage, pixels\n")
    assert (tmp_path / "kaggle-train-test" / "test.csv").read_text().startswith("pixels\n")
    reference = tables["fer2013"]
    assert comparable(tables["icml_face_data"]).equals(comparable(reference))
    assert comparable(tables["kaggle-train-test"]).equals(comparable(reference, test_labels=False))
    n_test = reference.annotations.filter(pl.col("split") != "train").height
    manifest = json.loads((tmp_path / "kaggle-train-test.synth_manifest.json").read_text())
    assert manifest["quirks"]["no_fer2013_label"]["count"] == n_test > 0
    with pytest.raises(ValueError, match="unknown FER2013 copy 'csv'"):
        generate_ferplus(tmp_path / "bad", copy="csv")
    with pytest.raises(ValueError, match="label_noise needs FER2013 labels"):
        generate_ferplus(tmp_path / "bad", copy="kaggle-train-test", label_noise=0.1)


def test_cli_synth_copy_option(tmp_path):
    from typer.testing import CliRunner

    from curate.cli import app

    out = tmp_path / "pair"
    args = [
        "synth",
        "ferplus",
        "--out",
        str(out),
        "--scale",
        "0.002",
        "--annotations-only",
        "--copy",
        "kaggle-train-test",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["fer2013new.csv", "test.csv", "train.csv"]
    assert ferplus.read(out).layout == "kaggle-train-test+ferplus"
    assert "--copy" in CliRunner().invoke(app, ["synth", "ferplus", "--help"]).output


@needs_real
def test_kaggle_pair_halves_against_the_real_vote_file(tmp_path):
    """train.csv 28,709 rows, test.csv 7,178 = PublicTest then PrivateTest: the real fer2013new.csv agrees."""
    from curate.synth.ferplus import generate_ferplus

    out = tmp_path / "real"
    generate_ferplus(out, votes_from=REAL, annotations_only=True, seed=3, copy="kaggle-train-test")
    assert (out / "train.csv").read_bytes().count(b"\n") == 28_709 + 1  # with the header line
    assert (out / "test.csv").read_bytes().count(b"\n") == 7_178 + 1
    tables = ferplus.read(out)
    assert tables.layout == "kaggle-train-test+ferplus" and tables.rejects.is_empty()
    assert tables.annotations["split"].value_counts().sort("split").rows() == [
        ("test", 3589),
        ("train", 28709),
        ("validation", 3589),
    ]
    assert tables.annotations.filter(pl.col("split") != "train")["raw_label"].null_count() == 7_178


def test_rows_moved_within_a_split_are_beyond_any_check(tmp_path):
    """The documented limit: a row moved inside test.csv's PrivateTest half keeps every Usage, so it reads."""
    rows = make_rows()
    moved = rows[:9] + [rows[10], rows[11], rows[9]]
    write_copy(tmp_path, "kaggle-train-test", moved, votes=False)
    write_votes(tmp_path, rows)
    tables = ferplus.read(tmp_path, with_pixels=True)
    assert tables.rejects.is_empty()
    assert tables.annotations["pixels"][9] == pixel_text(10)  # the pixels of row 10 under id fer0000009


# --------------------------------------------------------------------------------------
# TFDS build of the Kaggle pair
# --------------------------------------------------------------------------------------


def test_tfds_build_of_the_kaggle_pair(tmp_path):
    """rows_in == examples + rejects per split; unlabelled test.csv rows build with fer2013_label -1."""
    tfds = pytest.importorskip("tensorflow_datasets")

    import tfds_builders  # noqa: F401  (registers the builders)
    from tfds_builders import common
    from tfds_builders.ferplus import ferplus_dataset_builder

    rows, expected = defective_rows()
    manual = write_copy(tmp_path / "manual", "kaggle-train-test", rows)
    builder = tfds.builder("ferplus", data_dir=str(tmp_path / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    metadata = builder.info.metadata
    assert metadata["layout"] == "kaggle-train-test+ferplus"
    assert set(metadata["annotation_files_sha256"]) == {"train.csv", "test.csv", "fer2013new.csv"}
    written = rows_per_split(rows)
    reasons = Counter((SPLIT_OF[rows[int(key[3:])]["usage"]], reason) for key, (reason, _) in expected.items())
    stored_ids = set()
    for split in ("train", "validation", "test"):
        counts = metadata["counts"][split]
        assert counts["rows_in"] == written[split] == counts["examples"] + counts["rejects"]
        assert metadata["reject_reasons"][split] == {r: n for (s, r), n in reasons.items() if s == split}
        assert len(common.read_ledger(builder.data_path, split)) == counts["rejects"]
        stored = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
        assert len(stored) == counts["examples"]
        for example in stored:
            i = int(example["id"].decode()[3:])
            stored_ids.add(i)
            np.testing.assert_array_equal(example["votes"], [int(v) for v in rows[i]["votes"].split(",")])
            np.testing.assert_array_equal(example["image"].ravel(), [int(v) for v in rows[i]["pixels"].split()])
            if split == "train":
                assert example["fer2013_label"] == int(rows[i]["emotion"])
            else:  # test.csv as Kaggle ships it: no FER2013 label
                assert example["fer2013_label"] == ferplus_dataset_builder.NO_LABEL == -1
    assert stored_ids == {i for i in range(len(rows)) if f"fer{i:07d}" not in expected}
    # Read back (curate ingest --tfds-dir): -1 is null again, as the reader gives it, and the
    # workspace labels those rows from their votes instead of refusing them.
    from curate.tfds_tables import read_tfds
    from curate.workspace import Workspace

    back = read_tfds(tmp_path / "data", "ferplus").annotations.sort("id")
    unlabelled = back.filter(pl.col("split") != "train")
    assert unlabelled.height > 0 and unlabelled["raw_label"].null_count() == unlabelled.height
    assert back.filter(pl.col("split") == "train")["raw_label"].null_count() == 0
    summary = Workspace(tmp_path / "ws", timeout=0).ingest(
        read_tfds(tmp_path / "data", "ferplus"), dataset="ferplus", source="tfds"
    )
    assert summary.rows == len(stored_ids) and not summary.rejects
    from curate.review.sources import ReviewSource, prepare_tfds  # review of the built dataset

    table = prepare_tfds(ReviewSource("ferplus", "tfds", str(tmp_path / "data")), cache_dir=tmp_path / "cache")
    assert table.frame.height == len(stored_ids) and table.frame["label"].null_count() == 0
    assert table.frame.filter(pl.col("split") != "train")["raw_label"].null_count() == unlabelled.height
    assert "test.csv" in ferplus_dataset_builder.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "icml_face_data.csv" in ferplus_dataset_builder.Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


def test_fer2013_label_of():
    pytest.importorskip("tensorflow_datasets")
    from tfds_builders.ferplus import ferplus_dataset_builder as module

    assert module.fer2013_label_of(None) == -1
    assert module.fer2013_label_of(6) == 6
    with pytest.raises(Exception, match="invalid label"):
        module.fer2013_label_of(7)
