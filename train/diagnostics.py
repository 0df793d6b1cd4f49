"""Per-run evaluation beyond the headline figures: slices, calibration and FER+ vote-aware metrics.

:func:`run_diagnostics` runs after a run's views are predicted (:mod:`train.loop`) and
returns what goes into ``metrics.json``:

* ``calibration`` -- :func:`train.calibration.calibrate_views` (the temperature fitted on the
  hold-out, ECE before / after per view, ``reliability_<view>.png``);
* per view ``slices`` -- :func:`train.slices.slice_metrics` over the dataset's attributes;
* per FERPlus view ``votes`` -- :func:`train.vote_metrics.vote_metrics` against all ten votes.

See ``docs/evaluation.md`` for what each figure means and when to trust it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from train import calibration, slices, vote_metrics


def run_diagnostics(
    predictions: dict[str, dict[str, np.ndarray]],
    view_splits: dict[str, str],
    *,
    source: Any,
    dataset: str,
    policy: Any,
    work: Path,
    run: str,
) -> dict[str, Any]:
    """``{"calibration": ..., "views": {view: {"slices": ..., "votes": ...}}}`` of one run's predictions."""
    out: dict[str, Any] = {"calibration": calibration.calibrate_views(predictions, work, run=run), "views": {}}
    facts: dict[str, slices.SplitFacts] = {}
    for view, result in predictions.items():
        split = view_splits[view]
        if split not in facts:
            facts[split] = slices.read_facts(source, split, dataset)
        attributes, votes = facts[split].for_ids(result["id"])
        predicted = result["probabilities"].argmax(axis=1)
        entry: dict[str, Any] = {
            "slices": slices.slice_metrics(result["label"], predicted, attributes),
            "slice_notes": facts[split].notes,
        }
        if votes is not None:
            entry["votes"] = vote_metrics.vote_metrics(votes, result["probabilities"], policy)
        out["views"][view] = entry
    return out


def ece_cell(entry: dict[str, Any], key: str) -> str:
    """``14.1% (6.4%)``: an ECE and its noise floor (:func:`train.calibration.ece_noise_floor`),
    the floor left out for runs made before it was stored."""
    floor = entry.get(f"{key}_noise_floor")
    return f"{100 * entry[key]:.1f}%" + (f" ({100 * floor:.1f}%)" if floor is not None else "")


def diagnostics_markdown(metrics: dict[str, Any]) -> str:
    """Slices, calibration and vote figures of one run's ``metrics.json``, as Markdown."""
    lines: list[str] = []
    calib = metrics.get("calibration")
    if calib:
        t = calib.get("temperature")
        lines += [
            f"Calibration ({calib['bins']} bins): temperature "
            + (f"{t:.3f} fitted on the {calib['fitted_on']} hold-out ({calib.get('fit_rows', 0):,} rows)" if t else
               f"not fitted ({calib.get('not_fitted')})"),  # fmt: skip
            "",
            "| view | ECE raw (noise floor) | ECE after temperature (noise floor) | reliability diagram |",
            "|---|---:|---:|---|",
        ]
        for view, entry in calib["views"].items():
            after = ece_cell(entry, "ece_after") if "ece_after" in entry else "–"
            lines.append(f"| {view} | {ece_cell(entry, 'ece')} | {after} | {entry['reliability']} |")
        lines += ["", "Noise floor: the ECE a perfectly calibrated model reaches on these rows 95% of the time; "
                  "an ECE under it is no evidence of miscalibration.", ""]  # fmt: skip
    for view, entry in metrics.get("diagnostics", {}).items():
        if entry.get("slices"):
            lines.append(slices.slices_markdown(entry["slices"], title=f"Slices of the {view} view"))
        votes = entry.get("votes")
        if votes:
            lines += [
                f"Votes on the {view} view ({votes['rows']:,} rows; {votes['rows_left_out']:,} without votes on "
                "the policy's classes): "
                f"cross-entropy {votes['cross_entropy']:.3f}, KL {votes['kl_divergence']:.3f}, "
                f"majority accuracy {_pct(votes['majority_accuracy'])} ({votes['majority_rows']:,} rows), "
                f"multi-target (>= 30% of votes) accuracy {_pct(votes['multi_target_accuracy'])}.",
                "",
            ]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
