"""A run scored on another built dataset through the one taxonomy (``curate train evaluate`` / ``cross``).

:func:`evaluate_on` reads a split of any built dataset (``DATASET[:SPLIT]``; default its test
split, else the split its balanced view comes from), maps its labels through the **run's own
policy** (canonical labels, so "Happy" is "Happy" in every dataset; FERPlus by the majority
vote unless the run was trained on FERPlus with another mode), preprocesses the rows as the
run's views are (the run's image size; eye alignment only where the target has 68
landmarks) and scores the run's model on them:

* classes of the policy that the target split has no row of are **left out and listed**;
  the model's top-1 is taken among the classes that remain (it is not blamed for a class
  the other dataset cannot have), and balanced accuracy averages over them;
* accuracy and balanced accuracy come with 95 % bootstrap intervals over the rows
  (:func:`train.slices.bootstrap_scores`, seeded);
* a target that shares no class with the policy is a one-line error.

:func:`cross_matrix` does this for every run x target and writes the train-on (rows) x
test-on (columns) table as Markdown, JSON and a heatmap PNG.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from train.config import TrainConfig, TrainError
from train.runs import load_run

#: Bootstrap replicates of the intervals.
REPLICATES = 1000
#: Images per model call when scoring (inference only: larger than a training batch).
EVAL_BATCH = 256


def parse_target(text: str) -> tuple[str, str | None]:
    """``DATASET[:SPLIT]`` -> (dataset, split or None); the dataset must be registered."""
    from curate import datasets

    dataset, _, split = text.partition(":")
    if dataset not in datasets.names():
        raise TrainError(f"--on {text}: no dataset {dataset!r} (datasets: {', '.join(datasets.names())})")
    return dataset, split or None


def _target_config(run_config: dict[str, Any], dataset: str, data_dir: str | Path | None) -> TrainConfig:
    from curate import datasets

    spec = datasets.get(dataset)
    same = run_config["dataset"] == dataset
    vote_mode = (run_config.get("vote_mode") if same else None) or ("majority" if spec.votes else None)
    align = run_config.get("align", "none")
    return TrainConfig(
        dataset=dataset,
        policy=run_config["policy"],
        vote_mode=vote_mode if spec.votes else None,
        data_dir=str(data_dir) if data_dir else run_config.get("data_dir"),
        config=run_config.get("config") if same else None,
        image_size=int(run_config["image_size"]),
        batch_size=EVAL_BATCH,
        align="eyes" if align == "eyes" and spec.aligns_by_eyes else "none",
        export_tflite=False,
    )


def evaluate_on(
    run: str | Path,
    target: str,
    *,
    data_dir: str | Path | None = None,
    runs_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    replicates: int = REPLICATES,
    seed: int = 0,
    model: Any = None,
) -> dict[str, Any]:
    """Score a finished run on ``target`` (``DATASET[:SPLIT]``); see the module docstring.

    ``model``: the run's Keras model when the caller has loaded it already (:func:`cross_matrix`).
    """
    import keras

    from train import slices
    from train.data import split_view
    from train.evaluate import predict_view
    from train.sources import open_source

    loaded = load_run(run, runs_dir=runs_dir, workspace=workspace)
    run_config, folder = loaded["config"], loaded["path"]
    dataset, split = parse_target(target)
    config = _target_config(run_config, dataset, data_dir)
    source = open_source(config)
    from curate import datasets

    spec = datasets.get(dataset)
    split = split or spec.test_split or spec.balanced_view_split
    if split not in source.splits():
        raise TrainError(f"--on {target}: {dataset} has no split {split!r} (splits: {', '.join(source.splits())})")
    class_names = list(run_config["class_names"])
    view = split_view(config, source, split, name="cross", description=f"whole {dataset} {split} split")
    if len(view.ids) == 0:
        raise TrainError(
            f"evaluating {folder.name} on {dataset}:{split}: policy {run_config['policy']!r} keeps none of its rows "
            f"(the run's classes {', '.join(class_names)} share nothing with {dataset})"
        )
    present = np.unique(view.labels)
    left_out = [name for index, name in enumerate(class_names) if index not in set(present.tolist())]
    if model is None:
        model = keras.models.load_model(str(folder / "model.keras"), compile=False)
    predictions = predict_view(model, view)
    restricted = np.full_like(predictions["logits"], -np.inf)
    restricted[:, present] = predictions["logits"][:, present]
    predicted = restricted.argmax(axis=1)
    labels = predictions["label"]
    accuracy_ci, balanced_ci = slices.ci95(
        slices.bootstrap_scores(labels, predicted, np.random.default_rng([seed, 7]), replicates)
    )
    return {
        "run": folder.name,
        "trained_on": run_config["dataset"],
        "policy": run_config["policy"],
        "target": f"{dataset}:{split}",
        "rows": int(len(labels)),
        "classes_scored": [class_names[c] for c in present],
        "classes_left_out": left_out,
        "accuracy": {"value": float(np.mean(predicted == labels)), "ci95": accuracy_ci},
        "balanced_accuracy": {"value": slices.balanced_accuracy(labels, predicted), "ci95": balanced_ci},
        "align": config.resolved_align,
    }


def cross_matrix(
    runs: Sequence[str | Path], targets: Sequence[str], **options: Any
) -> dict[str, Any]:
    """Every run on every target: ``{"runs", "targets", "cells": [[evaluate_on(...)]]}``."""
    import keras

    if not runs or not targets:
        raise TrainError("cross: give at least one run and one --on dataset")
    lookup = {k: options[k] for k in ("runs_dir", "workspace") if k in options}
    cells = []
    for run in runs:  # each run's model is loaded once for all its targets
        folder = load_run(run, **lookup)["path"]
        model = keras.models.load_model(str(folder / "model.keras"), compile=False)
        cells.append([evaluate_on(folder, target, model=model, **options) for target in targets])
    return {
        "runs": [row[0]["run"] for row in cells],
        "trained_on": [row[0]["trained_on"] for row in cells],
        "targets": [cell["target"] for cell in cells[0]],
        "cells": cells,
        "method": "balanced accuracy over the classes the target has (the others left out and listed); top-1 "
        f"among those classes; 95% percentile bootstrap over rows (resampled within each label), {REPLICATES} replicates",
    }


def _cell(entry: dict[str, Any]) -> str:
    value, (low, high) = entry["value"], entry["ci95"]
    return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def cross_markdown(matrix: dict[str, Any]) -> str:
    """The train-on x test-on table (balanced accuracy, %), then what each cell left out."""
    lines = [
        "# Cross-dataset balanced accuracy (%, 95% interval): trained on (rows) x tested on (columns)",
        "",
        f"{matrix['method']}.",
        "",
        "| run (trained on) | " + " | ".join(matrix["targets"]) + " |",
        "|---|" + "---:|" * len(matrix["targets"]),
    ]
    for run, trained, row in zip(matrix["runs"], matrix["trained_on"], matrix["cells"], strict=True):
        lines.append(f"| {run} ({trained}) | " + " | ".join(_cell(c["balanced_accuracy"]) for c in row) + " |")
    lines += ["", "| run | tested on | rows | accuracy [95%] | classes left out |", "|---|---|---:|---:|---|"]
    for row in matrix["cells"]:
        for cell in row:
            lines.append(
                f"| {cell['run']} | {cell['target']} | {cell['rows']:,} | {_cell(cell['accuracy'])} | "
                f"{', '.join(cell['classes_left_out']) or 'none'} |"
            )
    return "\n".join(lines) + "\n"


def write_cross(matrix: dict[str, Any], stem: str | Path) -> dict[str, Path]:
    """``STEM.md``, ``STEM.json`` and ``STEM.png`` (heatmap of balanced accuracy with the intervals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": stem.with_suffix(".md"), "json": stem.with_suffix(".json"), "png": stem.with_suffix(".png")}
    paths["markdown"].write_text(cross_markdown(matrix), encoding="utf-8")
    paths["json"].write_text(json.dumps(matrix, indent=2) + "\n", encoding="utf-8")
    values = np.array([[c["balanced_accuracy"]["value"] for c in row] for row in matrix["cells"]])
    fig, ax = plt.subplots(figsize=(2.2 + 2.0 * values.shape[1], 1.2 + 0.8 * values.shape[0]))
    ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    for i, row in enumerate(matrix["cells"]):
        for j, cell in enumerate(row):
            low, high = cell["balanced_accuracy"]["ci95"]
            ax.text(j, i, f"{100 * values[i, j]:.1f}\n[{100 * low:.0f}, {100 * high:.0f}]", ha="center",
                    va="center", color="white" if values[i, j] < 0.6 else "black", fontsize=8)  # fmt: skip
    ax.set_xticks(range(values.shape[1]), matrix["targets"], fontsize=8)
    ax.set_yticks(range(values.shape[0]), [f"{r}\n({t})" for r, t in zip(matrix["runs"], matrix["trained_on"],
                                                                        strict=True)], fontsize=8)  # fmt: skip
    ax.set_xlabel("tested on")
    ax.set_title("balanced accuracy (%), 95% interval", fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths
