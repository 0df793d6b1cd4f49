"""Counting under a label policy, shared by every study (balance, remap, the policy study).

Scope
-----
The two computations every study rests on, in both engines, giving identical numbers (a
test holds them to it): rows per (dataset, split, policy class) and the transition matrix
(canonical label -> policy class or dropped).

* DuckDB: :func:`class_counts_duckdb`, :func:`transition_matrix_duckdb` (SQL over the
  workspace tables, policy via ``LabelPolicy.sql_case``);
* Polars lazy: :func:`class_counts_polars`, :func:`transition_matrix_polars`,
  :func:`remap_frame` (policy via ``LabelPolicy.polars_expr``).

Rows with FER+ votes whose vote-mode label is a non-emotion winner (unknown -> Uncertain, NF
-> No-Face; :func:`curate.labels.vote_excluded_sql`) count as dropped under *every* policy,
keep-all included, as the FER+ authors leave them out; tables without a ``votes`` column
(and frames without one) have no such rows.

Shapes: a transition matrix is ``int64[NUM_CANONICAL, K + 1]`` (rows canonical labels 0-10,
columns the policy's K classes then "dropped"); count vectors are ``int64[K + 1]`` (last =
dropped).

This module imports only NumPy and :mod:`curate.labels` (Polars inside its functions) and no
other study module, so :mod:`curate.studies.balance` and :mod:`curate.studies.remap` both
import it without importing each other back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from curate import labels


def sql_list(values: Sequence[str]) -> str:
    """A SQL ``IN`` list of text literals, quotes doubled: ``('a', 'b')``."""
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


def _excluded_sql(con: Any, table: str) -> str:
    """The vote exclusion of ``table``'s rows (``false`` when it has no ``votes`` column)."""
    columns = {row[0] for row in con.execute(f"SELECT column_name FROM (DESCRIBE {table})").fetchall()}
    return labels.vote_excluded_sql() if "votes" in columns else "false"


def _class_sql(policy: labels.LabelPolicy) -> str:
    """Class index of a ``per_label`` row (``label``, ``excluded``); ``K`` = dropped."""
    return f"(CASE WHEN excluded THEN {policy.num_classes} ELSE coalesce({policy.sql_case('label')}, {policy.num_classes}) END)"


def _polars_class(frame: Any, policy: labels.LabelPolicy) -> Any:
    """Polars: class index per row, ``K`` where the policy or the vote mode drops it."""
    import polars as pl

    mapped = policy.polars_expr("label").cast(pl.Int64).fill_null(policy.num_classes)
    if "votes" not in frame.collect_schema().names():
        return mapped.alias("c")
    return (
        pl.when(labels.vote_excluded_polars()).then(pl.lit(policy.num_classes, pl.Int64)).otherwise(mapped).alias("c")
    )


def split_order(split: str) -> tuple[int, str]:
    """Sort key of a split name: train, validation, test, then any other by name."""
    order = ("train", "validation", "test")
    return (order.index(split) if split in order else 99, split)


# --------------------------------------------------------------------------------------
# Shared computations, DuckDB
# --------------------------------------------------------------------------------------


def class_counts_duckdb(
    con: Any,
    policy: labels.LabelPolicy,
    *,
    datasets: Sequence[str],
    split: str | None = None,
    table: str = "annotations",
    where: str = "",
) -> dict[tuple[str, str], np.ndarray]:
    """``(dataset, split) -> int64[K + 1]``: rows per policy class, last entry dropped rows."""
    k = policy.num_classes
    extra = " AND split = ?" if split is not None else ""
    # Count per canonical label first, then map the few aggregated rows through the policy:
    # the same numbers as mapping every row, without evaluating the CASE per row.
    rows = con.execute(
        f"WITH per_label AS (SELECT dataset, split, label, {_excluded_sql(con, table)} AS excluded, count(*) AS n "
        f"FROM {table} WHERE dataset IN {sql_list(datasets)}{extra}{(' AND ' + where) if where else ''} GROUP BY ALL) "
        f"SELECT dataset::VARCHAR, split::VARCHAR, {_class_sql(policy)} AS c, sum(n)::BIGINT "
        "FROM per_label GROUP BY ALL",
        [split] if split is not None else [],
    ).fetchall()
    out: dict[tuple[str, str], np.ndarray] = {}
    for dataset, split_name, c, n in rows:
        out.setdefault((dataset, split_name), np.zeros(k + 1, dtype=np.int64))[c] += n
    order = {d: i for i, d in enumerate(datasets)}
    return dict(sorted(out.items(), key=lambda kv: (order[kv[0][0]], split_order(kv[0][1]))))


