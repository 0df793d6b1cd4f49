"""FER+ vote modes compared: rows kept, agreement between modes, annotator ambiguity.

Scope
-----
The ten annotator votes of every ingested FERPlus row are read from the workspace (DuckDB)
as an ``(N, 10)`` array and turned into labels by :func:`curate.labels.ferplus_vote_targets`
-- the one implementation of the FER+ authors' rules the builders and trainer use too --
so the study's row counts are by construction those rules' counts. Everything is vectorised
over rows.

* rows kept per mode, split and canonical class (a row is kept unless its winner is
  ``unknown`` or ``NF``);
* pairwise agreement between modes: share of all rows on which both modes make the same
  decision (same kept label, or both drop), and share of rows both keep with the same label;
* annotator ambiguity: Shannon entropy of each row's raw vote distribution in bits
  (0 = unanimous; the maximum for ten votes is ``log2(10)`` = 3.32), averaged per class of
  each mode and per split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from curate import labels


def load_votes(con: Any, dataset: str = "ferplus") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(ids, splits, votes)`` of every stored row with votes; ``votes`` is ``int64[N, 10]``."""
    columns = ", ".join(f"votes[{i + 1}] AS v{i}" for i in range(len(labels.FERPLUS_VOTE_COLUMNS)))
    data = con.execute(
        f"SELECT id, split::VARCHAR AS split, {columns} FROM annotations WHERE dataset = ? AND votes IS NOT NULL ORDER BY id",
        [dataset],
    ).fetchnumpy()
    votes = (
        np.stack([np.asarray(data[f"v{i}"], dtype=np.int64) for i in range(len(labels.FERPLUS_VOTE_COLUMNS))], axis=1)
        if len(data["id"])
        else np.zeros((0, len(labels.FERPLUS_VOTE_COLUMNS)), np.int64)
    )
    return np.asarray(data["id"], dtype=object), np.asarray(data["split"], dtype=object), votes


def has_votes(workspace: Any, dataset: str = "ferplus") -> bool:
    """Whether any stored row of ``dataset`` carries FER+ votes."""
    with workspace.connect() as con:
        row = con.execute(
            "SELECT count(*) FROM annotations WHERE dataset = ? AND votes IS NOT NULL", [dataset]
        ).fetchone()
    return bool(row and row[0])


def vote_entropy(votes: np.ndarray) -> np.ndarray:
    """Entropy in bits of each row's vote distribution (0 for rows without votes)."""
    votes = np.asarray(votes, dtype=np.float64)
    total = votes.sum(axis=1, keepdims=True)
    p = np.divide(votes, total, out=np.zeros_like(votes), where=total > 0)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return -(p * logs).sum(axis=1)


def mode_outcomes(votes: np.ndarray, modes: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per mode, ``(label, keep)`` arrays from :func:`curate.labels.ferplus_vote_targets`."""
    out = {}
    for mode in modes:
        targets = labels.ferplus_vote_targets(votes, mode)
        out[mode] = (targets.label, targets.keep)
    return out


def vote_mode_study(workspace: Any, *, modes: Sequence[str] | None = None, dataset: str = "ferplus") -> dict[str, Any]:
    """Compare FER+ vote modes on the ingested votes; every number as a JSON-ready dict."""
    mode_names = list(modes) if modes else list(labels.VOTE_MODES)
    for mode in mode_names:
        labels.get_vote_mode(mode)
    with workspace.connect() as con:
        workspace.require_datasets(con, dataset)
        ids, splits, votes = load_votes(con, dataset)
    if len(ids) == 0:
        raise ValueError(f"{dataset}: no rows with FER+ votes in the workspace; ingest fer2013new.csv first")
    order = ("train", "validation", "test")
    split_names = sorted(set(splits.tolist()), key=lambda s: (order.index(s) if s in order else 9, s))
    split_code = _codes(splits, split_names)
    n_splits, n_classes = len(split_names), labels.NUM_CANONICAL
    outcomes = mode_outcomes(votes, mode_names)
    entropy = vote_entropy(votes)
    per_mode: dict[str, Any] = {}
    for mode, (label, keep) in outcomes.items():
        cell = split_code * n_classes + label
        kept = np.bincount(cell[keep], minlength=n_splits * n_classes).reshape(n_splits, n_classes)
        ent_sum = np.bincount(cell[keep], weights=entropy[keep], minlength=n_splits * n_classes).reshape(
            n_splits, n_classes
        )
        class_kept = kept.sum(axis=0)
        class_ent = ent_sum.sum(axis=0)
        per_mode[mode] = {
            "target": labels.VOTE_MODES[mode].target,
            "kept": {s: int(kept[i].sum()) for i, s in enumerate(split_names)},
            "dropped": {s: int((split_code == i).sum() - kept[i].sum()) for i, s in enumerate(split_names)},
            "counts": {s: kept[i].tolist() for i, s in enumerate(split_names)},
            "mean_entropy_by_class": [
                float(class_ent[c] / class_kept[c]) if class_kept[c] else None for c in range(n_classes)
            ],
            "mean_entropy_dropped": float(entropy[~keep].mean()) if (~keep).any() else None,
        }
    agreement: dict[str, dict[str, Any]] = {}
    for a in mode_names:
        agreement[a] = {}
        label_a, keep_a = outcomes[a]
        for b in mode_names:
            label_b, keep_b = outcomes[b]
            same = np.where(keep_a & keep_b, label_a == label_b, keep_a == keep_b)
            both = keep_a & keep_b
            agreement[a][b] = {
                "decision": float(same.mean()),
                "label_when_both_keep": float((label_a[both] == label_b[both]).mean()) if both.any() else None,
                "both_keep": int(both.sum()),
            }
    return {
        "kind": "vote-modes",
        "dataset": dataset,
        "rows": int(len(ids)),
        "splits": split_names,
        "rows_per_split": {s: int((split_code == i).sum()) for i, s in enumerate(split_names)},
        "canonical_names": list(labels.CANONICAL_NAMES),
        "modes": mode_names,
        "per_mode": per_mode,
        "agreement": agreement,
        "mean_entropy_per_split": {s: float(entropy[split_code == i].mean()) for i, s in enumerate(split_names)},
        "entropy_unit": "bits",
    }


def _codes(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    order = np.array(list(names), dtype=object)
    sorter = np.argsort(order)
    return sorter[np.searchsorted(order[sorter], values)]
