"""Readers and writers of the raw dataset layouts (one module per layout family).

Scope
-----
* :mod:`curate.formats.affectnet` -- AffectNet original (CSV lists + images) layout, and the
  cropped "AffectNet-8" (``.npy`` annotations) layout through
  :mod:`curate.formats.affectnet_cropped` (rules both share: :mod:`curate.formats.affectnet_rules`).
* :mod:`curate.formats.ferplus` -- a FER2013 copy (pixels, FER2013 label: ``fer2013.csv``,
  Kaggle's ``icml_face_data.csv`` or ``train.csv`` + ``test.csv``) aligned row by row with
  ``fer2013new.csv`` (FER+ votes).
* :mod:`curate.formats.rafdb` -- RAF-DB basic label list and per-image annotation files, and
  the other copies people hold (without originals or annotations; folder-per-label, in
  :mod:`curate.formats.rafdb_copies`).

Every reader returns :class:`~curate.formats.schema.ParsedTables`: the common annotation
table (:data:`~curate.formats.schema.ANNOTATION_SCHEMA` plus dataset extras), a rejects
table with stable reason strings, and the SHA-256 of every annotation file it read.
Rows that do not parse never stop a read; a missing file or a wrong header does
(:class:`~curate.formats.schema.FormatError`). Parsing is vectorised with Polars: files are
read as one string column of lines, split and cast with expressions, and validated with
null checks, so there are no Python loops over rows (only over files, where a layout
stores one file per image).

Paths: a reader takes the manual dir as a ``str``, a :class:`pathlib.Path` or an
:class:`etils.epath.Path`. Local paths stay :class:`pathlib.Path` and are read with plain
file I/O; URIs (``gs://``, ``s3://``, ... -- what a Beam cluster reads from) go through
``etils.epath`` (:func:`as_path`), so the same reader works on cluster storage.

Which reader belongs to which dataset is the registry's to say (``curate.datasets``:
``datasets.read(name, manual_dir)``). This package module holds the small helpers the
readers share.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import polars as pl

from curate.formats.schema import (
    ANNOTATION_SCHEMA,
    REJECT_SCHEMA,
    FormatError,
    ParsedTables,
    empty_rejects,
    reject_frame,
)

if TYPE_CHECKING:
    from etils import epath

#: A path argument: ``str``, :class:`pathlib.Path`, :class:`etils.epath.Path` or any ``os.PathLike``.
PathLike: TypeAlias = str | os.PathLike[str]
#: What :func:`as_path` returns: a local :class:`pathlib.Path` or an :class:`etils.epath.Path` for a URI.
AnyPath: TypeAlias = "Path | epath.Path"

__all__ = [
    "ANNOTATION_SCHEMA",
    "REJECT_SCHEMA",
    "FormatError",
    "ParsedTables",
    "empty_rejects",
]

# --------------------------------------------------------------------------------------
# Shared helpers (used by the layout modules; not part of the public API)
# --------------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_uri(path: PathLike) -> bool:
    """True for ``scheme://...`` paths (``gs://``, ``s3://``, ...), False for local ones."""
    return "://" in os.fspath(path)


def as_path(path: PathLike) -> AnyPath:
    """A local path as :class:`pathlib.Path`; a URI as :class:`etils.epath.Path`.

    Local paths keep pathlib (and plain file I/O: the fast path); ``gs://``, ``s3://``, ...
    URIs, given as text or as ``epath.Path``, become ``epath.Path`` objects, whose
    ``open`` / ``read_bytes`` / ``is_dir`` / ``iterdir`` reach the remote file system.
    ``etils`` is imported only then.
    """
    if isinstance(path, Path):
        return path
    text = os.fspath(path)
    if is_uri(text):
        from etils import epath

        return epath.Path(path)
    return Path(text)


