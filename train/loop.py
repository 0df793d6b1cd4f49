"""One training run end to end, and several runs compared.

:func:`train_run` seeds everything, prepares the data (``train.data``), builds and fits the
model (``train.models``) with early stopping and best-checkpoint restore on the monitored
view, evaluates every view (``train.evaluate``), exports TFLite (``train.export``) and
writes the run folder atomically: everything goes into ``<runs>/<name>.partial/``, the
``COMPLETE`` marker is written last and the folder is then renamed to ``<runs>/<name>/``.
Any error removes the partial folder, so a run folder either is complete or does not
exist. The run is then registered in the workspace (``curate.workspace``).

:func:`train_policies` runs one configuration under several policies and writes a
comparison table (:func:`compare_runs`).

Run folder (``docs/contracts.md``)::

    <runs>/<name>/
        config.json            resolved options, class names, data summary, fingerprint
        history.csv            one row per epoch: loss, accuracy, val_* of the monitored view
        metrics.json           per view: accuracy, balanced accuracy, macro F1, per-class
                               precision/recall, confusion matrix (+ V/A RMSE/CCC); training
                               speed; TFLite sizes, latencies and agreement
        predictions.parquet    id, view, split, label, predicted, confidence, probabilities,
                               logits, valence_pred, arousal_pred
        oof_folds.parquet      with --oof-folds: id, fold, label of every training row
                               (view ``train_oof`` of predictions.parquet; train.oof)
        confusion_<view>.png
        model.keras
        model_float.tflite, model_int8.tflite
        COMPLETE
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels as _labels
from curate import protocols
from train import data as data_module
from train import diagnostics, evaluate, fit, models, oof, sources
from train import export as export_module
from train.compare import arm_key, compare_runs, write_comparison
from train.config import TrainConfig, TrainError
from train.runs import COMPLETE_MARKER, PARTIAL_SUFFIX, finite, resolve_runs_dir, write_json


@dataclasses.dataclass
class RunResult:
    """A finished run: its name, folder, metrics (``metrics.json``) and config."""

    name: str
    path: Path
    metrics: dict[str, Any]
    config: dict[str, Any]


def set_determinism(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy, TensorFlow and Keras; make TF ops deterministic (CPU)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------------------
# A run
# --------------------------------------------------------------------------------------


def protocol_key(config: TrainConfig) -> str | None:
    """The protocol card (``curate.protocols``) this run's numbers belong to, if any."""
    policy = config.policy_object
    for card in protocols.PROTOCOLS.values():
        if card.task != "classification" or card.dataset != config.dataset:
            continue
        if card.policy == policy.name and card.vote_mode == config.resolved_vote_mode and policy.source == "built-in":
            return card.key
    return None


def data_fingerprint(config: TrainConfig, source_info: dict[str, Any]) -> str:
    extra = {"config": source_info.get("config"), "source": source_info.get("source")}
    exclusions = config.exclusions()
    if exclusions is not None:  # only then: fingerprints of runs without --exclude are unchanged
        extra["exclude_sha256"] = exclusions[1]
    return protocols.data_fingerprint(
        dataset=config.dataset,
        dataset_version=str(source_info.get("version")),
        annotation_sha256=source_info.get("annotation_sha256") or {},
        policy=config.policy_object,
        vote_mode=config.resolved_vote_mode,
        extra=extra,
    )


