"""Which rows a run trains and is evaluated on: plain data, no TensorFlow.

Scope
-----
:func:`select_rows` takes one :class:`SplitScan` per split a dataset's run reads (ids, the
labels under the run's policy and vote mode, which rows the policy keeps, canonical labels)
and decides, in NumPy, which rows go where (the ``tf.data`` side, :mod:`train.data`, only
reads the answer):

* **training rows**: rows the policy keeps, outside the class-frequency hold-out and not
  listed by ``--exclude``; at most ``--max-train-examples`` (smallest salted id hashes);
* **evaluation views** (:data:`VIEWS`, splits per dataset in :func:`view_splits`):
  ``balanced`` (AffectNet: the whole validation split; FERPlus / RAF-DB: a class-balanced
  subsample), ``class_frequency`` (the hashed-id hold-out of train, ``--exclude`` ids
  removed) and ``test`` (FERPlus / RAF-DB: the whole test split), each capped at
  ``--max-eval-examples``;
* the training class counts, the class weights (``curate balance``'s rule) and the
  ``--exclude`` summary.

Which rows are chosen depends on the data and the hold-out rule (``--holdout-fraction``,
``--holdout-seed``), never on ``--seed``: the seeds of one recipe differ in their training
luck only, so a comparison scores them on the same rows.

The result, :class:`RowSelection`, is a dataclass of NumPy arrays;
:meth:`RowSelection.frame` gives it as one Polars frame (a row per chosen row and role).
Importing this module and calling :func:`select_rows` imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from curate import datasets, readtime
from curate import labels as _labels
from train.config import TrainConfig, TrainError


def view_splits(dataset: str) -> tuple[str, str, str | None]:
    """(train, balanced-view source, test-view source or None) of a registered dataset."""
    spec = datasets.get(dataset)
    return spec.train_split, spec.balanced_view_split, spec.test_split


VIEWS = ("balanced", "class_frequency", "test")
#: A selection view whose balanced-accuracy standard error exceeds this cannot rank epochs.
SELECTION_STANDARD_ERROR_WARNING = 0.05


# --------------------------------------------------------------------------------------
# Per-split facts and the row rules
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class SplitScan:
    """Per-row facts of one split under a policy: ``ids``, ``labels`` (hard class index;
    argmax for soft targets), ``keep`` (bool) and ``canonical`` labels."""

    split: str
    ids: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    canonical: np.ndarray

    @classmethod
    def from_features(cls, split: str, ids: Any, raw_labels: Any, config: TrainConfig) -> SplitScan:
        """Apply the run's policy (and vote mode) to the raw label feature of a split's rows
        with :func:`curate.readtime.policy_targets_numpy` (the NumPy twin of the TF path).

        ``ids`` may be bytes or strings; ``raw_labels`` is the dataset's label feature
        (``curate.readtime.label_feature``: canonical labels, or FER+ vote counts).
        """
        feature = readtime.label_feature(config.dataset)
        targets = readtime.policy_targets_numpy(
            {feature: np.asarray(raw_labels)},
            config.dataset,
            config.policy_object,
            vote_mode=config.resolved_vote_mode,
        )
        label = targets["label"]
        return cls(
            split=split,
            ids=np.array([i.decode() if isinstance(i, bytes) else str(i) for i in ids], dtype=object),
            labels=(label.argmax(axis=-1) if label.ndim == 2 else label).astype(np.int64),
            keep=targets["keep"].astype(bool),
            canonical=targets["canonical"].astype(np.int64),
        )


def stable_hash(text: str, seed: int = 0) -> int:
    """A platform-independent 64-bit hash of ``text`` (blake2b), salted by ``seed``."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{text}".encode(), digest_size=8).digest(), "big")


