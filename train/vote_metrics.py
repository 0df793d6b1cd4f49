"""FERPlus test rows scored against all ten votes, not only the label the run was trained on.

Accuracy cannot tell a run trained on the vote distribution (``--vote-mode crossentropy``)
from one trained on the majority label: both are scored against one label. On the rows of a
view, with the FER+ votes read back from the build:

* ``cross_entropy`` -- ``-sum p log q`` of the vote distribution ``p`` (the raw votes, mapped
  onto the run's policy classes through ``curate.readtime.policy_distribution_matrix``, the
  same mapping as training; unknown / not-a-face votes carry no class and drop out) against the
  predicted distribution ``q``; ``kl_divergence`` = cross-entropy minus the entropy of ``p``
  (0 for a model that reproduces the voters);
* ``majority_accuracy`` -- top-1 against the ``majority`` vote mode's label (the FER+ authors':
  the top emotion when it holds more than half of the votes after single-vote outliers are
  zeroed; rows without one are left out);
* ``multi_target_accuracy`` -- top-1 counted right when it is any class holding at least 30 %
  of the ``multi-target`` mode's votes (the FER+ authors' multi-target rule).

Rows whose votes put no mass on the policy's classes are left out of all three, and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The multi-target rule's share of the votes.
MULTI_TARGET_SHARE = 0.3
#: Probabilities are clipped here before the logarithm.
_EPS = 1e-7


def _policy_shares(canonical_distribution: np.ndarray, policy: Any) -> tuple[np.ndarray, np.ndarray]:
    from curate.readtime import policy_distribution_matrix

    mass = np.asarray(canonical_distribution, dtype=np.float64) @ policy_distribution_matrix(policy)
    total = mass.sum(axis=1)
    return mass / np.where(total > 0, total, 1.0)[:, None], total > 0


def vote_metrics(votes: np.ndarray, probabilities: np.ndarray, policy: Any) -> dict[str, Any]:
    """The figures of the module docstring for ``votes`` (N, 10, FER+ column order) and ``probabilities`` (N, C)."""
    from curate import labels as _labels

    votes = np.asarray(votes, dtype=np.float64)
    q = np.clip(np.asarray(probabilities, dtype=np.float64), _EPS, 1.0)
    q = q / q.sum(axis=1, keepdims=True)
    canonical = np.zeros((len(votes), _labels.NUM_CANONICAL))
    for column, target in enumerate(_labels.FERPLUS_VOTE_TO_CANONICAL):
        canonical[:, target] += votes[:, column]
    p, usable = _policy_shares(canonical, policy)
    predicted = q.argmax(axis=1)
    cross_entropy = -(p * np.log(q)).sum(axis=1)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)

    majority = _labels.ferplus_vote_targets(votes, "majority")
    majority_class = policy.apply(majority.label)
    has_majority = majority.keep & (majority_class >= 0)
    multi = _labels.ferplus_vote_targets(votes, "multi-target")
    shares, multi_usable = _policy_shares(multi.distribution, policy)
    accepted = shares >= MULTI_TARGET_SHARE
    hit = accepted[np.arange(len(predicted)), predicted]
    return {
        "rows": int(usable.sum()),
        "rows_left_out": int((~usable).sum()),
        "cross_entropy": float(cross_entropy[usable].mean()) if usable.any() else None,
        "kl_divergence": float((cross_entropy - entropy)[usable].mean()) if usable.any() else None,
        "majority_rows": int(has_majority.sum()),
        "majority_accuracy": float(np.mean(predicted[has_majority] == majority_class[has_majority]))
        if has_majority.any()
        else None,
        "multi_target_rows": int(multi_usable.sum()),
        "multi_target_accuracy": float(hit[multi_usable].mean()) if multi_usable.any() else None,
    }
