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
  each mode and per split;
* disagreement (:func:`vote_disagreement`): how strongly the crowd agrees on each majority
  label (share of votes cast for it, per class), and -- when FER2013's ``fer2013.csv`` was
  ingested too -- how often the FER+ majority label differs from the original FER2013 label,
  per class.
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


def load_fer2013_labels(con: Any, dataset: str = "ferplus") -> np.ndarray:
    """The FER2013 original label (canonical) of every row :func:`load_votes` returns, in its order.

    ``int64[N]``; -1 where the row has no FER2013 label (``fer2013_label`` null: only the votes
    file was ingested). ``label`` itself is the FER+ label of the ingest's vote mode.
    """
    data = con.execute(
        "SELECT coalesce(fer2013_label, -1) AS original FROM annotations "
        "WHERE dataset = ? AND votes IS NOT NULL ORDER BY id",
        [dataset],
    ).fetchnumpy()
    return np.asarray(data["original"], dtype=np.int64)


def vote_disagreement(votes: np.ndarray, original: np.ndarray | None = None) -> dict[str, Any]:
    """FER+ majority labels against the crowd's own consensus and the FER2013 original labels.

    Parameters
    ----------
    votes : int array (N, 10)
        FER+ votes (FER+ column order).
    original : int array (N,), optional
        Canonical FER2013 label per row, -1 where unknown (:func:`load_fer2013_labels`).

    Over the rows the ``majority`` mode keeps, per canonical class of the majority label:

    * ``agreement``: mean share of the row's ten (or fewer) votes cast for the majority label
      -- a consensus quality that needs no per-annotator identities (FER+ publishes only
      counts, so ``cleanlab.multiannotator`` does not apply);
    * ``unanimous_share``: share of rows where every vote went to the majority label;
    * with ``original``: rows with an original label, and the share whose majority label
      differs from the FER2013 label -- per majority class, per original class, overall --
      plus the ``int64[11, 11]`` confusion (rows = FER2013 label, columns = majority label).

    Also the overall entropy summary of every row's votes (bits). ``None`` for undefined
    shares (no rows).
    """
    votes = np.asarray(votes, dtype=np.int64)
    n_classes = labels.NUM_CANONICAL
    targets = labels.ferplus_vote_targets(votes, "majority")
    keep = targets.keep
    label = targets.label
    entropy = vote_entropy(votes)
    total = votes.sum(axis=1)
    column = np.array(
        [
            labels.FERPLUS_VOTE_TO_CANONICAL.index(c) if c in labels.FERPLUS_VOTE_TO_CANONICAL else 0
            for c in range(n_classes)
        ]
    )
    winner_votes = votes[np.arange(len(votes)), column[label]] if len(votes) else np.zeros(0, np.int64)
    share = np.divide(winner_votes, total, out=np.zeros(len(votes)), where=total > 0)

    def per_class(values: np.ndarray, cls: np.ndarray, mask: np.ndarray) -> list[float | None]:
        n = np.bincount(cls[mask], minlength=n_classes)
        sums = np.bincount(cls[mask], weights=values[mask].astype(np.float64), minlength=n_classes)
        return [float(sums[c] / n[c]) if n[c] else None for c in range(n_classes)]

    def mean(values: np.ndarray) -> float | None:
        return float(values.mean()) if len(values) else None

    out: dict[str, Any] = {
        "mode": "majority",
        "rows": int(len(votes)),
        "kept": int(keep.sum()),
        "kept_per_class": np.bincount(label[keep], minlength=n_classes).tolist(),
        "entropy": {
            "unit": "bits",
            "max": float(np.log2(votes.shape[1])) if votes.ndim == 2 and votes.shape[1] else None,
            "mean": mean(entropy),
            "median": float(np.median(entropy)) if len(entropy) else None,
            "p90": float(np.quantile(entropy, 0.9)) if len(entropy) else None,
            "unanimous_share": mean((entropy == 0).astype(np.float64)),
            "mean_kept": mean(entropy[keep]),
            "mean_dropped": mean(entropy[~keep]),
        },
        "agreement": {
            "overall": mean(share[keep]),
            "per_class": per_class(share, label, keep),
            "unanimous_share": mean((share[keep] == 1.0).astype(np.float64)),
            "unanimous_share_per_class": per_class((share == 1.0).astype(np.float64), label, keep),
        },
        "fer2013": None,
    }
    if original is not None:
        original = np.asarray(original, dtype=np.int64)
        known = keep & (original >= 0)
        if known.any():
            differs = (label != original).astype(np.float64)
            confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
            np.add.at(confusion, (original[known], label[known]), 1)
            out["fer2013"] = {
                "rows": int(known.sum()),
                "disagreement": float(differs[known].mean()),
                "rows_per_majority_class": np.bincount(label[known], minlength=n_classes).tolist(),
                "disagreement_per_majority_class": per_class(differs, label, known),
                "rows_per_fer2013_class": np.bincount(original[known], minlength=n_classes).tolist(),
                "disagreement_per_fer2013_class": per_class(differs, original, known),
                "confusion": confusion.tolist(),
            }
    return out


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
        original = load_fer2013_labels(con, dataset)
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
        "disagreement": vote_disagreement(votes, original),
    }


def _codes(values: np.ndarray, names: Sequence[str]) -> np.ndarray:
    order = np.array(list(names), dtype=object)
    sorter = np.argsort(order)
    return sorter[np.searchsorted(order[sorter], values)]
