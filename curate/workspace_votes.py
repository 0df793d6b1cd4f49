"""FER+ vote labels in the workspace: relabel a dataset's rows under a vote mode, count the rows
the vote mode leaves out, and the temporary tables the studies count under another mode.

Rows with votes (FERPlus) carry the FER+ label of the ``ingests.vote_mode`` they were stored
under; :func:`relabel_votes` re-derives them from the stored votes (``curate remap --vote-mode``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from curate import datasets as registry
from curate import labels
from curate.workspace_schema import WorkspaceError


def vote_rows(con: Any, dataset: str) -> tuple[Any, Any]:
    """``(ids, votes)`` of the stored rows of ``dataset`` with ten votes; ``votes`` is ``int64[N, 10]``."""
    import numpy as np

    width = len(labels.FERPLUS_VOTE_COLUMNS)
    columns = ", ".join(f"votes[{i + 1}] AS v{i}" for i in range(width))
    data = con.execute(
        f"SELECT id, {columns} FROM annotations WHERE dataset = ? AND len(votes) = {width} ORDER BY id", [dataset]
    ).fetchnumpy()
    ids = np.asarray(data["id"], dtype=object)
    if not len(ids):
        return ids, np.zeros((0, width), np.int64)
    return ids, np.stack([np.asarray(data[f"v{i}"], dtype=np.int64) for i in range(width)], axis=1)


def _vote_label_table(con: Any, dataset: str, vote_mode: str | labels.VoteMode, name: str) -> str:
    """Register ``name`` (id, label): the label of ``vote_mode`` of every stored row with votes."""
    import numpy as np
    import pyarrow as pa

    ids, votes = vote_rows(con, dataset)
    winner = labels.ferplus_vote_targets(votes, vote_mode).label if len(ids) else np.zeros(0, np.int64)
    con.register(name, pa.table({"id": pa.array(ids.tolist(), pa.string()), "label": pa.array(winner, pa.int8())}))
    return name


def relabel_votes(con: Any, dataset: str, vote_mode: str | labels.VoteMode) -> int:
    """Inside a write transaction: the stored labels of ``dataset``'s rows with votes become those
    of ``vote_mode`` (``ingests.vote_mode`` records it). Returns the rows relabelled.

    The labels come from the stored votes alone, so a review correction applied at ingest to a
    row with votes is replaced; re-ingest with ``--vote-mode`` and ``--corrections`` to keep it.
    """
    mode = labels.get_vote_mode(vote_mode) if isinstance(vote_mode, str) else vote_mode
    table = _vote_label_table(con, dataset, mode, "incoming_vote_labels")
    try:
        con.execute(
            "UPDATE annotations SET label = v.label FROM incoming_vote_labels v "
            "WHERE annotations.dataset = ? AND annotations.id = v.id",
            [dataset],
        )
        ((rows,),) = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    finally:
        con.unregister(table)
    con.execute("UPDATE ingests SET vote_mode = ? WHERE dataset = ?", [mode.name, dataset])
    return int(rows)


def stored_vote_mode(con: Any, dataset: str) -> str | None:
    """The vote mode of ``dataset``'s stored labels (``None`` for a dataset without votes)."""
    if not registry.get(dataset).votes:
        return None
    rows = con.execute("SELECT vote_mode FROM ingests WHERE dataset = ?", [dataset]).fetchall()
    return (rows[0][0] if rows else None) or labels.DEFAULT_VOTE_MODE


def vote_excluded_counts(con: Any, dataset: str, table: str = "annotations") -> dict[str, int]:
    """Rows of ``dataset`` in ``table`` every policy leaves out for their vote winner, per label name."""
    rows = con.execute(
        f"SELECT label, count(*) FROM {table} WHERE dataset = ? AND {labels.vote_excluded_sql()} GROUP BY label "
        "ORDER BY label",
        [dataset],
    ).fetchall()
    return {labels.CANONICAL_NAMES[label]: int(n) for label, n in rows}


def vote_mode_rows(con: Any, datasets: Sequence[str], vote_mode: str | None, name: str = "vote_mode_rows") -> str:
    """The table to count ``datasets`` from under ``vote_mode`` (works on a read-only connection).

    ``"annotations"`` when no mode is given or it is the stored one of every dataset with
    votes; otherwise a temporary table ``name`` (dataset, split, id, label, votes, holdout_key)
    whose rows with votes carry the label of ``vote_mode``, computed from the stored votes --
    the workspace itself is not changed. Raises a ``ValueError`` when no dataset has votes.
    """
    if vote_mode is None:
        return "annotations"
    voted = [d for d in datasets if registry.get(d).votes]
    if not voted:
        with_votes = ", ".join(registry.having("votes"))
        raise WorkspaceError(f"--vote-mode applies to {with_votes} only, not {', '.join(datasets)}")
    mode = labels.get_vote_mode(vote_mode)
    if all(stored_vote_mode(con, d) == mode.name for d in voted):
        return "annotations"
    parts = []
    for i, dataset in enumerate(voted):
        _vote_label_table(con, dataset, mode, f"{name}_{i}")
        parts.append(f"SELECT '{dataset}' AS dataset, id, label FROM {name}_{i}")
    listed = ", ".join("'" + d.replace("'", "''") + "'" for d in datasets)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT a.dataset, a.split, a.id, "
        "coalesce(v.label, a.label) AS label, a.votes, a.holdout_key "
        f"FROM annotations a LEFT JOIN ({' UNION ALL '.join(parts)}) v "
        f"ON v.dataset = a.dataset::VARCHAR AND v.id = a.id WHERE a.dataset::VARCHAR IN ({listed})"
    )
    for i in range(len(voted)):
        con.unregister(f"{name}_{i}")
    return name
