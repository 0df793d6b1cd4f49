"""The workspace's tables: their DDL, the ``remapped`` view, its errors and small SQL probes.

:mod:`curate.workspace` (which re-exports these names) opens, upgrades and writes the
database; this module only says what it holds, so the vote-label helpers
(:mod:`curate.workspace_votes`) and the workspace share one definition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from curate import labels
from curate.annotations import SPLITS


class WorkspaceError(ValueError):
    """A workspace operation cannot proceed; the message says what and where."""


class WorkspaceBusyError(WorkspaceError):
    """Another process holds the workspace's write lock."""


class NothingIngestedError(WorkspaceError):
    """The workspace (or the dataset asked for) has no ingested annotations."""


def _enum(values: Sequence[str]) -> str:
    return "ENUM(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


#: ``dataset`` and ``split`` are stored as DuckDB ENUMs: grouping and filtering on them is
#: several times faster than on VARCHAR; read them back as text (``::VARCHAR``). The dataset
#: ENUM holds the registered datasets (``curate.datasets``); a workspace opened for writing
#: after a dataset was registered widens it (:meth:`Workspace._ensure_schema`).
DATASET_ENUM_PLACEHOLDER = "{dataset_enum}"
SPLIT_ENUM = _enum(SPLITS)

_VOTE_EXCLUDED = labels.vote_excluded_sql("a.label", "a.votes")
REMAPPED_VIEW = f"""CREATE {{or_replace}} VIEW {{if_not_exists}} remapped AS
        SELECT p.policy, a.dataset::VARCHAR AS dataset, a.id, a.split::VARCHAR AS split, a.label,
            CASE WHEN {_VOTE_EXCLUDED} THEN NULL ELSE m.class_index END AS class_index,
            CASE WHEN {_VOTE_EXCLUDED} THEN NULL ELSE m.class_name END AS class_name,
            CASE WHEN {_VOTE_EXCLUDED} THEN 'vote mode' WHEN m.class_index IS NULL THEN 'policy' END AS dropped_by
        FROM applied p
        JOIN annotations a ON a.dataset = p.dataset
        JOIN policy_maps m ON m.policy = p.policy AND m.canonical_label = a.label"""

#: Table name -> DDL. Columns of ``annotations`` follow ``ANNOTATION_SCHEMA`` in order, less
#: ``landmarks`` (see ``arrays/`` above and :meth:`Workspace._define_landmark_views`), then
#: ``holdout_key`` and ``fer2013_label`` (:data:`curate.annotations.FER2013_LABEL_COLUMN`).
TABLES: Mapping[str, str] = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
    "annotations": f"""CREATE TABLE IF NOT EXISTS annotations (
        id VARCHAR NOT NULL, dataset {DATASET_ENUM_PLACEHOLDER} NOT NULL, split {SPLIT_ENUM} NOT NULL,
        source_file VARCHAR, source_row BIGINT, source_path VARCHAR,
        raw_label SMALLINT, label TINYINT NOT NULL,
        valence FLOAT, arousal FLOAT, va_annotated BOOLEAN,
        face_x FLOAT, face_y FLOAT, face_width FLOAT, face_height FLOAT,
        votes SMALLINT[],
        holdout_key UINTEGER,  -- h(id) of curate.studies.holdout, computed at ingest
        fer2013_label TINYINT)""",  # rows with votes: FER2013's own label, canonical (label = FER+'s)
    # The landmark file of each dataset (path relative to the workspace folder).
    "array_files": """CREATE TABLE IF NOT EXISTS array_files (
        dataset VARCHAR PRIMARY KEY, landmarks_file VARCHAR NOT NULL, rows BIGINT)""",
    "rejects": """CREATE TABLE IF NOT EXISTS rejects (
        dataset VARCHAR, split VARCHAR, source_file VARCHAR, source_row BIGINT,
        id VARCHAR, reason VARCHAR, detail VARCHAR)""",
    "ingests": """CREATE TABLE IF NOT EXISTS ingests (
        dataset VARCHAR PRIMARY KEY, source VARCHAR, layout VARCHAR, files JSON,
        rows BIGINT, rejects BIGINT, created TIMESTAMP,
        vote_mode VARCHAR)""",  # the FER+ vote mode of the stored labels (datasets with votes)
    "policies": """CREATE TABLE IF NOT EXISTS policies (
        name VARCHAR PRIMARY KEY, description VARCHAR, classes VARCHAR[], mapping TINYINT[],
        source VARCHAR, applied TIMESTAMP)""",
    "policy_maps": """CREATE TABLE IF NOT EXISTS policy_maps (
        policy VARCHAR NOT NULL, canonical_label TINYINT NOT NULL, class_index TINYINT, class_name VARCHAR,
        PRIMARY KEY (policy, canonical_label))""",
    "applied": """CREATE TABLE IF NOT EXISTS applied (
        policy VARCHAR NOT NULL, dataset VARCHAR NOT NULL, applied TIMESTAMP, PRIMARY KEY (policy, dataset))""",
    # One row per (applied policy, annotation): the remapped labels, always in step with the
    # ingested annotations (a re-ingest needs no re-remap); class_index/class_name are NULL
    # where the row is dropped, ``dropped_by`` says why: 'policy', or 'vote mode' for a row
    # whose FER+ winner is unknown / not a face (left out under every policy, as the FER+
    # authors do; curate.labels.VOTE_EXCLUDED_LABELS).
    "remapped": REMAPPED_VIEW.format(or_replace="", if_not_exists="IF NOT EXISTS"),
    "studies": """CREATE TABLE IF NOT EXISTS studies (
        id BIGINT PRIMARY KEY, kind VARCHAR, dataset VARCHAR, created TIMESTAMP,
        out_dir VARCHAR, results JSON)""",
    "runs": """CREATE TABLE IF NOT EXISTS runs (
        name VARCHAR PRIMARY KEY, dataset VARCHAR NOT NULL, policy VARCHAR NOT NULL,
        vote_mode VARCHAR, path VARCHAR, created TIMESTAMP, metrics JSON)""",
}

_ANNOTATION_COLUMNS = (
    "id", "dataset", "split", "source_file", "source_row", "source_path", "raw_label", "label",
    "valence", "arousal", "va_annotated", "face_x", "face_y", "face_width", "face_height",
    "landmarks", "votes",
)  # fmt: skip
_STORED_COLUMNS = tuple(c for c in _ANNOTATION_COLUMNS if c != "landmarks")
#: ``annotations`` with its landmarks (null where a dataset has none), for exports and reads.
ANNOTATIONS_WITH_LANDMARKS = """CREATE OR REPLACE VIEW annotations_with_landmarks AS
    SELECT a.*, l.landmarks FROM annotations a
    LEFT JOIN landmarks l ON l.dataset = a.dataset::VARCHAR AND l.id = a.id"""
_REJECT_COLUMNS = ("dataset", "split", "source_file", "source_row", "id", "reason", "detail")


def _schema_version(con: Any) -> int:
    if not _has_table(con, "meta"):
        return 0
    rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    return int(rows[0][0]) if rows else 0


def _columns(con: Any, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main'", [table]
        ).fetchall()
    ]


def _has_view(con: Any, name: str) -> bool:
    ((count,),) = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND NOT internal", [name]
    ).fetchall()
    return bool(count)


def _has_table(con: Any, name: str) -> bool:
    ((count,),) = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'", [name]
    ).fetchall()  # fetchall: a half-read result would block the connection's next statement
    return bool(count)