def train_run(
    config: TrainConfig,
    *,
    source: Any = None,
    runs_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    register: bool = True,
    overwrite: bool = False,
    verbose: int = 1,
) -> RunResult:
    """Train, evaluate and export one run; return its :class:`RunResult`.

    Parameters
    ----------
    config : TrainConfig
    source : optional
        An example source (``train.sources.TFDSSource`` by default, ``InMemorySource`` in tests).
    runs_dir : path, optional
        Folder of run folders (``--out``); default ``<workspace>/runs``.
    workspace : path, optional
        The workspace to register the run in (default ``$CURATE_WORKSPACE`` or
        ``./curate-workspace``).
    register : bool
        Record the run in the workspace database.
    overwrite : bool
        Replace an existing run folder of the same name (otherwise :class:`TrainError`).
    verbose : int
        0 silent, 1 Keras progress bars + one line per epoch, 2 one line per epoch only.
    """
    runs = resolve_runs_dir(runs_dir, workspace)
    name = config.run_name()
    final = runs / name
    work = runs / f"{name}{PARTIAL_SUFFIX}"
    if final.exists() and not overwrite:
        raise TrainError(f"run folder {final} exists; choose another --name or pass --overwrite")

    set_determinism(config.seed, deterministic=config.deterministic)
    if work.exists():  # left by a crashed run
        shutil.rmtree(work)
    policy = config.policy_object
    # Everything that can fail on user input fails here, before anything is written.
    model = models.build_model(config, policy.num_classes)
    source = source if source is not None else sources.open_source(config)
    data = None
    try:
        data = data_module.prepare_data(config, source=source, work_dir=work, verbose=bool(verbose))
        work.mkdir(parents=True, exist_ok=True)
        result = _train_in(work, config, model, data, source, name=name, verbose=verbose)
        data.cleanup()
        (work / COMPLETE_MARKER).write_text(_dt.datetime.now(_dt.UTC).isoformat() + "\n", encoding="utf-8")
        if final.exists():
            trash = runs / f"{name}.replaced"
            shutil.rmtree(trash, ignore_errors=True)
            final.rename(trash)
            work.rename(final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            work.rename(final)
    except BaseException:
        if data is not None:
            data.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        raise
    result.path = final
    if register:
        _register(result, config, workspace)
    return result


def _train_in(
    work: Path, config: TrainConfig, model: Any, data: Any, source: Any, *, name: str, verbose: int
) -> RunResult:
    fitted = fit.fit_model(model, config, data, verbose=verbose)
    epochs_run, best_epoch = fitted.epochs_run, fitted.best_epoch
    model.save(work / "model.keras")  # the selected epoch's weights (restored by fit_model)

    _write_history(work / "history.csv", fitted.history)

    # Evaluate every view with the restored best weights.
    metrics: dict[str, Any] = {}
    tables = []
    view_predictions: dict[str, dict[str, np.ndarray]] = {}
    for view_name, view in data.views.items():
        predictions = evaluate.predict_view(model, view, va_head=config.va_head)
        view_predictions[view_name] = predictions
        metrics[view_name] = evaluate.view_metrics(predictions, data.class_names)
        metrics[view_name]["split"] = view.split
        metrics[view_name]["description"] = view.description
        tables.append(
            evaluate.predictions_table(
                predictions, view=view_name, split=view.split, canonical=view.canonical_of(predictions["id"])
            )
        )
        evaluate.plot_confusion(
            metrics[view_name]["confusion_matrix"],
            data.class_names,
            work / f"confusion_{view_name}.png",
            title=f"{name}: {view_name} ({view.split}), acc {metrics[view_name]['accuracy']:.3f}, "
            f"bal-acc {metrics[view_name]['balanced_accuracy']:.3f}",
        )
    # slices, calibration (a temperature fitted on the hold-out) and FER+ vote-aware figures
    extras = diagnostics.run_diagnostics(
        view_predictions, {n: v.split for n, v in data.views.items()}, source=source, dataset=config.dataset,
        policy=config.policy_object, work=work, run=name,
    )  # fmt: skip
    metrics["calibration"], metrics["diagnostics"] = extras["calibration"], extras["views"]
    crossfit = None
    if config.oof_folds:  # extra models after the main one: its weights and metrics are untouched
        crossfit = oof.cross_fit(config, data, verbose=verbose)
        tables.append(crossfit.table())
        metrics[oof.VIEW] = crossfit.metrics
        crossfit.write_folds(work / oof.FOLDS_FILE)
    evaluate.write_predictions(tables, work / "predictions.parquet")

    fit_seconds = fitted.seconds
    images_seen = epochs_run * data.steps_per_epoch * config.batch_size
    epoch_speeds = fitted.history.get("train_images_per_second", [])
    metrics["training"] = {
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "monitor": {
            "view": data.monitor_view,
            "metric": "balanced_accuracy",
            "best": fitted.best_score,
            "selectable_from_epoch": fitted.select_from,
            "rows": int(len(data.views[data.monitor_view].ids)),
            "standard_error": data.selection_standard_error,
        },
        "freeze_epochs": config.freeze_epochs,
        "seconds": fit_seconds,
        "images_seen": images_seen,
        "images_per_second": images_seen / max(fit_seconds, 1e-9),
        "images_per_second_by_epoch": epoch_speeds,
    }
    if config.export_tflite:
        metrics["export"] = _export(work, model, data, config, metrics["calibration"]["temperature"])
    metrics["run"] = name
    metrics["dataset"] = config.dataset
    metrics["policy"] = config.policy_object.name
    metrics["vote_mode"] = config.resolved_vote_mode
    metrics["class_names"] = list(data.class_names)
    metrics["protocol"] = protocol_key(config)
    source_info = source.describe() if hasattr(source, "describe") else {}
    metrics["data_fingerprint"] = data_fingerprint(config, source_info)
    if crossfit is not None:
        metrics["oof"] = crossfit.summary
    write_json(work / "metrics.json", finite(metrics))

    resolved = config.to_dict()
    resolved.update(
        {
            "name": name,
            "class_names": list(data.class_names),
            "num_classes": len(data.class_names),
            "policy_mapping": list(config.policy_object.mapping),
            "protocol": metrics["protocol"],
            "data_fingerprint": metrics["data_fingerprint"],
            "source": source_info,
            "data": data.describe(),
            "versions": _versions(),
            "created": _dt.datetime.now(_dt.UTC).isoformat(),
        }
    )
    if crossfit is not None:
        resolved["oof"] = {key: crossfit.summary[key] for key in ("folds", "epochs", "seed", "assignment", "file")}
    write_json(work / "config.json", resolved)
    return RunResult(name=name, path=work, metrics=metrics, config=resolved)


def _export(work: Path, model: Any, data: Any, config: TrainConfig, temperature: float | None) -> dict[str, Any]:
    paths = export_module.export_tflite(model, work, representative=data.representative, temperature=temperature)
    # every evaluation row through every exported file: what a user ships against what was measured
    runners = export_module.parity_runners(model, work, temperature)
    parity = export_module.backend_parity(data.views, runners, data.class_names)
    out: dict[str, Any] = {}
    rows = sum(view["rows"] for view in parity.values())
    for kind, path in paths.items():
        latency = export_module.measure_latency(path, image_size=config.image_size)
        agreeing = sum(view["rows"] * view[kind]["top1_agreement_with_keras"] for view in parity.values())
        out[kind] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "latency_ms": latency["median_ms"],
            "latency": latency,
            # over every evaluation row; per view, with intervals, in parity
            "top1_agreement_with_keras": agreeing / rows if rows else None,
        }
    out["parity"] = parity
    return out


