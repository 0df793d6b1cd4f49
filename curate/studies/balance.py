"""Class balance: counts, balance metrics, class weights and resampling plans.

Scope
-----
Pure NumPy functions on a vector of per-class counts (:func:`class_weights`,
:func:`balance_summary` ...) that the trainer imports, and :func:`balance`, which counts the
workspace's annotations under a label policy with one DuckDB query per call and summarises
every (dataset, split).

Definitions (``n_c`` = rows of class ``c``, ``N`` = their sum, ``K`` = classes of the policy):

* share ``n_c / N``; imbalance ratio ``max n_c / min n_c`` over non-empty classes;
* normalised entropy ``-sum p_c log p_c / log K`` (1 = perfectly balanced, empty classes
  count as zero mass);
* effective number of samples (Cui et al., CVPR 2019) ``E_c = (1 - beta**n_c) / (1 - beta)``;
* class weights (see :func:`class_weights`) normalised so that the mean weight over the
  *samples* is 1: ``sum_c n_c w_c / N = 1``; empty classes get weight 0;
* balanced-subsample plan: take ``min n_c`` rows of every non-empty class; oversample plan:
  take ``max n_c`` rows of every non-empty class (repeating rows of the smaller ones).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from curate import labels
from curate.studies.counting import class_counts_duckdb
from curate.studies.holdout import class_frequency_holdout  # noqa: F401  (also importable from here)

DEFAULT_BETA = 0.999


def _counts(counts: Any) -> np.ndarray:
    array = np.asarray(counts, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D sequence of per-class counts, got shape {array.shape}")
    if np.any(array < 0) or not np.all(np.isfinite(array)):
        raise ValueError("counts must be finite and non-negative")
    return array


def _check_beta(beta: float) -> float:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    return float(beta)


def effective_number(counts: Any, beta: float = DEFAULT_BETA) -> np.ndarray:
    """Cui et al.'s effective number of samples per class, ``(1 - beta**n) / (1 - beta)``."""
    n = _counts(counts)
    beta = _check_beta(beta)
    if beta == 0.0:
        return np.where(n > 0, 1.0, 0.0)
    return -np.expm1(n * np.log(beta)) / (1.0 - beta)


def _weights_none(n: np.ndarray, beta: float) -> np.ndarray:
    return np.ones_like(n)


