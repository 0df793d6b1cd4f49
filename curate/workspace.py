"""The curation workspace: one folder, one DuckDB database, Parquet exports and reports.

Scope
-----
A workspace is a folder (``./curate-workspace`` unless ``--workspace DIR`` or the
``CURATE_WORKSPACE`` environment variable says otherwise) holding:

* ``workspace.duckdb`` -- the database: ingested annotations of every dataset in one schema
  (:data:`curate.formats.schema.ANNOTATION_SCHEMA`), their rejects, the label policies
  applied (definition, mapping, datasets) and the remapped labels they give (the view
  ``remapped``), every study's results and the registered training runs (see :data:`TABLES`);
* ``arrays/`` -- the landmark arrays of each dataset, one Parquet file (zstd) per ingest,
  read through the database's ``landmarks`` and ``annotations_with_landmarks`` views. They are
  ~90% of AffectNet's bytes and no study aggregates them, so they stay out of the
  database's own compressed columns (compressing 57M floats costs DuckDB about a second per
  ingest; Polars writes the file in a fraction of that, beside the insert). Every workspace
  connection sets DuckDB's ``file_search_path`` to the folder, so the views' relative paths
  resolve wherever the folder is moved (a bare ``duckdb`` shell must run inside the folder);
* ``exports/`` -- Parquet (zstd) exports, ``reports/`` -- study reports, ``runs/`` -- the
  trainer's run folders.

Concurrency: any number of readers may work at once; a writer takes DuckDB's exclusive file
lock for the length of one transaction. A second writer (or a reader while a writer is
active) waits up to ``timeout`` seconds, then gets :class:`WorkspaceBusyError`, never a
half-written file: every write runs inside one DuckDB transaction and is rolled back on any
error.

Heavy imports: DuckDB is imported when a connection opens, Polars only by :meth:`Workspace.ingest`
and the frame readers; it never imports TensorFlow (built TFDS datasets are read by
``curate.tfds_tables``; rows are checked by ``curate.annotations``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from curate import datasets as registry
from curate import labels, processes
from curate.annotations import FER2013_LABEL_COLUMN, SPLITS, normalize_annotations, with_vote_labels
from curate.readtime import resolve_vote_mode
from curate.workspace_schema import (  # noqa: F401  (re-exported: the workspace's names)
    _ANNOTATION_COLUMNS,
    _REJECT_COLUMNS,
    _STORED_COLUMNS,
    ANNOTATIONS_WITH_LANDMARKS,
    DATASET_ENUM_PLACEHOLDER,
    REMAPPED_VIEW,
    SPLIT_ENUM,
    TABLES,
    NothingIngestedError,
    WorkspaceBusyError,
    WorkspaceError,
    _columns,
    _enum,
    _has_table,
    _has_view,
    _schema_version,
)
from curate.workspace_votes import (  # noqa: F401  (re-exported)
    relabel_votes,
    stored_vote_mode,
    vote_excluded_counts,
    vote_mode_rows,
    vote_rows,
)

#: Folder used when neither ``--workspace`` nor ``CURATE_WORKSPACE`` is given.
DEFAULT_WORKSPACE = "curate-workspace"
#: Environment variable naming the workspace folder.
WORKSPACE_ENV = "CURATE_WORKSPACE"
#: Environment variable: seconds to wait for a busy workspace (default 2).
TIMEOUT_ENV = "CURATE_WORKSPACE_TIMEOUT"
DB_NAME = "workspace.duckdb"
#: 2: landmarks moved from ``annotations`` to ``arrays/``; 3: rows with FER+ votes carry the
#: FER+ label of a vote mode in ``label`` (FER2013's own label moved to ``fer2013_label``, the
#: mode recorded in ``ingests.vote_mode``) and ``remapped`` leaves out rows whose vote winner
#: is unknown / not a face. An older workspace is upgraded on first open.
SCHEMA_VERSION = 3
#: Folder of the landmark files, relative to the workspace folder.
ARRAYS_DIR = "arrays"
#: A landmark file being written: ``<final name>.writing-<pid>@<host>.tmp`` (:func:`writing_name`).
_WRITING_SUFFIX = ".tmp"
_WRITING_RE = re.compile(r"\.writing-(?P<pid>\d+)@(?P<host>.+)\.tmp$")


def writing_name(path: Path) -> Path:
    """The temporary name ``path`` is written under by this process, renamed to ``path`` once
    complete: a writer killed mid-write (a 40-100 MB AffectNet landmark file) leaves only a
    name that says it is unfinished and whose writer it was, which the next write transaction
    deletes when that process is gone (:meth:`Workspace._sweep_dead_writers_files`)."""
    return path.with_name(f"{path.name}.writing-{os.getpid()}@{socket.gethostname()}{_WRITING_SUFFIX}")


def resolve_workspace_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The workspace folder: ``path``, else ``$CURATE_WORKSPACE``, else ``./curate-workspace``."""
    if path is not None and str(path):
        return Path(path)
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