def transition_matrix_duckdb(
    con: Any,
    policy: labels.LabelPolicy,
    *,
    datasets: Sequence[str],
    split: str | None = None,
    table: str = "annotations",
) -> np.ndarray:
    """``int64[11, K + 1]``: rows of each canonical label going to each class (last column dropped)."""
    k = policy.num_classes
    extra = " AND split = ?" if split is not None else ""
    rows = con.execute(
        f"WITH per_label AS (SELECT label, {_excluded_sql(con, table)} AS excluded, count(*) AS n FROM {table} "
        f"WHERE dataset IN {sql_list(datasets)}{extra} GROUP BY ALL) "
        f"SELECT label, {_class_sql(policy)} AS c, sum(n)::BIGINT FROM per_label GROUP BY ALL",
        [split] if split is not None else [],
    ).fetchall()
    matrix = np.zeros((labels.NUM_CANONICAL, k + 1), dtype=np.int64)
    for label, c, n in rows:
        matrix[label, c] += n
    return matrix


# --------------------------------------------------------------------------------------
# Shared computations, Polars (lazy)
# --------------------------------------------------------------------------------------


def remap_frame(frame: Any, policy: labels.LabelPolicy) -> Any:
    """Polars lazy transform: add ``class_index`` (Int8, null = dropped) and ``class_name``."""
    import polars as pl

    index = policy.polars_expr("label").alias("class_index")
    if "votes" in frame.lazy().collect_schema().names():
        index = pl.when(~labels.vote_excluded_polars()).then(index).alias("class_index")
    names = pl.Series("classes", list(policy.classes), dtype=pl.String)
    return (
        frame.lazy()
        .with_columns(index)
        .with_columns(
            pl.col("class_index")
            .cast(pl.Int64)
            .replace_strict(list(range(policy.num_classes)), names, default=None, return_dtype=pl.String)
            .alias("class_name")
        )
    )


def class_counts_polars(
    frame: Any, policy: labels.LabelPolicy, *, split: str | None = None
) -> dict[tuple[str, str], np.ndarray]:
    """Polars form of :func:`class_counts_duckdb` over a frame with ``dataset``, ``split``, ``label``."""
    import polars as pl

    k = policy.num_classes
    lazy = frame.lazy()
    if split is not None:
        lazy = lazy.filter(pl.col("split") == split)
    grouped = (
        lazy.select("dataset", "split", _polars_class(lazy, policy)).group_by("dataset", "split", "c").len().collect()
    )
    out: dict[tuple[str, str], np.ndarray] = {}
    for dataset, split_name, c, n in grouped.iter_rows():
        out.setdefault((dataset, split_name), np.zeros(k + 1, dtype=np.int64))[c] += n
    return dict(sorted(out.items(), key=lambda kv: (kv[0][0], split_order(kv[0][1]))))


def transition_matrix_polars(frame: Any, policy: labels.LabelPolicy, *, split: str | None = None) -> np.ndarray:
    """Polars form of :func:`transition_matrix_duckdb`."""
    import polars as pl

    k = policy.num_classes
    lazy = frame.lazy()
    if split is not None:
        lazy = lazy.filter(pl.col("split") == split)
    grouped = (
        lazy.select(pl.col("label").cast(pl.Int64), _polars_class(lazy, policy)).group_by("label", "c").len().collect()
    )
    matrix = np.zeros((labels.NUM_CANONICAL, k + 1), dtype=np.int64)
    np.add.at(matrix, (grouped["label"].to_numpy(), grouped["c"].to_numpy()), grouped["len"].to_numpy())
    return matrix
