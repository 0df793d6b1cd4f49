"""Training runs on a review dataset: predictions, evaluation and label scores.

A run folder (``docs/contracts.md``; :func:`resolve_run` finds it by path or by the name
registered in the workspace) holds ``predictions.parquet``. :func:`attach_run` makes it a
``Classification`` field with confidence and logits (plus V/A prediction fields), evaluated
with ``evaluate_classifications`` under an identifier-style eval key per run and policy
(:class:`curate.review.fields.RunFields`); :mod:`curate.review.label_scores` adds
mistakenness, hardness and confident-learning scores. Everything is validated before the
first write, and a run that fails half-way is removed again (:func:`remove_run`).
:func:`reattach_runs` attaches a rebuilt dataset's previous runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels
from curate.review import label_scores
from curate.review.documents import describe_dataset, update_app_config
from curate.review.fields import INFO_KEY, OUT_OF_SAMPLE_VIEWS, ReviewLoadError, RunFields, policy_field

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class RunMismatchError(ReviewLoadError):
    """A run's prediction ids do not (all) match the dataset's annotation ids."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """A training run folder (``docs/contracts.md``) and its ``config.json``."""

    name: str
    path: Path
    config: Mapping[str, Any]

    @property
    def predictions_path(self) -> Path:
        return self.path / "predictions.parquet"

    def provenance(self) -> tuple[str | None, str | None]:
        """``(protocol card key, data fingerprint)`` the run recorded (``docs/protocols.md``).

        ``config.json`` holds both (``protocol``, ``data_fingerprint``); ``metrics.json`` is
        the fallback for a run whose config lacks them. ``None`` where the run has none
        (a custom policy has no protocol card; runs older than the cards have neither).
        """
        protocol, fingerprint = self.config.get("protocol"), self.config.get("data_fingerprint")
        if protocol is None or fingerprint is None:
            try:
                metrics = json.loads((self.path / "metrics.json").read_text())
            except (OSError, ValueError):
                metrics = {}
            if isinstance(metrics, dict):
                protocol = protocol if protocol is not None else metrics.get("protocol")
                fingerprint = fingerprint if fingerprint is not None else metrics.get("data_fingerprint")
        return (None if protocol is None else str(protocol), None if fingerprint is None else str(fingerprint))


def resolve_run(run: str | os.PathLike[str], *, workspace: Any | None = None) -> RunInfo:
    """A run by folder path, or by name from the workspace's registered runs / ``runs/`` folder."""
    candidates: list[Path] = []
    path = Path(run)
    if path.is_dir():
        candidates.append(path)
    known: list[str] = []
    if workspace is not None:
        try:
            registered = workspace.runs()
        except Exception:  # noqa: BLE001 - a broken workspace should not hide a run folder
            registered = []
        known = [r["name"] for r in registered]
        for record in registered:
            if record["name"] == str(run) and record.get("path"):
                candidates.append(Path(record["path"]))
        candidates.append(workspace.runs_dir / str(run))
    for folder in candidates:
        if (folder / "predictions.parquet").is_file():
            break
    else:
        where = f"; runs registered in {workspace.root}: {', '.join(known) or 'none'}" if workspace is not None else ""
        raise ReviewLoadError(f"run {str(run)!r} not found (no folder with predictions.parquet){where}")
    folder = folder.resolve()
    if not (folder / "COMPLETE").exists():
        raise ReviewLoadError(f"run {folder} is not complete (no COMPLETE marker): training may still be running")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ReviewLoadError(f"{folder / 'config.json'}: cannot read the run's config: {error}") from None
    return RunInfo(name=str(config.get("name") or folder.name), path=folder, config=config)


_PREDICTION_COLUMNS = ("id", "view", "label", "predicted", "confidence", "probabilities", "logits")