def check_dataset(dataset: str) -> str:
    """Return ``dataset`` if it is registered (``curate.datasets``), else raise naming the known ones."""
    if dataset not in registry.names():
        raise WorkspaceError(f"unknown dataset {dataset!r}; known datasets: {', '.join(registry.names())}")
    return dataset


def _now() -> _dt.datetime:
    return _dt.datetime.now().replace(microsecond=0)


@dataclasses.dataclass(frozen=True)
class IngestSummary:
    """What :meth:`Workspace.ingest` stored.

    Attributes
    ----------
    dataset, source, layout : str
        Dataset name, where the annotations came from, and the release layout read.
    rows : int
        Annotation rows stored.
    splits : dict[str, int]
        Rows stored per split.
    rejects : dict[str, int]
        Rejected rows per reason (reader rejects plus the workspace's own checks).
    vote_mode : str or None
        The FER+ vote mode of the stored labels (datasets with votes; ``None`` otherwise).
    vote_excluded : dict[str, int]
        Stored rows whose vote-mode winner is unknown / not a face, per canonical label name
        (``Uncertain``, ``No-Face``): every label policy leaves them out.
    """

    dataset: str
    source: str
    layout: str
    rows: int
    splits: dict[str, int]
    rejects: dict[str, int]
    vote_mode: str | None = None
    vote_excluded: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