def read_bytes(path: AnyPath, relative: str) -> bytes:
    """Bytes of an annotation file; a missing or unreadable file is a :class:`FormatError`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FormatError(f"{relative}: missing file (expected at {path})") from None
    except OSError as error:
        raise FormatError(f"{relative}: cannot read file: {error.strerror or error}") from None


def read_text(path: AnyPath, relative: str) -> bytes:
    """Bytes of a text annotation file, checked to be UTF-8 (:func:`check_utf8`).

    A missing or unreadable file, or one in another encoding, is a :class:`FormatError`.
    """
    data = read_bytes(path, relative)
    check_utf8(data, relative)
    return data


#: Byte-order marks of the encodings a spreadsheet may save a "Unicode" CSV in, longest first
#: (UTF-32-LE's mark begins with UTF-16-LE's); ``iconv`` reads the mark with the plain names.
_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32-LE", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32-BE", "UTF-32"),
    (b"\xff\xfe", "UTF-16-LE", "UTF-16"),
    (b"\xfe\xff", "UTF-16-BE", "UTF-16"),
)
UTF8_BOM = b"\xef\xbb\xbf"


def _convert_hint(relative: str, source: str) -> str:
    name = relative.rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    target = f"{stem}.utf8.{suffix}" if dot else f"{name}.utf8"
    return f"convert it with: iconv -f {source} -t UTF-8 {name} > {target}"


def check_wide_encoding(data: bytes, relative: str) -> None:
    """Raise :class:`FormatError` when ``data`` (a whole file or its head) is UTF-16 / UTF-32
    text (a byte-order mark, or NUL bytes, which UTF-8 text never holds).

    The message names the file, the encoding found and how to convert it to UTF-8.
    """
    for mark, encoding, iconv_name in _BOMS:
        if data.startswith(mark):
            raise FormatError(
                f"{relative}: the file is {encoding} (byte-order mark {mark.hex(' ').upper()}), but UTF-8 is "
                f"expected; {_convert_hint(relative, iconv_name)}"
            )
    nul = data.find(b"\x00")
    if nul < 0:
        return
    newline = b"\n"
    line = data.count(newline, 0, nul) + 1
    head = data[:4096]
    zeros = head.count(b"\x00") / max(1, len(head))
    odd, even = head[1::2].count(b"\x00"), head[0::2].count(b"\x00")
    if zeros >= 0.6:
        encoding = "UTF-32-LE" if head[:1] != b"\x00" else "UTF-32-BE"
    elif odd > 0.4 * len(head[1::2]) and odd > 2 * even:
        encoding = "UTF-16-LE"
    elif even > 0.4 * len(head[0::2]) and even > 2 * odd:
        encoding = "UTF-16-BE"
    else:
        raise FormatError(
            f"{relative}: line {line}: NUL byte (byte {nul - data.rfind(newline, 0, nul)} of the line; a binary "
            "file?); a UTF-8 text file is expected"
        )
    raise FormatError(
        f"{relative}: line {line}: NUL bytes; the file looks like {encoding} without a byte-order mark, but UTF-8 "
        f"is expected; {_convert_hint(relative, encoding.replace('-LE', 'LE').replace('-BE', 'BE'))}"
    )


def check_utf8(data: bytes, relative: str) -> None:
    """Raise :class:`FormatError` unless ``data`` is UTF-8 text (a leading UTF-8 BOM is fine).

    UTF-16 / UTF-32 (:func:`check_wide_encoding`) and invalid UTF-8 (e.g. a Latin-1 file: the
    message names the first bad line, 1-based, and byte) are refused, so no replacement
    character (U+FFFD) ever reaches a table. The whole buffer is checked at C speed
    (``bytes.isascii``, then ``bytes.decode`` only when it holds non-ASCII bytes); the line
    is located only on failure.
    """
    check_wide_encoding(data, relative)
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FormatError(invalid_utf8_message(data, error.start, relative)) from None


def invalid_utf8_message(data: bytes, offset: int, relative: str) -> str:
    """``<file>: line N: byte 0xE9 (byte K of the line) is not valid UTF-8; ...`` for the bad
    byte at ``offset`` of ``data``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    line = data.count(b"\n", 0, offset) + 1
    return (
        f"{relative}: line {line}: byte 0x{data[offset]:02X} (byte {offset - line_start + 1} of the line) is not "
        f"valid UTF-8; annotation files must be UTF-8 (a Latin-1 / Windows-1252 file? "
        f"{_convert_hint(relative, 'WINDOWS-1252')})"
    )


