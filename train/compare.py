"""Policy comparisons that say what they can conclude.

:func:`compare_runs` reads finished run folders (``config.json``, ``metrics.json`` and
``predictions.parquet``) and builds the table ``curate train --policies`` and ``curate train
compare`` print:

* **Arms.** Runs that differ only in their seed form one *arm* (a policy, or a policy with
  another recipe); each figure is the mean over the arm's seeds, with the spread between
  seeds (sample sd) beside it.
* **Intervals.** Every model figure carries a 95% interval from a bootstrap over the view's
  rows (resampled within each label, so class counts stay fixed) and over the arm's seeds
  (resampled with replacement): it covers both the luck of the evaluation rows and the luck
  of the training run.
* **Trivial rules.** Beside the models, on the same rows: *majority class* (always the most
  frequent training class of the policy) and *class prior* (a class drawn at random with the
  training shares; expected values). A model that does not beat them has learnt nothing.
* **Common ground.** Policies with different label sets are scored on their own views with
  different labels, so their numbers do not compare. The common-ground view keeps the rows
  whose canonical label every compared policy keeps *as itself* (maps to a class of the same
  name: for merge-to-neutral vs drop-7-plus, the seven basic expressions), labels them with
  that canonical name and scores every model's own top-1 prediction by class name (a
  prediction of a class outside the common ground, e.g. Contempt, is an error).
* **Differences.** For each pair of arms on each common-ground view: the difference in
  accuracy and in balanced accuracy with a paired 95% bootstrap interval (the same resampled
  rows for both arms); "no detectable difference" when the interval covers 0.

Runs measured under different evaluation protocols (dataset, data, hold-out rule, caps,
exclusion list) are refused: their views hold different rows. Runs of an arm that repeat a
seed are refused too.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate import labels as _labels
from train.config import TrainError
from train.runs import finite, load_run, write_json

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
METRIC_TITLES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy (mean recall)",
    "macro_f1": "macro-F1",
}
#: Bootstrap replicates and their seed (fixed: the same runs give the same table).
REPLICATES = 2000
BOOTSTRAP_SEED = 0
#: Options that define how a run is evaluated: runs that differ in one are not comparable.
PROTOCOL_FIELDS = ("dataset", "holdout_fraction", "holdout_seed", "max_eval_examples", "exclude_sha256")
#: Options that make two runs different arms (a run's seed and name do not).
RECIPE_FIELDS = (
    "policy_name", "vote_mode", "model", "alpha", "image_size", "align", "colour", "epochs", "freeze_epochs", "batch_size",
    "learning_rate", "warmup_epochs", "ema", "weights", "class_weight", "sampler", "augment", "dropout",
    "va_head", "monitor_view", "max_train_examples",
)  # fmt: skip
VIEW_ORDER = ("balanced", "class_frequency", "test")
COMMON_PREFIX = "common:"


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


def _predictions(run: dict[str, Any]) -> Any:
    import polars as pl

    path = run["path"] / "predictions.parquet"
    if not path.is_file():
        raise TrainError(f"compare: run {run['config'].get('name', run['path'].name)} has no predictions.parquet")
    wanted = ("id", "view", "label", "canonical", "predicted")  # not the probability lists
    present = pl.read_parquet_schema(path)
    return pl.read_parquet(path, columns=[c for c in wanted if c in present])


# --------------------------------------------------------------------------------------
# Protocol and arms
# --------------------------------------------------------------------------------------


def evaluation_protocol(config: dict[str, Any]) -> dict[str, Any]:
    """What fixes a run's evaluation rows: dataset, data (version, annotation hashes, TFDS
    config), hold-out rule, evaluation cap and exclusion list."""
    source = config.get("source") or {}
    protocol = {field: config.get(field) for field in PROTOCOL_FIELDS}
    protocol["data"] = {key: source.get(key) for key in ("name", "config", "version", "annotation_sha256")}
    return protocol


def check_same_protocol(loaded: Sequence[dict[str, Any]]) -> None:
    """Raise :class:`TrainError` naming the first protocol field two runs disagree on."""
    first = loaded[0]
    reference = evaluation_protocol(first["config"])
    for run in loaded[1:]:
        protocol = evaluation_protocol(run["config"])
        for field, value in protocol.items():
            if value != reference[field]:
                what = "different datasets" if field == "dataset" else f"different {field}"
                raise TrainError(
                    f"compare: runs measured under different protocols ({what}: {_shown(reference[field])} in "
                    f"{first['config'].get('name')}, {_shown(value)} in {run['config'].get('name')}); "
                    "their views hold different rows"
                )


def _shown(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclasses.dataclass
class Arm:
    """Runs that differ only in their seed."""

    label: str
    policy: str
    vote_mode: str | None
    class_names: tuple[str, ...]
    policy_mapping: tuple[int | None, ...]
    train_counts: np.ndarray
    runs: list[dict[str, Any]]

    @property
    def seeds(self) -> list[int]:
        return [int(run["config"].get("seed", 0)) for run in self.runs]

    def keeps_as_itself(self, canonical: int) -> bool:
        """Whether this arm's policy maps ``canonical`` to a class of the same name."""
        target = self.policy_mapping[canonical] if canonical < len(self.policy_mapping) else None
        if target is None or target < 0:
            return False
        return self.class_names[target].lower() == _labels.CANONICAL_NAMES[canonical].lower()


