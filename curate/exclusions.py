"""The exclusion list: annotation ids to leave out, one reading for every consumer.

Scope
-----
``curate audit duplicates --exclusions-out`` writes the list (:func:`curate.audit.write_exclusions`,
columns :data:`COLUMNS`: ``dataset, id, split, group``; ``group`` names the image kept, as
``dataset:id``). Three places read it, all through this module:

* ``curate ingest --exclusions`` (:func:`apply_exclusions` on a reader's ``ParsedTables``);
* the TFDS builders (``<manual_dir>/curate_exclusions.parquet``, ``tfds_builders.common``);
* the trainer (``curate train --exclude``, ``train.config.TrainConfig.exclusions``).

Rules
-----
* A list is a Parquet file with at least an ``id`` column. A missing file, a file that is
  not Parquet or one without ``id`` raises :class:`ExclusionListError` naming the file and
  the reason (an ignore list silently ignored would be worse).
* Only the rows of the dataset at hand count when the list has a ``dataset`` column (the
  audit's file does); otherwise every row does. Null ids are skipped; an id listed twice
  counts once (its first row wins).
* Rows matched by the list are never dropped silently: they become rejects with the reason
  :data:`EXCLUDED_AS_DUPLICATE` and the detail ``duplicate of <group>`` (``listed in
  <file name>`` when the list has no ``group``), so ``rows_in == kept + rejects`` holds.
* :attr:`ExclusionList.sha256` is the SHA-256 of the file's bytes: builders and the trainer
  put it in their fingerprints (a new list, a new fingerprint).

Polars is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Any

#: Reject reason of a row the exclusion list names (ingest, builders).
EXCLUDED_AS_DUPLICATE = "excluded as duplicate"
#: Columns of the list as :func:`curate.audit.exclusion_ids` writes it (only ``id`` is required).
COLUMNS: tuple[str, ...] = ("dataset", "id", "split", "group")
#: Column of :func:`match`'s matched rows holding the reject detail.
DETAIL_COLUMN = "exclusion_detail"

#: Polars ``format`` template of the detail of a row whose list row has a ``group``.
_DUPLICATE_OF = "duplicate of {}"


class ExclusionListError(ValueError):
    """An exclusion list cannot be used; the message names the file (and option) and the reason.

    Attributes
    ----------
    path : str
        The file, as given.
    reason : str
        What is wrong with it, e.g. ``no such file``.
    """

    def __init__(self, path: Any, reason: str, *, option: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        where = f"{option} {path}" if option else str(path)
        super().__init__(f"{where}: {reason}")


def duplicate_detail(group: str) -> str:
    """Reject detail of a row excluded because ``group`` (``dataset:id``) is the image kept."""
    return _DUPLICATE_OF.format(group)


def listed_detail(name: str) -> str:
    """Reject detail of a row excluded by a list without ``group``: ``listed in <name>``."""
    return f"listed in {name}"


def exclusion_schema() -> dict[str, Any]:
    """Column -> Polars dtype of an exclusion list as the audit writes it, in order."""
    import polars as pl

    return {column: pl.String for column in COLUMNS}


@dataclasses.dataclass(frozen=True)
class ExclusionList:
    """A read and validated exclusion list.

    Attributes
    ----------
    source : str
        Where it was read from (for messages).
    frame : polars.DataFrame
        The file's rows as stored (at least ``id``).
    sha256 : str
        SHA-256 hex digest of the file's bytes.
    name : str
        File name used in the ``listed in <name>`` detail.
    """

    source: str
    frame: Any
    sha256: str
    name: str

    def for_dataset(self, dataset: str) -> Any:
        """``id, detail`` (both String) of the rows that count for ``dataset``, distinct ids in file order."""
        import polars as pl

        frame = self.frame
        if "dataset" in frame.columns:
            frame = frame.filter(pl.col("dataset").cast(pl.String) == dataset)
        group = pl.col("group").cast(pl.String) if "group" in frame.columns else pl.lit(None, dtype=pl.String)
        detail = pl.when(group.is_not_null() & (group != "")).then(pl.format(_DUPLICATE_OF, group))
        return (
            frame.select(
                pl.col("id").cast(pl.String),
                detail.otherwise(pl.lit(listed_detail(self.name))).cast(pl.String).alias("detail"),
            )
            .drop_nulls("id")
            .unique("id", keep="first", maintain_order=True)
        )

    def ids(self, dataset: str) -> tuple[str, ...]:
        """Distinct ids listed for ``dataset``, in file order."""
        return tuple(self.for_dataset(dataset).get_column("id").to_list())

    def details(self, dataset: str) -> dict[str, str]:
        """``{id: detail}`` of the ids listed for ``dataset``."""
        return dict(self.for_dataset(dataset).iter_rows())


def parse_exclusion_list(
    data: bytes, *, source: Any, name: str | None = None, option: str | None = None
) -> ExclusionList:
    """Validate the bytes of an exclusion list read from ``source``.

    ``name`` (default: the last part of ``source``) is the file name the ``listed in``
    detail uses; ``option`` (e.g. ``--exclude``) prefixes error messages.
    """
    import polars as pl

    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as error:  # polars raises several error types for a non-Parquet file
        raise ExclusionListError(source, f"not a readable Parquet exclusion list ({error})", option=option) from None
    if "id" not in frame.columns:
        raise ExclusionListError(
            source, f"no 'id' column (columns: {', '.join(frame.columns) or 'none'})", option=option
        )
    for column in ("id", "dataset", "group"):
        if column in frame.columns and not _text_like(frame.schema[column]):
            raise ExclusionListError(
                source, f"column {column!r} holds {frame.schema[column]}, not text or integers", option=option
            )
    return ExclusionList(
        source=str(source),
        frame=frame,
        sha256=hashlib.sha256(data).hexdigest(),
        name=name or os.path.basename(str(source).rstrip("/")) or str(source),
    )


def read_exclusion_list(path: Any, *, name: str | None = None, option: str | None = None) -> ExclusionList:
    """Read and validate the exclusion list at ``path``.

    ``path`` is a path string or any path object with ``is_file`` and ``read_bytes``
    (``pathlib.Path``, ``etils.epath.Path`` for ``gs://`` URIs). Raises
    :class:`ExclusionListError` for a missing file too.
    """
    file = path if hasattr(path, "read_bytes") else Path(path)
    if not file.is_file():
        raise ExclusionListError(path, "no such file", option=option)
    try:
        data = file.read_bytes()
    except OSError as error:
        raise ExclusionListError(path, f"cannot be read ({error})", option=option) from None
    return parse_exclusion_list(data, source=path, name=name, option=option)


def match(frame: Any, listed: Any) -> tuple[Any, Any]:
    """Split ``frame`` (a table with ``id``) by the ``id, detail`` rows of :meth:`ExclusionList.for_dataset`.

    Returns ``(kept, matched)``: the rows whose id is not listed (same columns, same order)
    and the rows whose id is, in frame order, with the list's detail added as
    :data:`DETAIL_COLUMN`. Every row of ``frame`` is in exactly one of the two.
    """
    import polars as pl

    key = pl.col("id").cast(pl.String)
    hit = key.is_in(listed.get_column("id").implode()).fill_null(False)
    kept = frame.filter(~hit)
    details = listed.select(pl.col("id").alias("_exclusion_id"), pl.col("detail").alias(DETAIL_COLUMN))
    matched = (
        frame.filter(hit)
        .with_columns(key.alias("_exclusion_id"))
        .join(details, on="_exclusion_id", how="left", maintain_order="left")
        .drop("_exclusion_id")
    )
    return kept, matched


def apply_exclusions(parsed: Any, exclusions: ExclusionList, dataset: str) -> tuple[Any, int, int]:
    """Move the annotations the list names for ``dataset`` to the rejects, without losing a row.

    Matched rows leave ``parsed.annotations`` and join ``parsed.rejects`` with the reason
    :data:`EXCLUDED_AS_DUPLICATE` (detail: the image kept, from ``group``), so
    ``rows_in == annotations + rejects`` still holds. Returns ``(parsed, excluded, listed)``:
    rows moved and distinct ids the list names for ``dataset``.
    """
    import polars as pl

    from curate.formats.schema import append_rejects, reject_frame

    listed = exclusions.for_dataset(dataset)
    kept, matched = match(parsed.annotations, listed)
    if matched.height == 0:
        return parsed, 0, listed.height
    moved = reject_frame(matched, reason=EXCLUDED_AS_DUPLICATE, detail=pl.col(DETAIL_COLUMN))
    updated = dataclasses.replace(parsed, annotations=kept, rejects=append_rejects(parsed.rejects, moved))
    return updated, matched.height, listed.height


def _text_like(dtype: Any) -> bool:
    import polars as pl

    return dtype == pl.String or dtype == pl.Categorical or dtype == pl.Enum or dtype.is_integer() or dtype == pl.Null