def read_predictions(run: RunInfo) -> Any:
    """The run's predictions, one row per id (out-of-sample views preferred in :data:`OUT_OF_SAMPLE_VIEWS` order)."""
    import polars as pl

    try:
        frame = pl.read_parquet(run.predictions_path)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user problem
        raise ReviewLoadError(f"{run.predictions_path}: cannot read predictions: {error}") from None
    missing = [c for c in _PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ReviewLoadError(f"{run.predictions_path}: missing column(s) {', '.join(missing)} (see docs/contracts.md)")
    rank = {view: i for i, view in enumerate(OUT_OF_SAMPLE_VIEWS)}
    frame = frame.with_columns(
        pl.col("view").replace_strict(rank, default=len(rank), return_dtype=pl.Int32).alias("_rank")
    )
    return frame.sort("_rank", maintain_order=True).unique("id", keep="first", maintain_order=True).drop("_rank")


def run_policy(run: RunInfo) -> tuple[labels.LabelPolicy, str | None]:
    """The run's label policy (checked against its ``class_names``) and FER+ vote mode."""
    config = run.config
    name = config.get("policy")
    if not name:
        raise ReviewLoadError(f"{run.path / 'config.json'}: no 'policy'")
    try:
        policy = labels.get_policy(name)
    except labels.PolicyError:
        fallback = config.get("policy_name")
        if fallback and fallback in labels.BUILTIN_POLICIES:
            policy = labels.BUILTIN_POLICIES[fallback]
        else:
            raise ReviewLoadError(
                f"run {run.name}: label policy {name!r} cannot be found (a TOML policy file that moved?)"
            ) from None
    class_names = config.get("class_names")
    if class_names is not None and tuple(class_names) != policy.classes:
        raise ReviewLoadError(
            f"run {run.name}: class_names {list(class_names)} differ from policy {policy.name}'s classes "
            f"{list(policy.classes)}; the run's label order does not match the policy"
        )
    vote_mode = config.get("vote_mode")
    if vote_mode is not None:
        labels.get_vote_mode(vote_mode)
    return policy, vote_mode


def ensure_gt_field(ds: Any, policy: labels.LabelPolicy, vote_mode: str | None) -> str:
    """The ground-truth field of a policy (and FER+ vote mode), created from the stored labels if missing."""
    import fiftyone as fo

    field = policy_field(policy, vote_mode)
    if ds.has_sample_field(field):
        return field
    ids = ds.values("source_id")
    if vote_mode is None:
        canonical = np.asarray(ds.values("label_index"), dtype=np.int64)
        keep = np.ones(len(canonical), dtype=bool)
    else:
        votes = np.array([v if v is not None else [0] * 10 for v in ds.values("votes")], dtype=np.int64).reshape(-1, 10)
        targets = labels.ferplus_vote_targets(votes, vote_mode)
        canonical, keep = targets.label, targets.keep
    mapped = policy.apply(canonical)
    values = {
        sid: fo.Classification(label=policy.classes[m])
        for sid, m, k in zip(ids, mapped.tolist(), keep.tolist(), strict=True)
        if m >= 0 and k
    }
    ds.add_sample_field(field, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.set_values(field, values, key_field="source_id")
    classes = dict(ds.classes)
    classes[field] = list(policy.classes)
    ds.classes = classes
    ds.save()
    return field


@dataclasses.dataclass
class RunSummary:
    """What :func:`attach_run` did."""

    name: str
    key: str
    policy: str
    vote_mode: str | None
    gt_field: str
    eval_key: str
    predictions: int
    matched: int
    unmatched: int
    label_disagreements: int
    accuracy: float | None
    flagged: int
    scores: dict[str, Any] = dataclasses.field(default_factory=dict)
    protocol: str | None = None
    data_fingerprint: str | None = None


def attach_run(
    ds: Any,
    run: RunInfo,
    *,
    allow_partial: bool = False,
    top_k: int | None = None,
    landmark_model: bool = True,
    log: Log = _quiet,
) -> RunSummary:
    """Add a run's predictions, evaluation and error scores to ``ds``.

    Everything is validated before the first write; if anything fails afterwards the run's
    fields, evaluation and brain runs are removed again (the dataset is as before).

    Raises:
        RunMismatchError: prediction ids missing from the dataset (all of them, or some
            without ``allow_partial``)
        ReviewLoadError: a run of another dataset, an unknown policy, unreadable files
    """
    check_run_dataset(ds, run)
    policy, vote_mode = run_policy(run)
    predictions = read_predictions(run)
    check_prediction_classes(run, predictions, len(policy.classes))
    matched, unmatched = match_predictions(ds, run, predictions, allow_partial=allow_partial)
    fields = RunFields.for_run(run.name)
    protocol, fingerprint = run.provenance()
    remove_run(ds, fields.key)  # reloading a run replaces it
    before = set(ds.get_field_schema())
    log(
        f"run {run.name}: {matched.height} predictions ({unmatched} unmatched ids skipped)"
        if unmatched
        else f"run {run.name}: {matched.height} predictions"
    )
    try:
        gt_field = ensure_gt_field(ds, policy, vote_mode)
        write_predictions(ds, fields, policy, matched, protocol=protocol, data_fingerprint=fingerprint)
        disagreements = count_label_disagreements(ds, gt_field, policy, matched, log=log)
        accuracy = evaluate_run(ds, fields, policy, gt_field, protocol=protocol, data_fingerprint=fingerprint)
        scores = label_scores.score_run(
            ds,
            fields,
            gt_field=gt_field,
            predictions=matched,
            classes=policy.classes,
            landmarks=landmark_model,
            log=log,
        )
        summary = RunSummary(
            name=run.name,
            key=fields.key,
            policy=policy.name,
            vote_mode=vote_mode,
            gt_field=gt_field,
            eval_key=fields.eval_key(policy),
            predictions=predictions.height,
            matched=matched.height,
            unmatched=unmatched,
            label_disagreements=disagreements,
            accuracy=accuracy,
            flagged=int(scores.get("label_issues", 0)),
            scores=scores,
            protocol=protocol,
            data_fingerprint=fingerprint,
        )
        record_run(ds, run, summary, allow_partial=allow_partial, top_k=top_k, landmark_model=landmark_model)
    except BaseException:
        remove_run(ds, fields.key, created=set(ds.get_field_schema()) - before)
        raise
    return summary


def check_run_dataset(ds: Any, run: RunInfo) -> None:
    """Raise unless the run was trained on the dataset ``ds`` holds (where both say which)."""
    dataset = (ds.info.get(INFO_KEY) or {}).get("dataset")
    run_dataset = run.config.get("dataset")
    if run_dataset and dataset and run_dataset != dataset:
        raise ReviewLoadError(
            f"run {run.name} was trained on {run_dataset}, but FiftyOne dataset {ds.name!r} holds {dataset}"
        )


def check_prediction_classes(run: RunInfo, predictions: Any, num_classes: int) -> None:
    """Raise unless every row has ``num_classes`` probabilities and a predicted class in range."""
    import polars as pl

    bad_width = predictions.filter(pl.col("probabilities").list.len() != num_classes).height
    if bad_width:
        raise ReviewLoadError(f"run {run.name}: {bad_width} prediction rows do not have {num_classes} probabilities")
    bad_class = predictions.filter(~pl.col("predicted").is_between(0, num_classes - 1)).height
    if bad_class:
        raise ReviewLoadError(f"run {run.name}: {bad_class} predicted class indices outside 0..{num_classes - 1}")


def match_predictions(ds: Any, run: RunInfo, predictions: Any, *, allow_partial: bool) -> tuple[Any, int]:
    """The prediction rows whose ids are in ``ds``, and how many are not.

    Raises:
        RunMismatchError: no id matches, or some do not and ``allow_partial`` is false
    """
    dataset_ids = set(ds.values("source_id"))
    in_dataset = predictions["id"].is_in(list(dataset_ids))
    matched = predictions.filter(in_dataset)
    unmatched = predictions.height - matched.height
    if matched.height == 0:
        raise RunMismatchError(
            f"none of the {predictions.height} prediction ids of run {run.name} is in FiftyOne dataset {ds.name!r} "
            f"(e.g. {predictions['id'][0]!r}); the run was trained on another dataset or source"
        )
    if unmatched and not allow_partial:
        example = predictions.filter(~in_dataset)["id"].head(3).to_list()
        raise RunMismatchError(
            f"{unmatched} of {predictions.height} prediction ids of run {run.name} are not in FiftyOne dataset "
            f"{ds.name!r} (e.g. {', '.join(map(repr, example))}); nothing was loaded. "
            f"Pass --allow-partial to load the {matched.height} predictions that match"
        )
    return matched, unmatched


def write_predictions(
    ds: Any,
    fields: RunFields,
    policy: labels.LabelPolicy,
    matched: Any,
    *,
    protocol: str | None,
    data_fingerprint: str | None,
) -> None:
    """The run's predictions as ``fields.pred`` (label, confidence, logits) and its V/A predictions.

    The protocol and data fingerprint go on every prediction, where the App shows them
    (tooltip, sidebar filter).
    """
    import fiftyone as fo

    provenance = {
        name: value
        for name, value in (("protocol", protocol), ("data_fingerprint", data_fingerprint))
        if value is not None
    }
    ids = matched["id"].to_list()
    predicted = matched["predicted"].to_list()
    confidence = matched["confidence"].to_list()
    logits = matched["logits"].to_list()
    ds.add_sample_field(fields.pred, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    ds.set_values(
        fields.pred,
        {
            sid: fo.Classification(
                label=policy.classes[p], confidence=float(c), logits=np.asarray(lg, np.float32), **provenance
            )
            for sid, p, c, lg in zip(ids, predicted, confidence, logits, strict=True)
        },
        key_field="source_id",
    )
    if provenance:
        ds.add_dynamic_sample_fields(fields=fields.pred)
    for column, field in (("valence_pred", fields.valence), ("arousal_pred", fields.arousal)):
        if column in matched.columns and matched[column].null_count() < matched.height:
            values = {sid: float(v) for sid, v in zip(ids, matched[column].to_list(), strict=True) if v is not None}
            ds.add_sample_field(field, fo.FloatField)
            ds.set_values(field, values, key_field="source_id")


def count_label_disagreements(
    ds: Any, gt_field: str, policy: labels.LabelPolicy, matched: Any, *, log: Log = _quiet
) -> int:
    """Rows whose label in the run differs from ``gt_field``'s (a mismatch means a label-order bug)."""
    num_classes = len(policy.classes)
    ids = matched["id"].to_list()
    truth = dict(zip(*ds.values(["source_id", f"{gt_field}.label"]), strict=True))
    run_labels = [
        policy.classes[v] if v is not None and 0 <= v < num_classes else None for v in matched["label"].to_list()
    ]
    disagreements = sum(1 for sid, lab in zip(ids, run_labels, strict=True) if truth.get(sid) != lab)
    if disagreements:
        log(f"warning: {disagreements} of {len(ids)} rows: the run's label differs from {gt_field}")
    return disagreements


def evaluate_run(
    ds: Any,
    fields: RunFields,
    policy: labels.LabelPolicy,
    gt_field: str,
    *,
    protocol: str | None,
    data_fingerprint: str | None,
) -> float | None:
    """``evaluate_classifications`` of the run's predictions under ``fields.eval_key(policy)``; the accuracy.

    ``None`` when no sample has both a prediction and a ground-truth label.
    """
    view = ds.exists(fields.pred).exists(gt_field)
    if not len(view):
        return None
    results = view.evaluate_classifications(
        fields.pred,
        gt_field=gt_field,
        eval_key=fields.eval_key(policy),
        classes=list(policy.classes),
        progress=False,
        protocol=protocol,  # stored in the evaluation's config (the App's Model Evaluation panel)
        data_fingerprint=data_fingerprint,
    )
    return float(results.metrics()["accuracy"])


def record_run(
    ds: Any,
    run: RunInfo,
    summary: RunSummary,
    *,
    allow_partial: bool,
    top_k: int | None,
    landmark_model: bool,
) -> None:
    """Record the run in ``dataset.info`` (making it the active run) and show it in the App."""
    record = {
        "name": run.name,
        "path": str(run.path),
        "policy": summary.policy,
        "vote_mode": summary.vote_mode,
        "gt_field": summary.gt_field,
        "eval_key": summary.eval_key,
        "matched": summary.matched,
        "unmatched": summary.unmatched,
        "allow_partial": allow_partial,
        "accuracy": summary.accuracy,
        "top_k": top_k,
        "landmark_model": landmark_model,
        "scores": summary.scores,
        "protocol": summary.protocol,
        "data_fingerprint": summary.data_fingerprint,
    }
    info = ds.info.get(INFO_KEY) or {}
    info.setdefault("runs", {})[summary.key] = record
    info["active_run"] = summary.key
    ds.info[INFO_KEY] = info
    ds.save()
    update_app_config(ds)


def remove_run(ds: Any, key: str, *, created: set[str] | None = None) -> None:
    """Delete a run's fields, evaluations and brain runs (and ``created`` fields) from ``ds``."""
    fields = RunFields(key)
    for eval_key in list(ds.list_evaluations()):
        if eval_key.startswith(f"eval_{key}_"):
            ds.delete_evaluation(eval_key)
    for brain_key in list(ds.list_brain_runs()):
        if brain_key in (fields.mistakenness, fields.hardness, fields.fused_mistakenness):
            ds.delete_brain_run(brain_key)
    names = set(fields.sample_fields()) | set(created or ())
    present = [n for n in names if ds.has_sample_field(n) and not n.startswith("gt_")]
    if present:
        ds.delete_sample_fields(present)
    info = ds.info.get(INFO_KEY)
    if info and key in info.get("runs", {}):
        del info["runs"][key]
        if info.get("active_run") == key:
            info["active_run"] = next(reversed(info["runs"]), None) if info["runs"] else None
        ds.info[INFO_KEY] = info
        ds.description = describe_dataset(info)
        ds.save()


def reattach_runs(
    ds: Any, old_info: Mapping[str, Any], *, skip: RunInfo | None, notes: list[str], log: Log
) -> list[RunSummary]:
    """Attach the runs a rebuilt dataset had before (those whose folders still exist)."""
    summaries = []
    skip_key = RunFields.for_run(skip.name).key if skip is not None else None
    for key, record in old_info.get("runs", {}).items():
        if key == skip_key:
            continue
        try:
            previous = resolve_run(record["path"])
            summaries.append(
                attach_run(
                    ds,
                    previous,
                    allow_partial=bool(record.get("allow_partial")),
                    top_k=record.get("top_k"),
                    landmark_model=bool(record.get("landmark_model", True)),
                    log=log,
                )
            )
        except ReviewLoadError as error:
            notes.append(f"previous run {record.get('name', key)} not re-attached: {error}")
    return summaries