def holdout_mask(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The class-frequency hold-out of train: the studies' hashed-id rule, so a study and a
    run agree on which rows were never trained on (``curate.studies.holdout``)."""
    from curate.studies.holdout import class_frequency_holdout

    return np.asarray(class_frequency_holdout(list(ids), fraction, seed), dtype=bool)


def balanced_subsample(
    ids: np.ndarray, labels_: np.ndarray, mask: np.ndarray, seed: int, *, per_class_cap: int = 0
) -> np.ndarray:
    """Among the rows in ``mask``: the same number per present class (the smallest class
    count, at most ``per_class_cap`` when set), the rows with the smallest salted id hashes.
    Deterministic and independent of row order."""
    out = np.zeros(len(ids), dtype=bool)
    rows = np.flatnonzero(mask)
    if rows.size == 0:
        return out
    classes, counts = np.unique(labels_[rows], return_counts=True)
    per_class = int(counts.min())
    if per_class_cap:
        per_class = min(per_class, per_class_cap)
    for class_index in classes:
        class_rows = rows[labels_[rows] == class_index]
        order = sorted(class_rows, key=lambda r: stable_hash(ids[r], seed))
        out[order[:per_class]] = True
    return out


def cap_rows(ids: np.ndarray, mask: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Keep at most ``limit`` of the selected rows (smallest salted id hashes); 0 = no cap."""
    if not limit or mask.sum() <= limit:
        return mask
    rows = np.flatnonzero(mask)
    order = sorted(rows, key=lambda r: stable_hash(ids[r], seed + 7919))
    capped = np.zeros_like(mask)
    capped[order[:limit]] = True
    return capped


def class_weights(counts: np.ndarray, method: str) -> np.ndarray:
    """Per-class loss weights, the same as ``curate balance`` (``curate.studies.balance``):
    mean weight over training rows is 1, empty classes get 0."""
    from curate.studies.balance import class_weights as study_weights

    return np.asarray(study_weights(np.asarray(counts, dtype=np.float64), method), dtype=np.float64)


def balanced_accuracy_standard_error(labels: np.ndarray, recall: float = 0.5) -> float:
    """Standard error of balanced accuracy on rows with ``labels`` when every class's recall is
    ``recall`` (0.5 is the worst case): ``sqrt(sum_c recall (1 - recall) / n_c) / K``."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    if counts.size == 0:
        return float("nan")
    return float(np.sqrt((recall * (1 - recall) / counts).sum()) / counts.size)


# --------------------------------------------------------------------------------------
# The selection
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ViewRows:
    """The rows of one evaluation view: ``ids``, hard ``labels`` and ``canonical`` labels (same
    order, the split's), the ``split`` they come from and what the view is."""

    name: str
    split: str
    ids: np.ndarray
    labels: np.ndarray
    canonical: np.ndarray
    description: str


@dataclasses.dataclass(frozen=True)
class RowSelection:
    """Which rows a run trains and is evaluated on (:func:`select_rows`)."""

    dataset: str
    class_names: tuple[str, ...]
    train_split: str
    #: Training rows (split order): ids, hard labels, canonical labels.
    train_ids: np.ndarray
    train_labels: np.ndarray
    train_canonical: np.ndarray
    #: Training rows per class, and the per-class loss weights computed from them.
    train_counts: np.ndarray
    class_weights: np.ndarray
    #: Evaluation views by name (:data:`VIEWS` order, ``test`` only where the dataset has one).
    views: dict[str, ViewRows]
    monitor_view: str
    #: ``"hard"`` (class index) or ``"soft"`` (a distribution over classes) training targets.
    target_kind: str
    #: ``--exclude``: the ids listed for this dataset (none without the option) ...
    exclude_ids: np.ndarray
    #: ... and its summary: file, SHA-256, ids listed, training-split rows dropped.
    exclusions: dict[str, Any] | None = None

    @property
    def train_count(self) -> int:
        return len(self.train_ids)

    @property
    def total_rows(self) -> int:
        """Training rows plus the rows of every view (what a cache holds)."""
        return self.train_count + sum(len(view.ids) for view in self.views.values())

    @property
    def classes_without_training_rows(self) -> list[str]:
        return [name for name, count in zip(self.class_names, self.train_counts, strict=True) if count == 0]

    @property
    def selection_standard_error(self) -> float:
        """Standard error of balanced accuracy on the monitored view, at its worst (every
        class recall 0.5): ``sqrt(sum_c 0.25 / n_c) / K``. Epochs whose scores differ by less
        than about twice this cannot be told apart."""
        return balanced_accuracy_standard_error(self.views[self.monitor_view].labels)

    def frame(self) -> Any:
        """The selection as one Polars frame: ``role`` (``train`` or a view's name), ``split``,
        ``id``, ``label`` (policy class index) and ``canonical``, training rows first."""
        import polars as pl

        parts = [("train", self.train_split, self.train_ids, self.train_labels, self.train_canonical)]
        parts += [(view.name, view.split, view.ids, view.labels, view.canonical) for view in self.views.values()]
        schema = {"role": pl.String, "split": pl.String, "id": pl.String, "label": pl.Int64, "canonical": pl.Int64}
        frames = []
        for role, split, ids, row_labels, canonical in parts:
            columns = {
                "role": [role] * len(ids),
                "split": [split] * len(ids),
                "id": [str(i) for i in ids],
                "label": np.asarray(row_labels, dtype=np.int64),
                "canonical": np.asarray(canonical, dtype=np.int64),
            }
            frames.append(pl.DataFrame(columns, schema=schema))
        return pl.concat(frames)


def select_rows(config: TrainConfig, scans: Mapping[str, SplitScan]) -> RowSelection:
    """Choose the training rows and the rows of each evaluation view (see the module docstring).

    Parameters
    ----------
    config : TrainConfig
        The run's options: dataset, policy, hold-out, caps, ``--exclude``, class weights.
    scans : mapping split name -> SplitScan
        Every split of :func:`view_splits` for the dataset.

    Returns
    -------
    RowSelection

    Raises
    ------
    TrainError
        A split is missing, or the policy leaves the training rows or a view empty.
    """
    train_split, balanced_split, test_split = view_splits(config.dataset)
    for split in (train_split, balanced_split, test_split):
        if split and split not in scans:
            raise TrainError(f"{config.dataset} has no {split!r} split (splits: {', '.join(scans)})")
    policy = config.policy_object
    train_scan = scans[train_split]
    exclusions = config.exclusions()
    exclude_ids = np.asarray(exclusions[0] if exclusions else (), dtype=object)
    # --exclude: listed ids leave the training rows and the hold-out (which stays the same
    # hashed-id rule for every other row); the balanced and test views keep them.
    listed = np.isin(train_scan.ids, exclude_ids) if exclude_ids.size else np.zeros(len(train_scan.ids), dtype=bool)
    held = holdout_mask(train_scan.ids, config.holdout_fraction, config.holdout_seed)
    train_rows = cap_rows(
        train_scan.ids, train_scan.keep & ~held & ~listed, config.max_train_examples, config.holdout_seed
    )
    if not train_rows.any():
        kept_names = sorted(
            {_labels.CANONICAL_NAMES[c] for c in train_scan.canonical if 0 <= c < _labels.NUM_CANONICAL}
        )
        raise TrainError(
            f"policy {policy.name!r} leaves no training rows in {config.dataset} "
            f"(labels present: {', '.join(kept_names) or 'none'}; policy classes: {', '.join(policy.classes)})"
        )
    views = _view_rows(config, scans, train_scan.keep & held & ~listed)
    train_counts = np.bincount(train_scan.labels[train_rows], minlength=policy.num_classes)
    return RowSelection(
        dataset=config.dataset,
        class_names=tuple(policy.classes),
        train_split=train_split,
        train_ids=train_scan.ids[train_rows],
        train_labels=train_scan.labels[train_rows],
        train_canonical=train_scan.canonical[train_rows],
        train_counts=train_counts,
        class_weights=class_weights(train_counts, config.class_weight),
        views=views,
        monitor_view=config.monitor_view,
        target_kind=readtime.target_kind(config.dataset, config.resolved_vote_mode),
        exclude_ids=exclude_ids,
        exclusions=(
            {
                "file": str(config.exclude),
                "sha256": exclusions[1],
                "ids_listed": len(exclusions[0]),
                "train_rows_excluded": int(listed.sum()),
            }
            if exclusions is not None
            else None
        ),
    )


def _view_rows(config: TrainConfig, scans: Mapping[str, SplitScan], holdout: np.ndarray) -> dict[str, ViewRows]:
    """The evaluation views; ``holdout`` marks the training split's class-frequency rows."""
    train_split, balanced_split, test_split = view_splits(config.dataset)
    rows_seed = config.holdout_seed  # never --seed (module docstring)
    bal_scan = scans[balanced_split]
    if datasets.get(config.dataset).balanced_split_is_balanced:  # published balanced: used whole
        bal_mask = cap_rows(bal_scan.ids, bal_scan.keep, config.max_eval_examples, rows_seed)
        bal_text = f"official {balanced_split} split (policy applied)"
    else:
        present = max(1, len(np.unique(bal_scan.labels[bal_scan.keep])))
        cap = config.max_eval_examples // present if config.max_eval_examples else 0
        bal_mask = balanced_subsample(
            bal_scan.ids, bal_scan.labels, bal_scan.keep, rows_seed, per_class_cap=max(cap, 1) if cap else 0
        )
        bal_text = f"class-balanced subsample of the {balanced_split} split"
    chosen = {
        "balanced": (bal_scan, bal_mask, bal_text),
        "class_frequency": (
            scans[train_split],
            cap_rows(scans[train_split].ids, holdout, config.max_eval_examples, rows_seed),
            f"hashed-id hold-out ({config.holdout_fraction:.0%}) of train, natural class frequencies",
        ),
    }
    if test_split:
        test_scan = scans[test_split]
        chosen["test"] = (
            test_scan,
            cap_rows(test_scan.ids, test_scan.keep, config.max_eval_examples, rows_seed),
            f"whole {test_split} split (protocol figure; never selects)",
        )
    views = {}
    for name, (scan, mask, text) in chosen.items():
        if not mask.any():
            raise TrainError(
                f"policy {config.policy_object.name!r} leaves the {name} view ({scan.split} split) of "
                f"{config.dataset} empty"
            )
        views[name] = ViewRows(name, scan.split, scan.ids[mask], scan.labels[mask], scan.canonical[mask], text)
    return views
