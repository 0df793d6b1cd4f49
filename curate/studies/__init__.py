"""Studies over a curation workspace: class balance, label-policy remaps, FER+ vote modes.

Public API
----------
* :func:`class_weights` -- per-class loss weights (:data:`CLASS_WEIGHT_METHODS`: ``none``,
  ``inverse``, ``sqrt``, ``effective``), normalised to a mean weight of 1 over samples. The
  trainer imports it.
* :func:`class_frequency_holdout` -- the deterministic class-frequency hold-out of training
  ids (AffectNet's second validation view). The trainer uses the same function.
* :func:`curate.studies.balance.balance`, :func:`curate.studies.remap.remap`,
  :func:`run_remap_study` -- what ``curate balance``, ``curate remap`` and
  ``curate study remap`` call.

Importing this package is cheap (NumPy only); DuckDB, SciPy and Matplotlib are imported by
the functions that use them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from curate import datasets
from curate.studies.balance import CLASS_WEIGHT_METHODS, REPORTED_WEIGHT_METHODS, WEIGHT_METHODS, class_weights
from curate.studies.holdout import class_frequency_holdout, holdout_sql, in_holdout

__all__ = [
    "CLASS_WEIGHT_METHODS",
    "REPORTED_WEIGHT_METHODS",
    "WEIGHT_METHODS",
    "StudyOutcome",
    "class_frequency_holdout",
    "class_weights",
    "holdout_sql",
    "in_holdout",
    "run_remap_study",
]


@dataclasses.dataclass(frozen=True)
class StudyOutcome:
    """A finished study: its numbers, the report files and its id in the workspace."""

    results: dict[str, Any]
    report: Any  # curate.studies.report.ReportFiles
    study_id: int


def run_remap_study(
    workspace: Any,
    dataset: str,
    *,
    policies: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    fraction: float = 0.05,
    seed: int = 0,
    beta: float = 0.999,
    plots: bool = True,
    vote_mode: str | None = None,
) -> StudyOutcome:
    """Run ``curate study remap`` for one dataset (or ``"all"``), write its report, store it.

    * ``affectnet`` / ``rafdb``: :func:`curate.studies.remap.policy_study`;
    * ``ferplus``: the same, its rows labelled by ``vote_mode`` (default: the ingested one),
      plus :func:`curate.studies.ferplus_modes.vote_mode_study` (every mode) under the key
      ``vote_modes``;
    * ``all``: :func:`curate.studies.remap.canonical_distribution`.

    The report goes to ``out_dir`` (default ``<workspace>/reports/<dataset>-remap-<n>``);
    the results are stored in the workspace's ``studies`` table.
    """
    from curate.studies import remap as remap_study
    from curate.studies import report as report_module

    if dataset == "all":
        if vote_mode is not None:
            raise ValueError("--vote-mode needs one dataset with votes (--dataset), not 'all'")
        results = remap_study.canonical_distribution(workspace)
        points = None
    else:
        results = remap_study.policy_study(
            workspace,
            dataset,
            policies=list(policies) if policies else remap_study.DEFAULT_STUDY_POLICIES,
            fraction=fraction,
            seed=seed,
            beta=beta,
            vote_mode=vote_mode,
        )
        if datasets.get(dataset).votes:
            from curate.studies.ferplus_modes import has_votes, vote_mode_study

            if has_votes(workspace):
                results["vote_modes"] = vote_mode_study(workspace)
        points = remap_study.va_points(workspace, dataset) if plots and results.get("va") else None
    if out_dir is None:
        base = workspace.reports_dir
        n = 1
        while (base / f"{dataset}-remap-{n}").exists():
            n += 1
        out_dir = base / f"{dataset}-remap-{n}"
    files = report_module.write_report(results, out_dir, va_points=points)
    study_id = workspace.save_study(
        "remap" if dataset != "all" else "distribution", dataset, results, out_dir=files.folder
    )
    return StudyOutcome(results=results, report=files, study_id=study_id)