def _weights_inverse(n: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / n


def _weights_sqrt(n: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / np.sqrt(n)


def _weights_effective(n: np.ndarray, beta: float) -> np.ndarray:
    return 1.0 / effective_number(n, beta)


#: Weighting method -> raw weight function of the (non-empty) counts.
WEIGHT_METHODS: Mapping[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "none": _weights_none,
    "inverse": _weights_inverse,
    "sqrt": _weights_sqrt,
    "effective": _weights_effective,
}
#: The class-weight method names, in order: ``none``, ``inverse``, ``sqrt``, ``effective``.
CLASS_WEIGHT_METHODS: tuple[str, ...] = tuple(WEIGHT_METHODS)
#: Methods whose weights :func:`balance_summary` reports (``none`` is all ones).
REPORTED_WEIGHT_METHODS: tuple[str, ...] = tuple(m for m in CLASS_WEIGHT_METHODS if m != "none")


def class_weights(counts: Any, method: str = "inverse", *, beta: float = DEFAULT_BETA) -> np.ndarray:
    """Per-class loss weights from per-class training counts.

    Parameters
    ----------
    counts : sequence of int
        Rows per class, in class-index order.
    method : one of :data:`CLASS_WEIGHT_METHODS`, default "inverse"
        ``none``: all 1; ``inverse``: ``1 / n_c``; ``sqrt``: ``1 / sqrt(n_c)``;
        ``effective``: ``1 / E_c`` with Cui et al.'s effective number (see ``beta``).
    beta : float, default 0.999
        Effective-number hyper-parameter, in [0, 1); only used by ``effective``.

    Returns
    -------
    numpy.ndarray of float64
        One weight per class, normalised so that ``sum(counts * w) / sum(counts) == 1``
        (the mean weight over training samples is 1, keeping the loss scale); 0 for
        classes with no rows.
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"unknown class-weight method {method!r}; valid: {', '.join(WEIGHT_METHODS)}")
    n = _counts(counts)
    beta = _check_beta(beta)
    present = n > 0
    if not present.any():
        raise ValueError("counts are all zero; no class weights can be computed")
    raw = np.zeros_like(n)
    raw[present] = WEIGHT_METHODS[method](n[present], beta)
    return raw * (n.sum() / float(np.dot(n, raw)))


def normalized_entropy(counts: Any) -> float:
    """Entropy of the class distribution divided by ``log K`` (1.0 when ``K == 1``)."""
    n = _counts(counts)
    total = n.sum()
    if n.size == 1 or total == 0:
        return 1.0 if total else 0.0
    p = n[n > 0] / total
    return float(-(p * np.log(p)).sum() / np.log(n.size))


def imbalance_ratio(counts: Any) -> float:
    """``max / min`` over non-empty classes (``nan`` when every class is empty)."""
    n = _counts(counts)
    present = n[n > 0]
    return float(present.max() / present.min()) if present.size else float("nan")


def subsample_plan(counts: Any) -> np.ndarray:
    """Rows to take per class for a balanced subsample: ``min`` non-empty count, 0 for empty."""
    n = _counts(counts)
    present = n > 0
    return np.where(present, n[present].min() if present.any() else 0, 0).astype(np.int64)


def oversample_plan(counts: Any) -> np.ndarray:
    """Rows to take per class when oversampling to the largest class, 0 for empty classes."""
    n = _counts(counts)
    return np.where(n > 0, n.max(), 0).astype(np.int64)


def balance_summary(counts: Any, classes: Sequence[str], *, beta: float = DEFAULT_BETA) -> dict[str, Any]:
    """Every balance number of one count vector, as a JSON-ready dict."""
    n = _counts(counts)
    if len(classes) != n.size:
        raise ValueError(f"{len(classes)} class names for {n.size} counts")
    total = int(n.sum())
    shares = n / total if total else np.zeros_like(n)
    return {
        "classes": list(classes),
        "counts": n.astype(np.int64).tolist(),
        "total": total,
        "shares": shares.tolist(),
        "empty_classes": [c for c, k in zip(classes, n, strict=True) if k == 0],
        "imbalance_ratio": imbalance_ratio(n) if total else None,
        "normalized_entropy": normalized_entropy(n),
        "beta": beta,
        "effective_number": effective_number(n, beta).tolist(),
        "weights": {m: class_weights(n, m, beta=beta).tolist() for m in REPORTED_WEIGHT_METHODS} if total else {},
        "subsample_plan": subsample_plan(n).tolist(),
        "oversample_plan": oversample_plan(n).tolist(),
    }


@dataclasses.dataclass(frozen=True)
class BalanceReport:
    """Balance of every (dataset, split) under one policy.

    ``groups`` maps ``(dataset, split)`` to :func:`balance_summary` dicts, which also carry
    ``dropped`` (rows the policy removes).
    """

    policy: labels.LabelPolicy
    beta: float
    groups: dict[tuple[str, str], dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            "beta": self.beta,
            "groups": [{"dataset": d, "split": s, **summary} for (d, s), summary in self.groups.items()],
        }


def counts_by_split(
    con: Any, policy: labels.LabelPolicy, *, datasets: Sequence[str], split: str | None = None
) -> dict[tuple[str, str], np.ndarray]:
    """DuckDB: ``(dataset, split) -> int64[K + 1]`` rows per policy class, last = dropped."""
    return class_counts_duckdb(con, policy, datasets=datasets, split=split)


def summarize_counts(
    counts: Mapping[tuple[str, str], np.ndarray], policy: labels.LabelPolicy, *, beta: float = DEFAULT_BETA
) -> BalanceReport:
    """Turn ``(dataset, split) -> counts[K + 1]`` into a :class:`BalanceReport`."""
    beta = _check_beta(beta)
    groups = {}
    for key, vector in counts.items():
        summary = balance_summary(vector[:-1], policy.classes, beta=beta)
        summary["dropped"] = int(vector[-1])
        groups[key] = summary
    return BalanceReport(policy=policy, beta=beta, groups=groups)


def balance(
    workspace: Any,
    *,
    dataset: str | None = None,
    policy: str | labels.LabelPolicy = "keep-all",
    split: str | None = None,
    beta: float = DEFAULT_BETA,
    vote_mode: str | None = None,
) -> BalanceReport:
    """Balance of the ingested annotations under ``policy``, per dataset and split.

    Parameters
    ----------
    workspace : Workspace
    dataset : str, optional
        One ingested dataset; default every ingested dataset.
    policy : str or LabelPolicy, default "keep-all"
        Built-in name or TOML path.
    split : str, optional
        Restrict to one split (an error names the available ones).
    beta : float, default 0.999
        Effective-number parameter.
    vote_mode : str, optional
        FER+ vote mode of the labels of rows with votes (:data:`curate.labels.VOTE_MODES`);
        default the mode they were stored under (``curate ingest --vote-mode``). Another
        mode is computed from the stored votes without changing the workspace. Rows whose
        winner is unknown / not a face count as dropped under every policy.
    """
    from curate.workspace import vote_mode_rows

    resolved = labels.get_policy(policy)
    _check_beta(beta)
    with workspace.connect() as con:
        datasets = workspace.require_datasets(con, dataset)
        if split is not None and not any(split in workspace.splits(con, name) for name in datasets):
            if len(datasets) == 1:
                workspace.check_split(con, datasets[0], split)  # raises, naming the available splits
            available = sorted({s for name in datasets for s in workspace.splits(con, name)})
            raise ValueError(
                f"split {split!r} does not exist in {', '.join(datasets)}; available splits: {', '.join(available)}"
            )
        table = vote_mode_rows(con, datasets, vote_mode)
        counts = class_counts_duckdb(con, resolved, datasets=datasets, split=split, table=table)
    return summarize_counts(counts, resolved, beta=beta)
