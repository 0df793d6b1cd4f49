"""Annotation files that are not UTF-8: one line naming the file (and the row), never U+FFFD.

Each dataset's text annotation file is re-encoded (Latin-1 with an accented id, UTF-16 with
and without a byte-order mark) and read through its reader and through ``curate ingest``;
a UTF-8 file with a byte-order mark and accented text is read as it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from curate.formats import FormatError, affectnet, check_utf8, ferplus, rafdb

READERS = {"affectnet": affectnet.read, "ferplus": ferplus.read, "rafdb": rafdb.read}
#: (dataset, annotation file inside the manual dir)
FILES = [
    ("affectnet", "Manually_Annotated_file_lists/training.csv"),
    ("ferplus", "fer2013.csv"),
    ("ferplus", "fer2013new.csv"),
    ("rafdb", "basic/EmoLabel/list_patition_label.txt"),
]


@pytest.fixture(scope="module")
def manual_dirs(tmp_path_factory) -> dict[str, Path]:
    from curate.synth import generate_affectnet, generate_ferplus, generate_rafdb

    root = tmp_path_factory.mktemp("encoding")
    generate_affectnet(root / "affectnet", annotations_only=True, scale=0.0003, seed=1, workers=1)
    generate_ferplus(root / "ferplus", annotations_only=True, scale=0.003, seed=1, workers=1)
    generate_rafdb(root / "rafdb", annotations_only=True, scale=0.01, seed=1, workers=1)
    return {name: root / name for name in READERS}


def _copy(manual_dirs: dict[str, Path], dataset: str, tmp_path: Path) -> Path:
    manual = tmp_path / dataset
    shutil.copytree(manual_dirs[dataset], manual)
    return manual


def _accented(text: str, encoding: str) -> bytes:
    """``text`` with an "é" after the first character of line 3, in ``encoding``."""
    lines = text.split("\n")
    lines[2] = lines[2][:1] + "é" + lines[2][1:]
    return "\n".join(lines).encode(encoding)


def _no_replacement_characters(tables) -> None:
    for frame in (tables.annotations, tables.rejects):
        for name, dtype in frame.schema.items():
            if dtype == pl.String:
                assert not frame[name].str.contains("\ufffd", literal=True).any(), name


def _ingest(manual: Path, dataset: str, workspace: Path):
    from curate.cli import app

    return CliRunner().invoke(app, ["ingest", dataset, "--manual-dir", str(manual), "-w", str(workspace)])


def _one_line(result) -> str:
    text = (result.stderr if hasattr(result, "stderr") else result.output).strip()
    assert result.exit_code == 1, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text  # one line, no traceback
    return lines[0]


@pytest.mark.parametrize(("dataset", "relative"), FILES)
def test_latin1_file_names_the_file_line_and_byte(manual_dirs, tmp_path, dataset, relative):
    manual = _copy(manual_dirs, dataset, tmp_path)
    path = manual / relative
    path.write_bytes(_accented(path.read_text(encoding="utf-8"), "latin-1"))
    name = Path(relative).name
    with pytest.raises(FormatError) as caught:
        READERS[dataset](manual)
    message = str(caught.value)
    assert "\n" not in message and "\ufffd" not in message
    assert name in message and "line 3: byte 0xE9 (byte 2 of the line) is not valid UTF-8" in message
    assert f"iconv -f WINDOWS-1252 -t UTF-8 {name}" in message
    line = _one_line(_ingest(manual, dataset, tmp_path / "ws"))
    assert name in line and "line 3: byte 0xE9" in line


@pytest.mark.parametrize(("dataset", "relative"), FILES)
@pytest.mark.parametrize(
    ("encoding", "found", "iconv"),
    [("utf-16", "UTF-16-LE (byte-order mark FF FE)", "UTF-16"), ("utf-16-le", "UTF-16-LE without", "UTF-16LE")],
)
def test_utf16_file_says_the_encoding_and_how_to_convert(
    manual_dirs, tmp_path, dataset, relative, encoding, found, iconv
):
    manual = _copy(manual_dirs, dataset, tmp_path)
    path = manual / relative
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    name = Path(relative).name
    with pytest.raises(FormatError) as caught:
        READERS[dataset](manual)
    message = str(caught.value)
    assert message.split(":")[0].endswith(name) and found in message and "UTF-8 is expected" in message
    assert f"iconv -f {iconv} -t UTF-8 {name}" in message and "\n" not in message
    line = _one_line(_ingest(manual, dataset, tmp_path / "ws"))
    assert name in line and found in line
    assert len(line) < 300  # no dump of the decoded header


@pytest.mark.parametrize(("dataset", "relative"), FILES)
def test_utf8_with_bom_and_accents_is_read(manual_dirs, tmp_path, dataset, relative):
    manual = _copy(manual_dirs, dataset, tmp_path)
    path = manual / relative
    clean = READERS[dataset](manual)
    path.write_bytes(b"\xef\xbb\xbf" + _accented(path.read_text(encoding="utf-8"), "utf-8"))
    tables = READERS[dataset](manual)
    assert tables.rows_in == clean.rows_in
    _no_replacement_characters(tables)


def test_check_utf8_locates_the_first_bad_byte_and_accepts_utf8():
    check_utf8("ok,é\n".encode(), "a.csv")
    check_utf8(b"\xef\xbb\xbfid\n", "a.csv")
    with pytest.raises(FormatError, match=r"^a\.csv: line 2: byte 0xFF \(byte 4 of the line\) is not valid UTF-8"):
        check_utf8(b"id\nabc\xffdef\n\xe9\n", "a.csv")
    with pytest.raises(FormatError, match=r"^x\.txt: the file is UTF-32-LE"):
        check_utf8("id\n".encode("utf-32"), "x.txt")
    with pytest.raises(FormatError, match=r"^x\.txt: line 2: NUL byte \(byte 4 of the line; a binary file\?\)"):
        check_utf8(b"abcdefgh\nabc\x00\n", "x.txt")