class Workspace:
    """A curation workspace folder and its DuckDB database.

    Parameters
    ----------
    path : path-like, optional
        The folder; see :func:`resolve_workspace_dir` for the default.
    timeout : float, optional
        Seconds to wait for a busy database before :class:`WorkspaceBusyError`
        (default ``$CURATE_WORKSPACE_TIMEOUT`` or 2).

    Examples
    --------
    >>> ws = Workspace("curate-workspace")                      # doctest: +SKIP
    >>> with ws.connect() as con:                                # doctest: +SKIP
    ...     con.sql("SELECT dataset, count(*) FROM annotations GROUP BY ALL").fetchall()
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, timeout: float | None = None) -> None:
        self.root = resolve_workspace_dir(path)
        self.timeout = float(os.environ.get(TIMEOUT_ENV, "2")) if timeout is None else float(timeout)

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.root / "exports"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def exists(self) -> bool:
        return self.db_path.is_file()

    def require_database(self) -> None:
        """Raise :class:`NothingIngestedError` (saying what to run) when there is no database yet."""
        if not self.exists:
            raise NothingIngestedError(
                f"nothing ingested: workspace {self.root} has no database yet; run "
                "`curate ingest DATASET --manual-dir DIR` or `curate demo` first"
            )

    # -- connections -------------------------------------------------------------------

    def _open(self, write: bool) -> Any:
        import duckdb

        if write:
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.require_database()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                con = duckdb.connect(str(self.db_path), read_only=not write)
            except (duckdb.IOException, duckdb.ConnectionException) as error:
                text = str(error)
                lock = "lock" in text.lower() or "different configuration" in text
                if not lock:
                    raise WorkspaceError(f"{self.db_path}: cannot open workspace database: {text}") from None
                if time.monotonic() >= deadline:
                    pid = re.search(r"PID (\d+)", text)
                    holder = f" (process {pid.group(1)})" if pid else ""
                    raise WorkspaceBusyError(
                        f"workspace is busy: {self.root} is being written by another curate process{holder}; "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.05)
                continue
            literal = str(self.root.resolve()).replace("'", "''")
            con.execute(f"SET file_search_path = '{literal}'").fetchall()  # the arrays/ views' relative paths
            if not write and _schema_version(con) < SCHEMA_VERSION:
                con.close()
                with self.connect(write=True):  # upgrades the schema, then read as usual
                    pass
                continue
            return con

    @contextlib.contextmanager
    def connect(self, *, write: bool = False) -> Iterator[Any]:
        """A DuckDB connection; with ``write=True`` one transaction, committed on success.

        Read connections are read-only and may be open in many processes at once; temporary
        tables are allowed in them. A write connection creates missing tables first and
        rolls back everything on any exception.
        """
        con = self._open(write)
        try:
            if write:
                con.begin()
                self._ensure_schema(con)
            yield con
            if write:
                con.commit()
        except BaseException:
            if write:
                with contextlib.suppress(Exception):
                    con.rollback()
            raise
        finally:
            con.close()

    def _ensure_schema(self, con: Any) -> None:
        version = _schema_version(con) if _has_table(con, "meta") else SCHEMA_VERSION
        if version > SCHEMA_VERSION:
            raise WorkspaceError(f"workspace schema version {version} is newer than this curate ({SCHEMA_VERSION})")
        for ddl in TABLES.values():
            con.execute(ddl.replace(DATASET_ENUM_PLACEHOLDER, _enum(registry.names())))
        self._widen_dataset_enum(con)
        if version < 2 and "landmarks" in _columns(con, "annotations"):
            self._move_landmarks_out(con)
        if version < 3:
            self._label_votes_v3(con)
        if not _has_view(con, "landmarks"):
            self._define_landmark_views(con)
        self._sweep_dead_writers_files()
        if _schema_version(con) != SCHEMA_VERSION:
            con.execute("DELETE FROM meta WHERE key = 'schema_version'")
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

    @staticmethod
    def _widen_dataset_enum(con: Any) -> None:
        """Let ``annotations.dataset`` hold every registered dataset (one registered since)."""
        (declared,) = con.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'annotations' AND column_name = 'dataset'"
        ).fetchone()
        declared_names = [name.replace("''", "'") for name in re.findall(r"'((?:[^']|'')*)'", declared)]
        missing = [name for name in registry.names() if name not in declared_names]
        if missing:  # the old names keep their order, so stored values keep their codes
            con.execute(f"ALTER TABLE annotations ALTER dataset TYPE {_enum([*declared_names, *missing])}")

    def _move_landmarks_out(self, con: Any) -> None:
        """Schema 1 -> 2: each dataset's landmarks column to its file under ``arrays/``."""
        datasets = [r[0] for r in con.execute("SELECT DISTINCT dataset::VARCHAR FROM annotations").fetchall()]
        for dataset in datasets:
            relative = self._new_array_file(dataset)
            writing = writing_name(self.root / relative)
            copy_to_parquet(
                con,
                "SELECT id, landmarks FROM annotations WHERE dataset = ? AND landmarks IS NOT NULL ORDER BY rowid",
                writing,
                [dataset],
            )
            os.replace(writing, self.root / relative)
            (rows,) = con.execute("SELECT count(*) FROM read_parquet(?)", [str(self.root / relative)]).fetchone()
            if rows:
                con.execute("INSERT OR REPLACE INTO array_files VALUES (?, ?, ?)", [dataset, relative, rows])
            else:
                (self.root / relative).unlink()
        con.execute("ALTER TABLE annotations DROP COLUMN landmarks")
        self._define_landmark_views(con)

    @staticmethod
    def _label_votes_v3(con: Any) -> None:
        """Schema 2 -> 3: FER2013's label to ``fer2013_label``, ``label`` from the votes (majority)."""
        if "fer2013_label" not in _columns(con, "annotations"):
            con.execute("ALTER TABLE annotations ADD COLUMN fer2013_label TINYINT")
        if "vote_mode" not in _columns(con, "ingests"):
            con.execute("ALTER TABLE ingests ADD COLUMN vote_mode VARCHAR")
        con.execute(REMAPPED_VIEW.format(or_replace="OR REPLACE", if_not_exists=""))
        present = {r[0] for r in con.execute("SELECT DISTINCT dataset::VARCHAR FROM annotations").fetchall()}
        for dataset in registry.having("votes"):
            if dataset not in present:
                continue
            spec = registry.get(dataset)
            original = " ".join(f"WHEN {code} THEN {canonical}" for code, canonical in spec.raw_to_canonical.items())
            con.execute(
                f"UPDATE annotations SET fer2013_label = (CASE raw_label {original} ELSE NULL END) "
                "WHERE dataset = ? AND votes IS NOT NULL",
                [dataset],
            )
            relabel_votes(con, dataset, labels.DEFAULT_VOTE_MODE)

    def _new_array_file(self, dataset: str) -> str:
        import uuid

        (self.root / ARRAYS_DIR).mkdir(parents=True, exist_ok=True)
        return f"{ARRAYS_DIR}/landmarks-{dataset}-{uuid.uuid4().hex[:12]}.parquet"

    def _sweep_dead_writers_files(self) -> None:
        """Delete the temporaries (:func:`writing_name`) that writers on this host left when they
        were killed mid-ingest; those of live processes (this one included) stay. Runs at the
        start of every write transaction, under the workspace's write lock."""
        folder = self.root / ARRAYS_DIR
        if not folder.is_dir():
            return
        for path in folder.glob("*" + _WRITING_SUFFIX):
            writer = _WRITING_RE.search(path.name)
            if writer is None or not processes.gone(writer["host"], int(writer["pid"])):
                continue
            with contextlib.suppress(OSError):
                path.unlink()

    @staticmethod
    def _define_landmark_views(con: Any) -> None:
        """(Re)define ``landmarks`` (dataset, id, landmarks) over the files in ``array_files``."""
        files = con.execute("SELECT dataset, landmarks_file FROM array_files ORDER BY dataset").fetchall()
        parts = [
            f"SELECT '{dataset}' AS dataset, id, landmarks::FLOAT[] AS landmarks "
            f"FROM read_parquet('{file.replace(chr(39), chr(39) * 2)}')"
            for dataset, file in files
        ] or ["SELECT NULL::VARCHAR AS dataset, NULL::VARCHAR AS id, NULL::FLOAT[] AS landmarks WHERE false"]
        con.execute("CREATE OR REPLACE VIEW landmarks AS " + " UNION ALL ".join(parts))
        con.execute(ANNOTATIONS_WITH_LANDMARKS)

    def _remove_stale_array_files(self, used: set[str]) -> None:
        """Delete files under ``arrays/`` other than ``used`` (the committed ones; best effort)."""
        folder = self.root / ARRAYS_DIR
        if not folder.is_dir():
            return
        for path in folder.glob("landmarks-*.parquet"):
            if f"{ARRAYS_DIR}/{path.name}" not in used:
                with contextlib.suppress(OSError):
                    path.unlink()

    # -- what is there -----------------------------------------------------------------

    def ingested(self, con: Any | None = None) -> dict[str, int]:
        """Dataset -> stored annotation rows, for every ingested dataset ({} if none)."""
        if con is None:
            if not self.exists:
                return {}
            with self.connect() as own:
                return self.ingested(own)
        if not _has_table(con, "ingests"):
            return {}
        return dict(con.execute("SELECT dataset, rows FROM ingests WHERE rows > 0 ORDER BY dataset").fetchall())

    def require_datasets(self, con: Any, dataset: str | None = None) -> list[str]:
        """The datasets a command should work on: ``dataset`` (checked) or every ingested one."""
        present = self.ingested(con)
        if dataset is not None and dataset != "all":
            check_dataset(dataset)
            if dataset not in present:
                known = ", ".join(present) or "none"
                raise NothingIngestedError(
                    f"dataset {dataset!r} is not ingested in workspace {self.root} (ingested: {known}); "
                    f"run `curate ingest {dataset} --manual-dir DIR` first"
                )
            return [dataset]
        if not present:
            raise NothingIngestedError(
                f"nothing ingested in workspace {self.root}; run `curate ingest DATASET --manual-dir DIR` "
                "or `curate demo` first"
            )
        return list(present)

    def splits(self, con: Any, dataset: str) -> list[str]:
        rows = con.execute("SELECT DISTINCT split::VARCHAR FROM annotations WHERE dataset = ?", [dataset]).fetchall()
        return sorted((r[0] for r in rows), key=lambda s: (SPLITS.index(s) if s in SPLITS else 99, s))

    def check_split(self, con: Any, dataset: str, split: str | None) -> None:
        """Raise naming the available splits when ``split`` is not in ``dataset``."""
        if split is None:
            return
        available = self.splits(con, dataset)
        if split not in available:
            raise WorkspaceError(
                f"split {split!r} does not exist in {dataset} (workspace {self.root}); "
                f"available splits: {', '.join(available)}"
            )

    # -- ingest ------------------------------------------------------------------------

    def ingest(self, parsed: Any, *, dataset: str, source: str, vote_mode: str | None = None) -> IngestSummary:
        """Store a reader's :class:`~curate.formats.schema.ParsedTables` for ``dataset``.

        Replaces that dataset's annotations, rejects and extras in one transaction (the
        ``remapped`` view follows automatically). Rows the workspace itself refuses (label outside 0-10, unknown split,
        duplicate id, wrong dataset) join the rejects with a reason; valence/arousal outside
        [-1, 1] (AffectNet's -2 sentinel) become null with ``va_annotated`` false, so no
        sentinel ever enters a mean. Dataset-specific extra columns go to ``extras_<dataset>``.

        Rows with FER+ votes take the label of ``vote_mode`` (default
        :data:`curate.labels.DEFAULT_VOTE_MODE`; an error for a dataset without votes) by
        :func:`curate.annotations.with_vote_labels`; FER2013's own label is stored in
        ``fer2013_label`` and the mode in ``ingests.vote_mode``. Rows whose winner is unknown
        or not a face are stored (label 9 Uncertain / 10 No-Face) and counted in the summary's
        ``vote_excluded``: every policy leaves them out (``remapped``, the studies).
        """
        import polars as pl

        from curate.formats.schema import ANNOTATION_SCHEMA, append_rejects
        from curate.studies.holdout import holdout_key_sql

        check_dataset(dataset)
        frame = parsed.annotations
        missing = [c for c in ANNOTATION_SCHEMA if c not in frame.columns]
        if missing:
            raise WorkspaceError(f"annotations from {source}: missing column(s) {', '.join(missing)}")
        mode = resolve_vote_mode(dataset, vote_mode)
        frame = with_vote_labels(frame, dataset, mode)
        clean, refused = normalize_annotations(frame, dataset)
        rejects = append_rejects(parsed.rejects, refused)
        extras = [c for c in frame.columns if c not in ANNOTATION_SCHEMA and c != FER2013_LABEL_COLUMN]
        original = (
            pl.col(FER2013_LABEL_COLUMN).cast(pl.Int8)
            if FER2013_LABEL_COLUMN in clean.columns
            else pl.lit(None, dtype=pl.Int8).alias(FER2013_LABEL_COLUMN)
        )
        # Arrow string views: no copy of the id and path strings on the way to DuckDB.
        annotations = clean.select(*_STORED_COLUMNS, original).to_arrow(compat_level=pl.CompatLevel.newest())
        marks = clean.select("id", "landmarks")
        if marks["landmarks"].null_count():  # (a filter would copy the 228 MB of AffectNet's landmarks)
            marks = marks.filter(pl.col("landmarks").is_not_null())
        array_file: str | None = None
        try:
            with self.connect(write=True) as con, ThreadPoolExecutor(max_workers=1) as pool:
                # The landmark file is written beside the insert (both release the GIL).
                if marks.height:
                    # Written under a temporary name (swept after a crash) and renamed once complete.
                    array_file = self._new_array_file(dataset)
                    writing = writing_name(self.root / array_file)
                    written = pool.submit(
                        marks.write_parquet, writing, compression="zstd", compression_level=1, statistics=False
                    )
                # Strings stored plain: FSST/dictionary on 420k unique ids and paths would triple
                # the insert time to save ~35 MB (this connection's setting only).
                con.execute("SET force_compression = 'uncompressed'")
                self._store(con, dataset, annotations, rejects, clean, extras, holdout_key_sql)
                con.execute(
                    "INSERT OR REPLACE INTO ingests (dataset, source, layout, files, rows, rejects, created, vote_mode) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        dataset,
                        source,
                        parsed.layout,
                        json.dumps(dict(parsed.files)),
                        clean.height,
                        rejects.height,
                        _now(),
                        None if mode is None else mode.name,
                    ],
                )
                con.execute("DELETE FROM array_files WHERE dataset = ?", [dataset])
                if array_file is not None:
                    written.result()
                    os.replace(writing, self.root / array_file)
                    con.execute("INSERT INTO array_files VALUES (?, ?, ?)", [dataset, array_file, marks.height])
                self._define_landmark_views(con)
                split_counts = con.execute(
                    "SELECT split::VARCHAR, count(*) FROM annotations WHERE dataset = ? GROUP BY split", [dataset]
                ).fetchall()  # the enum column: far cheaper than grouping the frame's strings
                excluded = vote_excluded_counts(con, dataset)
                used = {r[0] for r in con.execute("SELECT landmarks_file FROM array_files").fetchall()}
        except BaseException:
            if array_file is not None:
                for path in (writing, self.root / array_file):
                    with contextlib.suppress(OSError):
                        path.unlink()
            raise
        self._remove_stale_array_files(used)
        reason_counts = rejects.group_by("reason").len()
        return IngestSummary(
            dataset=dataset,
            source=source,
            layout=parsed.layout,
            rows=clean.height,
            splits=dict(sorted(split_counts, key=lambda kv: SPLITS.index(kv[0]))),
            rejects=dict(sorted(zip(reason_counts["reason"], reason_counts["len"], strict=True))),
            vote_mode=None if mode is None else mode.name,
            vote_excluded=excluded,
        )

    @staticmethod
    def _store(con: Any, dataset: str, annotations: Any, rejects: Any, clean: Any, extras: list[str], key: Any) -> None:
        """The database half of :meth:`ingest` (inside its transaction)."""
        for table in ("annotations", "rejects"):
            con.execute(f"DELETE FROM {table} WHERE dataset = ?", [dataset])
        con.register("incoming_annotations", annotations)
        stored = ", ".join(_STORED_COLUMNS)
        con.execute(
            f"INSERT INTO annotations ({stored}, holdout_key, {FER2013_LABEL_COLUMN}) "
            f"SELECT {stored}, {key('id')}, {FER2013_LABEL_COLUMN} FROM incoming_annotations"
        )
        con.unregister("incoming_annotations")
        con.register("incoming_rejects", rejects.to_arrow())
        con.execute(f"INSERT INTO rejects SELECT {', '.join(_REJECT_COLUMNS)} FROM incoming_rejects")
        con.unregister("incoming_rejects")
        con.execute(f"DROP TABLE IF EXISTS extras_{dataset}")
        if extras:
            con.register("incoming_extras", clean.select(["id", *extras]).to_arrow())
            con.execute(f"CREATE TABLE extras_{dataset} AS SELECT * FROM incoming_extras")
            con.unregister("incoming_extras")

    def rejects(self, dataset: str | None = None, *, limit: int | None = None) -> Any:
        """The rejects table (Polars), optionally of one dataset and the first ``limit`` rows."""
        import polars as pl

        from curate.formats.schema import REJECT_SCHEMA

        with self.connect() as con:
            where, params = ("WHERE dataset = ?", [dataset]) if dataset else ("", [])
            tail = f" LIMIT {int(limit)}" if limit is not None else ""
            rows = con.sql(
                f"SELECT * FROM rejects {where} ORDER BY dataset, source_file, source_row{tail}", params=params
            ).to_arrow_table()
        return pl.from_arrow(rows).cast(REJECT_SCHEMA) if rows.num_rows else pl.DataFrame(schema=REJECT_SCHEMA)

    def annotations(self, dataset: str | None = None, *, columns: Sequence[str] | None = None) -> Any:
        """Stored annotations as a Polars frame (optionally one dataset, some columns)."""
        import polars as pl

        names = list(columns) if columns else [*_ANNOTATION_COLUMNS, FER2013_LABEL_COLUMN]
        cols = ", ".join(
            f"a.{c}::VARCHAR AS {c}" if c in ("dataset", "split") else ("l.landmarks" if c == "landmarks" else f"a.{c}")
            for c in names
        )
        source = "annotations a"
        if "landmarks" in names:  # stored under arrays/, joined back in table order
            source += " LEFT JOIN landmarks l ON l.dataset = a.dataset::VARCHAR AND l.id = a.id"
        with self.connect() as con:
            where, params = ("WHERE a.dataset = ?", [dataset]) if dataset else ("", [])
            order = " ORDER BY a.rowid" if "landmarks" in names else ""
            query = f"SELECT {cols} FROM {source} {where}{order}"
            return pl.from_arrow(con.sql(query, params=params).to_arrow_table())

    # -- policies, studies, runs ------------------------------------------------------

    @staticmethod
    def record_policy(con: Any, policy: labels.LabelPolicy, datasets: Sequence[str] = ()) -> None:
        """Store a policy's definition and mapping, and mark it applied to ``datasets``.

        Runs inside an open write transaction. The ``remapped`` view then serves the policy's
        label of every annotation of those datasets.
        """
        con.execute(
            "INSERT OR REPLACE INTO policies VALUES (?, ?, ?, ?, ?, ?)",
            [
                policy.name,
                policy.description,
                list(policy.classes),
                [None if t is None else t for t in policy.mapping],
                policy.source,
                _now(),
            ],
        )
        con.execute("DELETE FROM policy_maps WHERE policy = ?", [policy.name])
        con.executemany(
            "INSERT INTO policy_maps VALUES (?, ?, ?, ?)", [(policy.name, *row) for row in policy.duckdb_rows()]
        )
        for dataset in datasets:
            con.execute("INSERT OR REPLACE INTO applied VALUES (?, ?, ?)", [policy.name, dataset, _now()])

    def save_study(self, kind: str, dataset: str, results: Mapping[str, Any], *, out_dir: str | Path | None) -> int:
        """Store a study's results (JSON) and return its id."""
        with self.connect(write=True) as con:
            (next_id,) = con.execute("SELECT coalesce(max(id), 0) + 1 FROM studies").fetchone()
            con.execute(
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?, ?)",
                [next_id, kind, dataset, _now(), None if out_dir is None else str(out_dir), json_dumps(results)],
            )
        return int(next_id)

    def studies(self) -> list[dict[str, Any]]:
        """Every stored study: id, kind, dataset, created, out_dir (results via :meth:`study`)."""
        with self.connect() as con:
            cursor = con.execute("SELECT id, kind, dataset, created, out_dir FROM studies ORDER BY id")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def study(self, study_id: int) -> dict[str, Any]:
        with self.connect() as con:
            row = con.execute("SELECT results FROM studies WHERE id = ?", [study_id]).fetchone()
        if row is None:
            raise WorkspaceError(f"no study with id {study_id} in workspace {self.root}")
        return json.loads(row[0])

    def register_run(
        self,
        name: str,
        *,
        dataset: str,
        policy: str,
        vote_mode: str | None = None,
        path: str | os.PathLike[str] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a training run in the ``runs`` table (replacing a run of the same name).

        Parameters
        ----------
        name : str
            Run name, unique in the workspace (the run folder's name).
        dataset : str
            ``affectnet``, ``ferplus`` or ``rafdb``.
        policy : str
            The label policy name the run trained with (a built-in name or TOML policy name).
        vote_mode : str, optional
            FER+ vote mode (``majority`` ...), ``None`` for other datasets.
        path : path-like, optional
            The run folder (stored as given, made absolute).
        metrics : mapping, optional
            JSON-serialisable metrics. The remap study reads the accuracy of each
            evaluation view from ``metrics["balanced"]["accuracy"]`` and
            ``metrics["class_frequency"]["accuracy"]`` (view names as in
            ``predictions.parquet``); the flat keys ``"balanced/accuracy"`` and
            ``"class_frequency/accuracy"`` are accepted too.
        """
        check_dataset(dataset)
        if not name or not isinstance(name, str):
            raise WorkspaceError("run name must be a non-empty string")
        if vote_mode is not None:
            labels.get_vote_mode(vote_mode)
        with self.connect(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    name,
                    dataset,
                    str(policy),
                    vote_mode,
                    None if path is None else str(Path(path).resolve()),
                    _now(),
                    json_dumps(dict(metrics or {})),
                ],
            )

    def runs(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Registered runs, newest first: dicts with name, dataset, policy, vote_mode, path, created, metrics."""
        if not self.exists:
            return []
        with self.connect() as con:
            return runs_from(con, dataset)

    def export_parquet(self, query: str, path: str | os.PathLike[str], params: Sequence[Any] = ()) -> Path:
        """Write the rows of a SQL query to Parquet (zstd) with DuckDB's ``COPY``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            copy_to_parquet(con, query, path, params)
        return path


def runs_from(con: Any, dataset: str | None = None) -> list[dict[str, Any]]:
    if not _has_table(con, "runs"):
        return []
    where, params = ("WHERE dataset = ?", [dataset]) if dataset else ("", [])
    cursor = con.execute(
        f"SELECT name, dataset, policy, vote_mode, path, created, metrics FROM runs {where} ORDER BY created DESC, name",
        params,
    )
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        record["metrics"] = json.loads(record["metrics"] or "{}")
        out.append(record)
    return out


def copy_to_parquet(con: Any, query: str, path: Path, params: Sequence[Any] = ()) -> None:
    """``COPY (query) TO path`` as Parquet with zstd compression."""
    literal = str(path).replace("'", "''")
    con.execute(f"COPY ({query}) TO '{literal}' (FORMAT parquet, COMPRESSION zstd)", list(params))


def json_dumps(value: Any) -> str:
    """JSON text with NaN/inf as null and NumPy scalars/arrays as plain numbers/lists."""
    return json.dumps(_jsonable(value), allow_nan=False)


def _jsonable(value: Any) -> Any:
    import math

    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path | _dt.datetime | _dt.date):
        return str(value)
    return value
