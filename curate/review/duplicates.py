"""Duplicate groups of a review dataset, from the workspace table ``duplicate_pairs``.

``curate audit duplicates`` stores exact and near-duplicate *pairs* in the workspace
(:func:`curate.audit.store_pairs`). On every ``curate review load`` the pairs touching the
dataset are read, joined into groups (connected components of the pair graph, over all
datasets: two AffectNet images that both copy one FER2013 image are one group) and written
to the samples:

* ``duplicate_group`` (int, 1..G, numbered in (dataset, id) order of the group's first
  member) -- the saved view ``duplicates`` sorts by it, so the copies sit side by side;
* ``duplicate_group_size`` (int) -- members of the whole group, other datasets included.

Samples outside any pair have neither field. A dataset without pairs (or a workspace
without the table) gets no fields and no view.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

#: Sample field with the group number, and the one with the group's size.
GROUP_FIELD = "duplicate_group"
SIZE_FIELD = "duplicate_group_size"
#: Workspace table written by ``curate audit duplicates``.
PAIRS_TABLE = "duplicate_pairs"
_COLUMNS = ("id_a", "dataset_a", "split_a", "id_b", "dataset_b", "split_b", "kind")


@dataclasses.dataclass
class DuplicateSummary:
    """What :func:`mark_duplicates` wrote."""

    pairs: int = 0
    groups: int = 0
    samples: int = 0

    def to_info(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def read_pairs(workspace: Any, dataset: str) -> Any | None:
    """The ``duplicate_pairs`` rows touching ``dataset`` (a Polars frame), or ``None`` without the table."""
    if workspace is None or not workspace.exists:
        return None
    import polars as pl

    with workspace.connect() as con:
        (present,) = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [PAIRS_TABLE]
        ).fetchone()
        if not present:
            return None
        rows = con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM {PAIRS_TABLE} WHERE dataset_a = ? OR dataset_b = ?",
            [dataset, dataset],
        ).fetchall()  # a few rows per duplicate; fetchall works on every DuckDB version
    return pl.DataFrame(rows, schema=dict.fromkeys(_COLUMNS, pl.String), orient="row")


def duplicate_groups(pairs: Any) -> Any:
    """Connected components of the pairs: a frame ``dataset, id, group, group_size`` (one row per image).

    Groups are numbered from 0 in (dataset, id) order of their first member; the work is
    vectorised (Polars joins and ``scipy.sparse.csgraph.connected_components``), no Python
    loop over pairs or images.
    """
    import polars as pl
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    schema = {"dataset": pl.String, "id": pl.String, "group": pl.Int64, "group_size": pl.Int64}
    if pairs is None or pairs.height == 0:
        return pl.DataFrame(schema=schema)
    side_a = pairs.select(pl.col("dataset_a").alias("dataset"), pl.col("id_a").alias("id"))
    side_b = pairs.select(pl.col("dataset_b").alias("dataset"), pl.col("id_b").alias("id"))
    nodes = pl.concat([side_a, side_b]).unique().sort("dataset", "id").with_row_index("node")
    a = side_a.join(nodes, on=["dataset", "id"], how="left", maintain_order="left")["node"].to_numpy()
    b = side_b.join(nodes, on=["dataset", "id"], how="left", maintain_order="left")["node"].to_numpy()
    n = nodes.height
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    # Renumber in order of first member (csgraph numbers by discovery, which already is node order,
    # but do not rely on it).
    _, first = np.unique(component, return_index=True)
    order = np.empty(len(first), dtype=np.int64)
    order[np.argsort(first)] = np.arange(len(first))
    group = order[component]
    size = np.bincount(group)[group]
    return nodes.drop("node").with_columns(
        pl.Series("group", group, dtype=pl.Int64), pl.Series("group_size", size, dtype=pl.Int64)
    )


def clear(ds: Any) -> None:
    present = [f for f in (GROUP_FIELD, SIZE_FIELD) if ds.has_sample_field(f)]
    if present:
        ds.delete_sample_fields(present)


def mark_duplicates(ds: Any, pairs: Any | None, dataset: str) -> DuplicateSummary:
    """Write ``duplicate_group`` / ``duplicate_group_size`` on the samples of ``ds`` that are in ``pairs``.

    Old values are removed first (the pairs may have changed since the last load). Groups
    are numbered 1..G among the groups with a member in ``ds``.
    """
    import fiftyone as fo
    import polars as pl
    from fiftyone import ViewField as F

    clear(ds)
    groups = duplicate_groups(pairs)
    mine = groups.filter(pl.col("dataset") == dataset)
    if mine.height:
        present = ds.match(F("source_id").is_in(mine["id"].to_list())).values("source_id")
        mine = mine.filter(pl.col("id").is_in(present))
    if mine.height == 0:
        return DuplicateSummary(pairs=0 if pairs is None else pairs.height)
    # Dense numbering 1..G in the order of the (global) group numbers.
    mine = mine.with_columns(pl.col("group").rank("dense").cast(pl.Int64).alias("group"))
    ids = mine["id"].to_list()
    ds.add_sample_field(GROUP_FIELD, fo.IntField)
    ds.add_sample_field(SIZE_FIELD, fo.IntField)
    ds.set_values(GROUP_FIELD, dict(zip(ids, mine["group"].to_list(), strict=True)), key_field="source_id")
    ds.set_values(SIZE_FIELD, dict(zip(ids, mine["group_size"].to_list(), strict=True)), key_field="source_id")
    return DuplicateSummary(pairs=pairs.height, groups=int(mine["group"].max()), samples=mine.height)


def group_stats(ds: Any) -> dict[str, int]:
    """``samples`` with a group, ``groups``, and ``cross_split`` groups (members in several splits: leakage)."""
    if not ds.has_sample_field(GROUP_FIELD):
        return {}
    view = ds.exists(GROUP_FIELD)
    if not len(view):
        return {}
    groups, splits = view.values([GROUP_FIELD, "split"])
    import polars as pl

    frame = pl.DataFrame({"group": groups, "split": splits}, schema={"group": pl.Int64, "split": pl.String})
    per_group = frame.group_by("group").agg(pl.col("split").n_unique().alias("splits"))
    return {
        "samples": frame.height,
        "groups": per_group.height,
        "cross_split": per_group.filter(pl.col("splits") > 1).height,
    }