def _write_history(path: Path, history: dict[str, list[float]]) -> None:
    keys = sorted(history)
    rows = max((len(v) for v in history.values()), default=0)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch in range(rows):
            writer.writerow([epoch + 1, *(_cell(history[k], epoch) for k in keys)])


def _cell(values: list[Any], index: int) -> Any:
    if index >= len(values):
        return ""
    value = values[index]
    return float(value) if value is not None else ""


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    import curate

    return {"curate": curate.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def _register(result: RunResult, config: TrainConfig, workspace: str | Path | None) -> None:
    from curate.workspace import Workspace

    summary = {
        view: {k: v for k, v in result.metrics[view].items() if k not in ("per_class", "confusion_matrix")}
        for view in ("balanced", "class_frequency", "test")
        if view in result.metrics
    }
    summary["protocol"] = result.metrics.get("protocol")
    summary["data_fingerprint"] = result.metrics.get("data_fingerprint")
    summary["seed"] = config.seed
    summary["arm"] = arm_key(result.config)
    Workspace(workspace).register_run(
        result.name,
        dataset=config.dataset,
        policy=config.policy_object.name,
        vote_mode=config.resolved_vote_mode,
        path=result.path,
        metrics=finite(summary),
    )


# --------------------------------------------------------------------------------------
# Several policies and the comparison table
# --------------------------------------------------------------------------------------


def train_policies(
    config: TrainConfig,
    policies: Sequence[str],
    *,
    seeds: int = 1,
    source: Any = None,
    runs_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    register: bool = True,
    overwrite: bool = False,
    verbose: int = 1,
    comparison_name: str | None = None,
) -> tuple[list[RunResult], dict[str, Path]]:
    """``seeds`` runs per policy (seeds ``config.seed`` .. ``config.seed + seeds - 1``, same
    everything else), then the comparison (:mod:`train.compare`).

    Run names are ``<--name>-<policy>`` (``-s<seed>`` appended with several seeds) when a name
    is given, else the default per run. All policies, names and folders are checked before
    the first run starts. Returns the runs and the paths of the comparison's Markdown and
    JSON files: ``<runs>/comparisons/<--name>.md`` (or
    ``compare-<dataset>-<model>-<size>px-s<seed>.md`` without a name) and ``.json``.
    """
    if not policies:
        raise TrainError("--policies: give at least one policy")
    if seeds < 1:
        raise TrainError(f"--seeds must be at least 1, got {seeds}")
    configs = []
    for policy in policies:
        policy_object = _labels.get_policy(policy)
        for seed in range(config.seed, config.seed + seeds):
            name = None
            if config.name:
                name = f"{config.name}-{policy_object.name}" + (f"-s{seed}" if seeds > 1 else "")
            configs.append(config.replace(policy=policy, name=name, seed=seed))
    names = [c.run_name() for c in configs]
    if len(set(names)) != len(names):
        raise TrainError(f"--policies: two runs would get the same name ({', '.join(names)})")
    runs = resolve_runs_dir(runs_dir, workspace)
    if not overwrite:
        for run_name in names:
            if (runs / run_name).exists():
                raise TrainError(f"run folder {runs / run_name} exists; choose another --name or pass --overwrite")
    results = []
    for run_config in configs:
        if verbose:
            print(f"== {run_config.run_name()} ==", flush=True)
        results.append(
            train_run(
                run_config,
                source=source,
                runs_dir=runs,
                workspace=workspace,
                register=register,
                overwrite=overwrite,
                verbose=verbose,
            )
        )
    if not comparison_name:
        if config.name:
            comparison_name = config.name
        else:  # the default run name without its policy part
            first = config.replace(policy=policies[0], name=None)
            comparison_name = "compare-" + first.run_name().replace(f"-{first.policy_object.name}", "", 1)
    paths = write_comparison(compare_runs([r.path for r in results]), runs / "comparisons" / comparison_name)
    return results, paths