def sha256_utf8_file(path: str | os.PathLike[str], relative: str, *, chunk: int = 1 << 24) -> str:
    """SHA-256 of a local text file, checking on the way that it is UTF-8 (:func:`check_utf8`).

    Read in chunks (the file never sits in memory whole); each chunk is hashed and checked to
    be NUL-free ASCII. Only when a chunk is not is the whole file read and checked exactly, so
    a valid non-ASCII UTF-8 file costs one more read and a clean ASCII one none.
    """
    digest = hashlib.sha256()
    plain = True
    with open(path, "rb") as handle:
        first = True
        while block := handle.read(chunk):
            if first:
                check_wide_encoding(block[:4096], relative)
                first = False
            digest.update(block)
            plain = plain and block.isascii() and b"\x00" not in block
    if not plain:
        with open(path, "rb") as handle:
            check_utf8(handle.read(), relative)
    return digest.hexdigest()


def read_optional(root: AnyPath, relative: str) -> bytes | None:
    """Bytes of ``root / relative``, or ``None`` when there is no such file.

    Any other failure to read it is a :class:`FormatError`.
    """
    try:
        if isinstance(root, Path):  # local: one open(), no Path object per file
            with open(f"{os.fspath(root)}/{relative}", "rb") as handle:
                return handle.read()
        return (root / relative).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as error:
        raise FormatError(f"{relative}: cannot read file: {error.strerror or error}") from None


def read_many(root: AnyPath, relatives: Sequence[str], *, threads: int = 32) -> list[bytes | None]:
    """:func:`read_optional` of every relative path, in order.

    Local files are read one after the other (the page cache makes that the fastest way);
    on remote storage each file is a request, so ``threads`` of them run at a time.
    """
    if isinstance(root, Path) or len(relatives) < 2:
        return [read_optional(root, relative) for relative in relatives]
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="curate-read") as pool:
        return list(pool.map(lambda relative: read_optional(root, relative), relatives))


def list_names(folder: AnyPath) -> list[str]:
    """Names of the entries of a folder, sorted (``os.listdir`` locally, ``iterdir`` on a URI)."""
    if isinstance(folder, Path):
        return sorted(os.listdir(folder))
    return sorted(child.name for child in folder.iterdir())


def strip_bom(data: bytes) -> bytes:
    return data[len(UTF8_BOM) :] if data.startswith(UTF8_BOM) else data


def read_lines(data: bytes) -> pl.DataFrame:
    """All lines of ``data`` as ``line`` (String) and ``line_no`` (Int64, 1-based).

    Line endings ``\\n`` and ``\\r\\n`` are accepted; empty lines come back as null lines so
    the numbering stays that of the file. Polars' multi-threaded CSV scanner splits the lines
    (with no quote character and a separator that does not occur in ``data``).
    """
    data = strip_bom(data)
    if not data:
        return pl.DataFrame(schema={"line": pl.String, "line_no": pl.Int64})
    separator = next(chr(c) for c in (0x1F, 0x1E, 0x1D, 0x1C, 0x07, 0x01) if bytes([c]) not in data)
    frame = pl.read_csv(
        data,
        has_header=False,
        separator=separator,
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
    )
    return frame.with_row_index("line_no", offset=1).with_columns(pl.col("line_no").cast(pl.Int64))


def split_line_fields(lines: pl.DataFrame, names: Sequence[str], separator: str = ",") -> pl.DataFrame:
    """Split the ``line`` column of :func:`read_lines` output into named text fields.

    Returns ``source_row`` (the line number), ``_n_sep`` (separator count: a line with the
    right number of fields has ``len(names) - 1``) and one String column per name. Blanks and
    one pair of surrounding double quotes are removed from a field (none of the layouts quotes
    a field that contains the separator); columns that need no unquoting are left untouched,
    so long fields (landmarks, pixels) are not copied.
    """
    frame = lines.select(
        pl.col("line_no").alias("source_row"),
        pl.col("line").str.count_matches(separator, literal=True).alias("_n_sep"),
        pl.col("line").str.split_exact(separator, len(names) - 1).struct.rename_fields(list(names)).alias("_fields"),
    ).unnest("_fields")
    fixes = []
    for name in names:
        column = pl.col(name)
        edges = pl.any_horizontal(
            *(getattr(column.str, end)(char) for end in ("starts_with", "ends_with") for char in ('"', " ", "\t"))
        )
        if frame.select(edges.any()).item():
            fixes.append(unquote(column).alias(name))
    return frame.with_columns(fixes) if fixes else frame


def unquote(expr: pl.Expr) -> pl.Expr:
    """Strip blanks, then one pair of surrounding double quotes."""
    stripped = expr.str.strip_chars(" \t")
    quoted = stripped.str.starts_with('"') & stripped.str.ends_with('"') & (stripped.str.len_bytes() >= 2)
    return pl.when(quoted).then(stripped.str.slice(1, stripped.str.len_bytes() - 2)).otherwise(stripped)


def first_reason(checks: Sequence[tuple[pl.Expr, str, pl.Expr]]) -> tuple[pl.Expr, pl.Expr]:
    """Combine ordered ``(failed, reason, detail)`` checks into ``reason`` / ``detail`` expressions.

    The first failing check wins; both expressions are null for rows that pass every check.
    """
    reason: Any = None
    detail: Any = None
    for failed, text, info in reversed(checks):
        if reason is None:
            reason = pl.when(failed).then(pl.lit(text))
            detail = pl.when(failed).then(info.cast(pl.String))
        else:
            reason = pl.when(failed).then(pl.lit(text)).otherwise(reason)
            detail = pl.when(failed).then(info.cast(pl.String)).otherwise(detail)
    return reason.alias("_reason"), detail.alias("_detail")


def split_rejects(frame: pl.DataFrame, dataset: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``frame`` on its ``_reason`` column into (kept rows, rejects table)."""
    rejected = frame.filter(pl.col("_reason").is_not_null()).with_columns(pl.lit(dataset).alias("dataset"))
    rejects = reject_frame(rejected, reason=pl.col("_reason"), detail=pl.col("_detail"))
    return frame.filter(pl.col("_reason").is_null()), rejects


def finish_annotations(frame: pl.DataFrame, extras: Sequence[str] = ()) -> pl.DataFrame:
    """Select the schema columns (cast to their dtypes, nulls where absent) then ``extras``."""
    columns = []
    for name, dtype in ANNOTATION_SCHEMA.items():
        if name in frame.columns:
            columns.append(pl.col(name).cast(dtype))
        else:
            columns.append(pl.lit(None, dtype=dtype).alias(name))
    return frame.select(*columns, *extras)


def concat_rejects(parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    parts = [p for p in parts if p.height]
    if not parts:
        return empty_rejects()
    return pl.concat(parts, how="vertical").sort("source_file", "source_row", maintain_order=True)


def integer_text(expr: pl.Expr) -> pl.Expr:
    """Integer value of a decimal text field, null unless it is an integer (``"3"``, ``"3.0"``)."""
    number = expr.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite() & (number == number.round(0))).then(number).cast(pl.Int64, strict=False)


def finite_number(expr: pl.Expr, dtype: Any = pl.Float32) -> pl.Expr:
    """A text field as a float, null when it does not parse or is not finite (nan, inf)."""
    number = expr.cast(dtype, strict=False)
    return pl.when(number.is_finite()).then(number)
