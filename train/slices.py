"""Accuracy per slice of an evaluation view, with bootstrap intervals and the best-worst gap.

Slices come from what each dataset stores, as :mod:`curate.slicing` defines them once for
the trainer and the review app (RAF-DB gender, race, age group; FERPlus vote agreement;
AffectNet valence-arousal quadrant and face-box size). :func:`read_facts` reads them from a
build, with the FER+ votes.

:func:`slice_metrics` gives, per attribute and value, the rows, accuracy and balanced
accuracy (mean recall over the classes present in the slice), each with a 95 % percentile
bootstrap interval over the slice's rows (:data:`REPLICATES`, seeded; rows resampled within
each label), and the gap between
the best and the worst slice with its own interval (the same replicates, so the gap's
interval carries both slices' noise). A slice of fewer than :data:`MIN_ROWS` rows is listed
but not ranked: its interval is too wide to call it best or worst.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from curate.slicing import (  # noqa: F401 - re-exported: the attributes are defined once, in curate
    SliceError,
    attribute_values,
    attributes_of,
    check_attributes,
    vote_agreement,
)

#: Bootstrap replicates of every interval.
REPLICATES = 1000
#: Slices smaller than this are reported but neither best nor worst.
MIN_ROWS = 30
#: The seed of the bootstrap draws.
SEED = 0


@dataclasses.dataclass
class SplitFacts:
    """What one split says about its rows beyond the label: slicing attributes and FER+ votes."""

    ids: np.ndarray
    attributes: dict[str, np.ndarray]
    notes: dict[str, Any]
    votes: np.ndarray | None = None

    def for_ids(self, ids: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The attributes (None for an unknown id) and votes of ``ids``, in that order."""
        where = {key: i for i, key in enumerate(self.ids.tolist())}
        rows = np.array([where.get(str(i), -1) for i in ids], dtype=np.int64)
        found = rows >= 0
        attributes = {
            name: np.where(found, values[np.maximum(rows, 0)], None).astype(object)
            for name, values in self.attributes.items()
        }
        votes = None
        if self.votes is not None and found.all():
            votes = self.votes[rows]
        return attributes, votes


def read_facts(source: Any, split: str, dataset: str) -> SplitFacts:
    """Slicing attributes (and FER+ votes) of every row of a split, images untouched.

    An input the source lacks (an older build, an in-memory source) leaves its attribute
    out; ``notes["missing"]`` names the features it lacked.
    """
    from curate import datasets
    from curate.slicing import TFDS_FEATURES

    attributes = attributes_of(dataset)
    wanted = ["id", *dict.fromkeys(f for a in attributes for f in TFDS_FEATURES[a])]
    if datasets.get(dataset).votes and "votes" not in wanted:
        wanted.append("votes")
    ds = source.load(split, images=False, features=tuple(wanted))
    parts: dict[str, list[np.ndarray]] = {}
    for batch in ds.batch(8192).as_numpy_iterator():
        for key, value in batch.items():
            parts.setdefault(key, []).append(np.asarray(value))
    raw = {key: np.concatenate(value) for key, value in parts.items()}
    ids = np.array([i.decode() if isinstance(i, bytes) else str(i) for i in raw.get("id", [])], dtype=object)
    values: dict[str, np.ndarray] = {}
    notes: dict[str, Any] = {"missing": [f for f in wanted if f not in raw]}
    for attribute in attributes:
        result = attribute_values(attribute, raw)
        if result is not None:
            values[attribute], extra = result
            notes.update(extra)
    return SplitFacts(ids=ids, attributes=values, notes=notes, votes=raw.get("votes"))


def bootstrap_scores(labels: np.ndarray, predicted: np.ndarray, rng: np.random.Generator, replicates: int) -> np.ndarray:
    """(replicates, 2) accuracy and balanced accuracy of rows resampled with replacement within each label.

    Stratified, as ``train.compare`` resamples: every replicate keeps each class's row count,
    so a rare class is never missing from a replicate. (Resampling all rows at once drops a
    rare class from about a third of the replicates, and with it its usually low recall:
    the intervals of balanced accuracy then sit above the figure they surround.)
    """
    labels, correct = np.asarray(labels), np.asarray(labels) == np.asarray(predicted)
    hits = np.zeros(replicates)
    recalls = []
    for c in np.unique(labels):
        right = correct[labels == c]
        drawn = right[rng.integers(0, len(right), size=(replicates, len(right)))].sum(axis=1)
        hits += drawn
        recalls.append(drawn / len(right))
    return np.stack([hits / max(len(labels), 1), np.mean(recalls, axis=0)], axis=1)