def _recipe(config: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(json.dumps(config.get(field), sort_keys=True) for field in RECIPE_FIELDS)


def arm_key(config: dict[str, Any]) -> str:
    """A short stable key of a run's recipe (everything in :data:`RECIPE_FIELDS`, not the
    seed): runs with the same key are seeds of one arm (``curate study remap`` groups by it)."""
    import hashlib

    return "arm:" + hashlib.sha256(json.dumps(_recipe(config)).encode()).hexdigest()[:12]


def group_arms(loaded: Sequence[dict[str, Any]]) -> list[Arm]:
    """Group runs into arms (same recipe, different seeds), in the order first seen."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in loaded:
        groups.setdefault(_recipe(run["config"]), []).append(run)
    recipes = list(groups)
    varying = [i for i, field in enumerate(RECIPE_FIELDS) if len({r[i] for r in recipes}) > 1 and i > 1]
    arms = []
    for recipe, runs in groups.items():
        config = runs[0]["config"]
        seeds = [int(r["config"].get("seed", 0)) for r in runs]
        if len(set(seeds)) != len(seeds):
            repeated = sorted({s for s in seeds if seeds.count(s) > 1})
            names = ", ".join(str(r["config"].get("name")) for r in runs if int(r["config"].get("seed", 0)) in repeated)
            raise TrainError(f"compare: runs {names} are the same recipe with the same seed; give each seed once")
        policy = config.get("policy_name") or config.get("policy")
        label = str(policy)
        if config.get("vote_mode"):
            label += f" ({config['vote_mode']})"
        extra = [f"{RECIPE_FIELDS[i]}={json.loads(recipe[i])}" for i in varying]
        if extra:
            label += " [" + ", ".join(extra) + "]"
        class_names = tuple(config["class_names"])
        counts = config.get("data", {}).get("train_counts") or {}
        arms.append(
            Arm(
                label=label,
                policy=str(policy),
                vote_mode=config.get("vote_mode"),
                class_names=class_names,
                policy_mapping=tuple(
                    config.get("policy_mapping") or _labels.get_policy(str(config.get("policy"))).mapping
                ),
                train_counts=np.array([float(counts.get(name, 0)) for name in class_names]),
                runs=sorted(runs, key=lambda r: int(r["config"].get("seed", 0))),
            )
        )
    return arms


# --------------------------------------------------------------------------------------
# Metrics on weighted rows (the bootstrap's workhorse)
# --------------------------------------------------------------------------------------


def weighted_metrics(weights: np.ndarray, labels: np.ndarray, predicted: np.ndarray, classes: int) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy and macro-F1 of ``predicted`` against ``labels`` for each
    row of ``weights`` (``(B, n)`` counts of each row in a resample; ones = the rows as they are).

    ``labels`` lie in ``0..classes-1``; ``predicted`` may be -1 (a class outside the label
    space: always wrong, counted against recall, never as a false positive). Balanced
    accuracy averages recall over the classes present in the labels; macro-F1 averages F1
    over the classes present in the labels or the predictions (scikit-learn's rule).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    truth = np.eye(classes)[labels]  # (n, K)
    inside = predicted >= 0
    guess = np.zeros((len(predicted), classes))
    guess[np.flatnonzero(inside), predicted[inside]] = 1.0
    hit = truth * guess
    support = weights @ truth  # (B, K)
    predicted_count = weights @ guess
    true_positive = weights @ hit
    total = weights.sum(axis=1)
    present = support > 0
    recall = np.divide(true_positive, support, out=np.zeros_like(support), where=present)
    balanced = (recall * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    f1_denominator = support + predicted_count
    f1 = np.divide(2 * true_positive, f1_denominator, out=np.zeros_like(support), where=f1_denominator > 0)
    in_f1 = f1_denominator > 0
    macro_f1 = (f1 * in_f1).sum(axis=1) / np.maximum(in_f1.sum(axis=1), 1)
    accuracy = true_positive.sum(axis=1) / np.maximum(total, 1e-12)
    return {"accuracy": accuracy, "balanced_accuracy": balanced, "macro_f1": macro_f1}


def stratified_weights(labels: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``(replicates, n)`` bootstrap counts, resampling rows within each label."""
    weights = np.zeros((replicates, len(labels)), dtype=np.float32)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        weights[:, rows] = rng.multinomial(len(rows), np.full(len(rows), 1.0 / len(rows)), size=replicates)
    return weights


def trivial_rules(labels: np.ndarray, classes: int, counts: np.ndarray, class_of: np.ndarray) -> dict[str, Any]:
    """Majority-class and class-prior scores on rows with ``labels`` (``0..classes-1``).

    ``counts`` are the policy's training counts per policy class; ``class_of[k]`` is the
    label-space index of policy class ``k`` (-1 when it is outside the label space).
    """
    shares = counts / max(counts.sum(), 1.0)
    majority = int(np.argmax(counts))
    predicted = np.full(len(labels), class_of[majority])
    exact = {k: float(v[0]) for k, v in weighted_metrics(np.ones(len(labels)), labels, predicted, classes).items()}
    # Class prior: predicted class k with probability shares[k], independent of the row.
    label_share = np.bincount(labels, minlength=classes) / max(len(labels), 1)
    prior_share = np.zeros(classes)
    for k, index in enumerate(class_of):
        if index >= 0:
            prior_share[index] += shares[k]
    present = label_share > 0
    in_f1 = present | (prior_share > 0)
    f1 = np.divide(
        2 * label_share * prior_share, label_share + prior_share, out=np.zeros(classes), where=in_f1
    )
    prior = {
        "accuracy": float((label_share * prior_share).sum()),
        "balanced_accuracy": float(prior_share[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[in_f1].mean()) if in_f1.any() else 0.0,
    }
    return {"majority": {"class": majority, **exact}, "prior": prior}


# --------------------------------------------------------------------------------------
# Views
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class ViewData:
    """One view's rows as every arm scores them: ``labels`` in ``0..classes-1`` and, per arm,
    ``predicted`` (runs x rows, -1 outside the label space)."""

    name: str
    title: str
    class_names: tuple[str, ...]
    labels: np.ndarray
    predicted: dict[str, np.ndarray]
    class_of: dict[str, np.ndarray]  # per arm: policy class index -> label-space index
    arms: list[Arm]


def _frames(arms: Sequence[Arm]) -> dict[str, list[Any]]:
    return {arm.label: [_predictions(run) for run in arm.runs] for arm in arms}


def own_view(arm: Arm, frames: list[Any], view: str, title: str) -> ViewData | None:
    """A policy's own view: the rows every run of the arm predicted, labelled by the policy."""
    import polars as pl

    tables = [f.filter(pl.col("view") == view).select("id", "label", "predicted") for f in frames]
    if any(t.height == 0 for t in tables):
        return None
    ids = tables[0]["id"]
    for table in tables[1:]:
        ids = ids.filter(ids.is_in(table["id"].implode()))
    base = pl.DataFrame({"id": ids})
    aligned = [base.join(t, on="id", how="left", maintain_order="left") for t in tables]
    labels = aligned[0]["label"].to_numpy().astype(np.int64)
    predicted = np.stack([a["predicted"].to_numpy().astype(np.int64) for a in aligned])
    classes = len(arm.class_names)
    return ViewData(
        view, title, arm.class_names, labels, {arm.label: predicted}, {arm.label: np.arange(classes)}, [arm]
    )


def common_classes(arms: Sequence[Arm]) -> list[int]:
    """Canonical labels every arm keeps as itself, in canonical order."""
    return [c for c in range(_labels.NUM_CANONICAL) if all(arm.keeps_as_itself(c) for arm in arms)]


def common_view(
    arms: Sequence[Arm], frames: dict[str, list[Any]], view: str, classes: Sequence[int]
) -> ViewData | None:
    """Rows of ``view`` that every run predicted, whose canonical label is in ``classes`` and
    the same in every run, labelled by canonical name."""
    import polars as pl

    tables = []
    for arm in arms:
        for frame in frames[arm.label]:
            if "canonical" not in frame.columns:
                return None
            tables.append(frame.filter(pl.col("view") == view).select("id", "canonical", "predicted"))
    if not tables or any(t.height == 0 for t in tables):
        return None
    merged = tables[0].rename({"canonical": "c0", "predicted": "p0"})
    for i, table in enumerate(tables[1:], 1):
        merged = merged.join(table.rename({"canonical": f"c{i}", "predicted": f"p{i}"}), on="id", how="inner")
    agree = pl.all_horizontal([pl.col(f"c{i}") == pl.col("c0") for i in range(len(tables))])
    merged = merged.filter(agree & pl.col("c0").is_in(list(classes)))
    if merged.height == 0:
        return None
    index_of = {c: i for i, c in enumerate(classes)}
    labels = np.array([index_of[c] for c in merged["c0"].to_list()], dtype=np.int64)
    predicted: dict[str, np.ndarray] = {}
    class_of: dict[str, np.ndarray] = {}
    column = 0
    for arm in arms:
        mapping = np.array(
            [index_of.get(_labels.CANONICAL_NAMES.index(name), -1) if name in _labels.CANONICAL_NAMES else -1
             for name in arm.class_names]
        )  # fmt: skip
        rows = []
        for _ in arm.runs:
            rows.append(mapping[merged[f"p{column}"].to_numpy().astype(np.int64)])
            column += 1
        predicted[arm.label] = np.stack(rows)
        class_of[arm.label] = mapping
    names = tuple(_labels.CANONICAL_NAMES[c] for c in classes)
    title = f"{view} view: its rows labelled {', '.join(names)} by every policy"
    return ViewData(COMMON_PREFIX + view, title, names, labels, predicted, class_of, list(arms))


# --------------------------------------------------------------------------------------
# Scoring a view
# --------------------------------------------------------------------------------------


def score_view(data: ViewData, *, replicates: int = REPLICATES, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Per arm: point figures (mean and sd over seeds), bootstrap intervals and trivial rules;
    per pair of arms: paired differences (only when the view holds several arms)."""
    rng = np.random.default_rng([seed, len(data.labels), len(data.arms)])
    classes = len(data.class_names)
    weights = stratified_weights(data.labels, replicates, rng)
    ones = np.ones((1, len(data.labels)))
    per_arm: dict[str, Any] = {}
    draws: dict[str, dict[str, np.ndarray]] = {}
    for arm in data.arms:
        runs = data.predicted[arm.label]
        points = [weighted_metrics(ones, data.labels, p, classes) for p in runs]
        resampled = [weighted_metrics(weights, data.labels, p, classes) for p in runs]
        picks = rng.integers(0, len(runs), size=(replicates, len(runs)))  # seeds resampled per replicate
        draws[arm.label] = {
            metric: np.stack([r[metric] for r in resampled], axis=1)[np.arange(replicates)[:, None], picks].mean(axis=1)
            for metric in METRICS
        }
        entry: dict[str, Any] = {
            "seeds": arm.seeds,
            "runs": [r["config"].get("name") for r in arm.runs],
            "rows": int(len(data.labels)),
            "label_counts": np.bincount(data.labels, minlength=classes).tolist(),
        }
        for metric in METRICS:
            values = np.array([float(p[metric][0]) for p in points])
            low, high = np.percentile(draws[arm.label][metric], [2.5, 97.5])
            entry[metric] = {
                "mean": float(values.mean()),
                "sd": float(values.std(ddof=1)) if len(values) > 1 else None,
                "values": values.tolist(),
                "ci95": [float(low), float(high)],
            }
        entry["trivial"] = trivial_rules(data.labels, classes, arm.train_counts, data.class_of[arm.label])
        majority = entry["trivial"]["majority"]
        majority["class_name"] = arm.class_names[majority["class"]]
        entry["beats_majority"] = {
            metric: bool(min(entry[metric]["values"]) > majority[metric]) for metric in ("accuracy", "balanced_accuracy")
        }
        per_arm[arm.label] = entry
    result: dict[str, Any] = {
        "view": data.name,
        "title": data.title,
        "rows": int(len(data.labels)),
        "classes": list(data.class_names),
        "label_counts": np.bincount(data.labels, minlength=classes).tolist(),
        "arms": per_arm,
    }
    if len(data.arms) > 1:
        result["differences"] = [
            _difference(a.label, b.label, per_arm, draws)
            for i, a in enumerate(data.arms)
            for b in data.arms[i + 1 :]
        ]
    return result


def _difference(a: str, b: str, per_arm: dict[str, Any], draws: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    out: dict[str, Any] = {"a": a, "b": b}
    for metric in ("accuracy", "balanced_accuracy"):
        delta = per_arm[a][metric]["mean"] - per_arm[b][metric]["mean"]
        low, high = np.percentile(draws[a][metric] - draws[b][metric], [2.5, 97.5])
        if low <= 0.0 <= high:
            verdict = "no detectable difference"
        else:
            verdict = f"{a if delta > 0 else b} higher"
        out[metric] = {"difference": float(delta), "ci95": [float(low), float(high)], "verdict": verdict}
    return out


# --------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------


def compare_runs(
    runs: Sequence[str | Path],
    *,
    runs_dir: str | Path | None = None,
    workspace: str | Path | None = None,
    replicates: int = REPLICATES,
) -> dict[str, Any]:
    """The comparison of finished runs (see the module docstring), as a JSON-able dict.

    Raises :class:`TrainError` for an incomplete or missing run, runs of different datasets
    or evaluation protocols, and an arm that repeats a seed.
    """
    if not runs:
        raise TrainError("compare: give at least one run")
    loaded = [load_run(r, runs_dir=runs_dir, workspace=workspace) for r in runs]
    check_same_protocol(loaded)
    arms = group_arms(loaded)
    frames = _frames(arms)
    first = loaded[0]
    views: list[dict[str, Any]] = []
    descriptions = {}
    for run in loaded:
        for view in VIEW_ORDER:
            if view in run["metrics"] and view not in descriptions:
                descriptions[view] = (
                    f"{run['metrics'][view].get('split')} split: {run['metrics'][view].get('description') or view}"
                )
    for view in VIEW_ORDER:
        if view not in descriptions:
            continue
        merged: dict[str, Any] = {"view": view, "title": descriptions[view], "arms": {}}
        for arm in arms:
            data = own_view(arm, frames[arm.label], view, descriptions[view])
            if data is not None:
                merged["arms"].update(score_view(data, replicates=replicates)["arms"])
        if merged["arms"]:
            views.append(merged)
    common: dict[str, Any] = {"classes": [], "views": [], "note": None}
    if len(arms) > 1:
        classes = common_classes(arms)
        common["classes"] = [_labels.CANONICAL_NAMES[c] for c in classes]
        if not classes:
            common["note"] = "the compared policies keep no canonical label as itself in common"
        for view in VIEW_ORDER:
            if view not in descriptions or not classes:
                continue
            data = common_view(arms, frames, view, classes)
            if data is None:
                common["note"] = "some runs' predictions.parquet has no canonical column (trained before it existed)"
                continue
            common["views"].append(score_view(data, replicates=replicates))
    return {
        "dataset": first["config"]["dataset"],
        "protocol": evaluation_protocol(first["config"]),
        "arms": [
            {
                "label": arm.label,
                "policy": arm.policy,
                "vote_mode": arm.vote_mode,
                "classes": len(arm.class_names),
                "class_names": list(arm.class_names),
                "seeds": arm.seeds,
                "runs": [str(run["config"].get("name")) for run in arm.runs],
                "protocol_card": arm.runs[0]["metrics"].get("protocol"),
                "data_fingerprint": arm.runs[0]["metrics"].get("data_fingerprint"),
                "epochs_run": [run["metrics"].get("training", {}).get("epochs_run") for run in arm.runs],
                "best_epoch": [run["metrics"].get("training", {}).get("best_epoch") for run in arm.runs],
            }
            for arm in arms
        ],
        "views": views,
        "common_ground": common,
        "diagnostics": {
            str(run["config"].get("name")): {
                "vote_mode": run["config"].get("vote_mode"),
                "calibration": run["metrics"].get("calibration"),
                "views": run["metrics"].get("diagnostics"),
            }
            for arm in arms
            for run in arm.runs
            if run["metrics"].get("diagnostics")
        },
        "exports": {
            str(run["config"].get("name")): run["metrics"].get("export", {}).get("parity")
            for arm in arms
            for run in arm.runs
            if run["metrics"].get("export", {}).get("parity")
        },
        "method": {
            "figures": "mean over the arm's seeds; sd = sample sd between seeds",
            "interval": f"95% percentile bootstrap, {replicates} replicates: rows resampled within each label "
            "(paired across arms), seeds resampled with replacement per arm",
            "trivial": "majority class = always the policy's most frequent training class; class prior = a class "
            "drawn with the policy's training shares (expected values)",
            "common_ground": "rows whose canonical label every policy maps to a class of the same name; each model's "
            "top-1 class name must equal it",
        },
    }


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _figure(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    return f"{_pct(entry['mean'])} [{_pct(low)}, {_pct(high)}]"


def _signed(value: float) -> str:
    return f"{100 * value:+.1f}"


def _view_table(view: dict[str, Any]) -> list[str]:
    """Each arm's row, then its trivial rules' rows on the same rows."""
    lines = [
        "| model or rule | rows | seeds | accuracy | balanced accuracy (mean recall) | macro-F1 | seed sd of bal. acc. |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, entry in view["arms"].items():
        lines.append(
            f"| {label} | {entry['rows']:,} | {len(entry['seeds'])} | {_figure(entry['accuracy'])} | "
            f"{_figure(entry['balanced_accuracy'])} | {_figure(entry['macro_f1'])} | "
            f"{_pct(entry['balanced_accuracy']['sd'])} |"
        )
        majority, prior = entry["trivial"]["majority"], entry["trivial"]["prior"]
        for rule, numbers in ((f"always {majority['class_name']} (majority class)", majority), ("class prior", prior)):
            lines.append(
                f"| ↳ {rule} | {entry['rows']:,} | – | {_pct(numbers['accuracy'])} | "
                f"{_pct(numbers['balanced_accuracy'])} | {_pct(numbers['macro_f1'])} | – |"
            )
    return lines


def comparison_markdown(table: dict[str, Any]) -> str:
    """The comparison as Markdown: one table per view, then the paired differences."""
    arms = table["arms"]
    seeds = sorted({len(a["seeds"]) for a in arms})
    lines = [
        f"# Policy comparison on {table['dataset']}",
        "",
        f"{len(arms)} arm(s), {' or '.join(map(str, seeds))} seed(s) each. Figures in %: the mean over seeds "
        f"[95% interval: {table['method']['interval']}]. *Accuracy* is the share of the view's rows predicted "
        "right; *balanced accuracy* is the mean recall over the classes present. Trivial rules use each policy's "
        "training class counts.",
        "",
    ]
    if min(len(a["seeds"]) for a in arms) < 2:
        lines += [
            "**One seed** (in at least one arm): its intervals cover the luck of the evaluation rows, not of the "
            "training run (seeds differ by a few points); train with `--seeds 3` before concluding.",
            "",
        ]
    lines += [
        "| arm | classes | seeds | runs | epochs run / best | protocol card | data |",
        "|---|---:|---|---|---|---|---|",
    ]
    for arm in arms:
        epochs = ", ".join(f"{r}/{b}" for r, b in zip(arm["epochs_run"], arm["best_epoch"], strict=True))
        lines.append(
            f"| {arm['label']} | {arm['classes']} | {', '.join(map(str, arm['seeds']))} | {', '.join(arm['runs'])} | "
            f"{epochs} | {arm['protocol_card'] or '-'} | {arm['data_fingerprint'] or '-'} |"
        )
    common = table["common_ground"]
    if common["views"]:
        lines += [
            "",
            f"## Common ground: {', '.join(common['classes'])}",
            "",
            "Rows every compared policy labels as themselves, scored by each model's own top-1 class name "
            "(a prediction outside these classes is an error).",
        ]
        for view in common["views"]:
            lines += ["", f"### {view['title']}", ""]
            lines += _view_table(view)
            if view.get("differences"):
                lines += [
                    "",
                    "| A | B | Δ accuracy, A − B [95%] | Δ balanced accuracy, A − B [95%] | conclusion (balanced accuracy) |",
                    "|---|---|---:|---:|---|",
                ]
                for diff in view["differences"]:
                    acc, bal = diff["accuracy"], diff["balanced_accuracy"]
                    lines.append(
                        f"| {diff['a']} | {diff['b']} | {_signed(acc['difference'])} [{_signed(acc['ci95'][0])}, "
                        f"{_signed(acc['ci95'][1])}] | {_signed(bal['difference'])} [{_signed(bal['ci95'][0])}, "
                        f"{_signed(bal['ci95'][1])}] | {bal['verdict']} |"
                    )
    elif common.get("note"):
        lines += ["", f"Common ground: none ({common['note']})."]
    lines += ["", "## Each policy on its own views (its own labels: numbers of different policies do not compare)"]
    for view in table["views"]:
        lines += ["", f"### {view['view']} view ({view['title']})", ""]
        lines += _view_table(view)
    if table.get("diagnostics"):
        lines += ["", *diagnostics_lines(table["diagnostics"])]
    if table.get("exports"):
        lines += ["", "## What the exports cost (every evaluation row through every exported file; Δ in points)", ""]
        notes = []
        for number, (run, parity) in enumerate(table["exports"].items()):
            table_lines = parity_markdown(parity, run=run).splitlines()
            lines += table_lines if number == 0 else table_lines[2:]
            notes += [f"- {run}: {note}" for note in parity_notes(parity)]
        if notes:
            lines += ["", *notes]
    return "\n".join(lines) + "\n"


def diagnostics_lines(diagnostics: dict[str, Any]) -> list[str]:
    """Per run: slice gaps, calibration and FER+ vote figures (``docs/evaluation.md``)."""
    from train.diagnostics import ece_cell

    def interval(entry: dict[str, Any]) -> str:
        low, high = entry["ci95"]
        return f"{_pct(entry['value'])} [{_pct(low)}, {_pct(high)}]"

    lines = [
        "## Slices (balanced accuracy per slice, 95% bootstrap intervals over rows)",
        "",
        "| run | view | attribute | worst slice | best slice | gap, best − worst [95%] |",
        "|---|---|---|---|---|---:|",
    ]
    calibration, votes = [], []
    for run, entry in diagnostics.items():
        for view, figures in (entry.get("views") or {}).items():
            for attribute, numbers in figures.get("slices", {}).items():
                gap = numbers.get("balanced_accuracy_gap")
                if not gap:
                    lines.append(f"| {run} | {view} | {attribute} | fewer than two slices to rank | – | – |")
                    continue
                worst, best = numbers["values"][gap["worst"]], numbers["values"][gap["best"]]
                lines.append(
                    f"| {run} | {view} | {attribute} | {gap['worst']} ({worst['rows']:,} rows): "
                    f"{interval(worst['balanced_accuracy'])} | {gap['best']} ({best['rows']:,}): "
                    f"{interval(best['balanced_accuracy'])} | {interval(gap)} |"
                )
            if figures.get("votes"):
                v = figures["votes"]
                votes.append(
                    f"| {run} | {entry.get('vote_mode') or '–'} | {view} | {v['rows']:,} | {v['cross_entropy']:.3f} | "
                    f"{v['kl_divergence']:.3f} | {_pct(v['majority_accuracy'])} | {_pct(v['multi_target_accuracy'])} |"
                )
        calib = entry.get("calibration") or {}
        for view, numbers in (calib.get("views") or {}).items():
            t = calib.get("temperature")
            after = ece_cell(numbers, "ece_after") if "ece_after" in numbers else "–"
            calibration.append(
                f"| {run} | {view} | {ece_cell(numbers, 'ece')} | {after} | {'–' if t is None else f'{t:.2f}'} |"
            )
    if calibration:
        lines += ["", "## Calibration (ECE in %, 15 bins; temperature fitted on the train hold-out only)", "",
                  "| run | view | ECE raw (noise floor) | ECE after temperature (noise floor) | temperature |",
                  "|---|---|---:|---:|---:|", *calibration, "",
                  "Noise floor: the ECE a perfectly calibrated model reaches on these rows 95% of the time."]  # fmt: skip
    if votes:
        lines += ["", "## FER+ votes (predicted distribution against all ten votes)", "",
                  "| run | trained with vote mode | view | rows | cross-entropy | KL | accuracy vs majority | "
                  "accuracy vs any class with >= 30% of votes |", "|---|---|---|---:|---:|---:|---:|---:|",
                  *votes]  # fmt: skip
    return lines


#: Backends in the order :func:`parity_markdown` lists them.
PARITY_BACKENDS = ("keras", "float", "int8", "dynamic", "onnx")
PARITY_NAMES = {"keras": "Keras", "float": "TFLite float", "int8": "TFLite int8 (full integer)",
                "dynamic": "TFLite int8 weights (dynamic range)", "onnx": "ONNX (onnxruntime)"}  # fmt: skip


def with_interval(value: float, entry: dict[str, Any], key: str, style: str, scale: float = 1.0) -> str:
    """``value`` in ``style``, then its 95 % interval ``entry[key + "_ci95"]`` times ``scale`` when the
    run stored one (``90.36% [87.61, 92.56]``)."""
    interval = entry.get(f"{key}_ci95")
    if not interval:
        return style.format(value)
    low, high = (style.format(scale * bound).rstrip("%") for bound in interval)
    return f"{style.format(value)} [{low}, {high}]"


def parity_markdown(parity: dict[str, Any], *, run: str | None = None) -> str:
    """Each backend on each evaluation view: accuracy, agreement with Keras, and what each quantised
    file (full-integer and dynamic-range int8) costs against TFLite float, with 95 % intervals
    (:func:`train.export.quantisation_cost`)."""
    lines = [
        "| " + ("run | " if run else "") + "view | rows | backend | accuracy | balanced accuracy | top-1 = Keras | "
        "max abs. Δ probability | quantised: top-1 = float [95%] | quantised: Δ accuracy [95%] | "
        "quantised: Δ balanced accuracy [95%] |",
        "|" + ("---|" if run else "") + "---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for view, entry in parity.items():
        for backend in PARITY_BACKENDS:
            if backend not in entry:
                continue
            b = entry[backend]
            agree = "–" if backend == "keras" else f"{100 * b['top1_agreement_with_keras']:.2f}%"
            diff = "–" if backend == "keras" else f"{b['max_abs_difference']:.2g}"
            int8 = ["–", "–", "–"]
            if "top1_agreement_with_float" in b:
                int8 = [with_interval(100 * b["top1_agreement_with_float"], b, "top1_agreement_with_float", "{:.2f}%", 100),
                        with_interval(b["accuracy_change_vs_float"], b, "accuracy_change_vs_float", "{:+.2f}"),
                        with_interval(b["balanced_accuracy_change_vs_float"], b, "balanced_accuracy_change_vs_float",
                                       "{:+.2f}")]  # fmt: skip
            cells = [view, f"{entry['rows']:,}", PARITY_NAMES[backend], _pct(b["accuracy"]),
                     _pct(b["balanced_accuracy"]), agree, diff, *int8]  # fmt: skip
            lines.append("| " + (f"{run} | " if run else "") + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parity_notes(parity: dict[str, Any]) -> list[str]:
    """One line per quantised file that keeps float's top-1 on fewer than
    :data:`train.export.AGREEMENT_TARGET` of a view's rows, naming the file that does better."""
    from train.export import AGREEMENT_TARGET, QUANTISED

    agreement = {kind: [(view, entry.get(kind, {}).get("top1_agreement_with_float")) for view, entry in parity.items()]
                 for kind in QUANTISED}  # fmt: skip
    # a file that has the figure on every view and meets the target on each
    meets = [kind for kind, values in agreement.items() if all(v is not None and v >= AGREEMENT_TARGET for _, v in values)]
    notes = []
    for kind, values in agreement.items():
        short = [(view, value) for view, value in values if value is not None and value < AGREEMENT_TARGET]
        if not short:
            continue
        where = ", ".join(f"{100 * value:.1f}% of {view} rows" for view, value in short)
        advice = f"; {PARITY_NAMES[meets[0]]} keeps {100 * AGREEMENT_TARGET:.0f}% or more" if meets else ""
        notes.append(
            f"{PARITY_NAMES[kind]} keeps float's top-1 on {where}, under {100 * AGREEMENT_TARGET:.0f}%{advice} "
            "(docs/predict.md: which file to ship)."
        )
    return notes


def write_comparison(table: dict[str, Any], stem: str | Path) -> dict[str, Path]:
    """Write ``<stem>.md`` and ``<stem>.json``; return both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": stem.with_name(stem.name + ".md"), "json": stem.with_name(stem.name + ".json")}
    for kind, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        if kind == "markdown":
            tmp.write_text(comparison_markdown(table), encoding="utf-8")
        else:
            write_json(tmp, finite(table))
        os.replace(tmp, path)
    return paths