def ci95(draws: np.ndarray) -> list[list[float]]:
    """The 95 % percentile interval ``[low, high]`` of each column of ``draws`` (replicates x
    figures, or one figure per replicate), replicates that are NaN skipped."""
    draws = np.asarray(draws)
    low, high = np.nanpercentile(draws.reshape(len(draws), -1), [2.5, 97.5], axis=0)
    return [[float(a), float(b)] for a, b in zip(low, high, strict=True)]


def balanced_accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean([np.mean(predicted[labels == c] == c) for c in np.unique(labels)]))


def slice_metrics(
    labels: np.ndarray,
    predicted: np.ndarray,
    attributes: dict[str, np.ndarray],
    *,
    replicates: int = REPLICATES,
    seed: int = SEED,
) -> dict[str, Any]:
    """Per attribute: each value's rows, accuracy and balanced accuracy with 95 % intervals, and the gap.

    ``attributes`` maps an attribute to one value per row (None: the row is left out of it).
    """
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    out: dict[str, Any] = {}
    for number, (attribute, values) in enumerate(attributes.items()):
        rng = np.random.default_rng([seed, number])
        values = np.asarray(values, dtype=object)
        entry: dict[str, Any] = {"values": {}}
        draws: dict[str, np.ndarray] = {}
        for value in sorted({v for v in values if v is not None}, key=str):
            rows = values == value
            y, p = labels[rows], predicted[rows]
            draws[value] = bootstrap_scores(y, p, rng, replicates)
            accuracy_ci, balanced_ci = ci95(draws[value])
            entry["values"][value] = {
                "rows": int(rows.sum()),
                "accuracy": {"value": float(np.mean(y == p)), "ci95": accuracy_ci},
                "balanced_accuracy": {"value": balanced_accuracy(y, p), "ci95": balanced_ci},
                "ranked": bool(rows.sum() >= MIN_ROWS),
            }
        ranked = [v for v, e in entry["values"].items() if e["ranked"]]
        for column, metric in enumerate(("accuracy", "balanced_accuracy")):
            if len(ranked) < 2:
                entry[f"{metric}_gap"] = None
                continue
            best = max(ranked, key=lambda v: entry["values"][v][metric]["value"])
            worst = min(ranked, key=lambda v: entry["values"][v][metric]["value"])
            (gap_ci,) = ci95(draws[best][:, column] - draws[worst][:, column])
            entry[f"{metric}_gap"] = {
                "best": best,
                "worst": worst,
                "value": entry["values"][best][metric]["value"] - entry["values"][worst][metric]["value"],
                "ci95": gap_ci,
            }
        out[attribute] = entry
    return out


def slices_markdown(slices: dict[str, Any], *, title: str = "") -> str:
    """One table per attribute: value, rows, accuracy and balanced accuracy [95 %], then the gap."""

    def figure(entry: dict[str, Any]) -> str:
        low, high = entry["ci95"]
        return f"{100 * entry['value']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

    lines = [title, ""] if title else []
    for attribute, entry in slices.items():
        lines += [f"| {attribute} | rows | accuracy [95%] | balanced accuracy [95%] |", "|---|---:|---:|---:|"]
        for value, numbers in entry["values"].items():
            mark = "" if numbers["ranked"] else f" (under {MIN_ROWS} rows: not ranked)"
            lines.append(
                f"| {value}{mark} | {numbers['rows']:,} | {figure(numbers['accuracy'])} | "
                f"{figure(numbers['balanced_accuracy'])} |"
            )
        gaps = []
        for metric in ("accuracy", "balanced_accuracy"):
            gap = entry.get(f"{metric}_gap")
            if gap:
                low, high = gap["ci95"]
                gaps.append(
                    f"{metric.replace('_', ' ')} {100 * gap['value']:.1f} points ({gap['best']} − {gap['worst']}; "
                    f"95% [{100 * low:.1f}, {100 * high:.1f}])"
                )
        lines += ["", f"Best − worst slice: {'; '.join(gaps) if gaps else 'fewer than two slices to rank'}.", ""]
    return "\n".join(lines)
