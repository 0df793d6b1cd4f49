"""Applying label policies to the workspace and comparing them.

Scope
-----
* The counting itself (rows per class, transition matrices, in DuckDB and Polars) lives in
  :mod:`curate.studies.counting`; :func:`class_counts_duckdb` and
  :func:`transition_matrix_duckdb` are also importable from here.
* :func:`remap`: store a policy's labels in the workspace (view ``remapped``), optionally
  export them to Parquet, and return the transition matrix and the new balance.
* :func:`policy_study`: the side-by-side comparison behind ``curate study remap`` -- data
  kept, classes, balance, the balanced vs class-frequency validation views, valence/arousal
  of the labels a policy merges, and accuracies of registered runs.

Shapes: a transition matrix is ``int64[NUM_CANONICAL, K + 1]`` (rows canonical labels 0-10,
columns the policy's K classes then "dropped"); count vectors are ``int64[K + 1]`` (last =
dropped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from curate import datasets, labels
from curate import datasets as datasets_registry
from curate.studies import balance as _balance
from curate.studies.counting import class_counts_duckdb, sql_list, transition_matrix_duckdb
from curate.studies.holdout import DEFAULT_FRACTION, DEFAULT_SEED, holdout_sql

#: Policies compared by ``curate study remap`` when none are named.
DEFAULT_STUDY_POLICIES: tuple[str, ...] = (
    "keep-all",
    "drop-7-plus",
    "merge-to-neutral",
    "drop-8-plus",
    "merge-8-plus-to-neutral",
)
#: Labels whose valence/arousal the study compares with Neutral's.
VA_FOCUS_LABELS: tuple[int, ...] = (7, 8)


# --------------------------------------------------------------------------------------
# curate remap
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RemapResult:
    """What :func:`remap` stored and measured.

    Attributes
    ----------
    policy : LabelPolicy
    datasets : list of str
    transitions : dict[str, ndarray]
        Per dataset, ``int64[11, K + 1]`` transition matrix.
    balance : BalanceReport
        The new balance per (dataset, split).
    rows : int
        Rows the ``remapped`` view serves for this policy and these datasets (kept and dropped).
    out : Path or None
        The Parquet export, when asked for.
    vote_modes : dict[str, str]
        Per dataset with votes, the FER+ vote mode of its labels.
    vote_excluded : dict[str, dict[str, int]]
        Per dataset with votes, the rows dropped whatever the policy because their vote
        winner is unknown / not a face, per canonical label name (part of ``dropped``).
    """

    policy: labels.LabelPolicy
    datasets: list[str]
    transitions: dict[str, np.ndarray]
    balance: _balance.BalanceReport
    rows: int
    out: Path | None
    vote_modes: dict[str, str] = dataclasses.field(default_factory=dict)
    vote_excluded: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    @property
    def transition(self) -> np.ndarray:
        """Transition matrix summed over the datasets."""
        return sum(self.transitions.values(), np.zeros((labels.NUM_CANONICAL, self.policy.num_classes + 1), np.int64))

    @property
    def kept(self) -> int:
        return int(self.transition[:, :-1].sum())

    @property
    def dropped(self) -> int:
        return int(self.transition[:, -1].sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.name,
            "classes": list(self.policy.classes),
            "datasets": self.datasets,
            "kept": self.kept,
            "dropped": self.dropped,
            "transitions": {d: m.tolist() for d, m in self.transitions.items()},
            "balance": self.balance.to_dict(),
            "rows": self.rows,
            "out": None if self.out is None else str(self.out),
            "vote_modes": self.vote_modes,
            "vote_excluded": self.vote_excluded,
        }


def remap(
    workspace: Any,
    policy: str | labels.LabelPolicy,
    *,
    dataset: str | None = None,
    out: str | Path | None = None,
    beta: float = _balance.DEFAULT_BETA,
    vote_mode: str | None = None,
) -> RemapResult:
    """Apply ``policy`` to the ingested annotations and store the result in the workspace.

    Writes, in one transaction, the policy's definition (table ``policies``), its mapping
    (``policy_maps``) and the datasets it applies to (``applied``). The view ``remapped`` then
    serves one row per annotation of those datasets: policy, dataset, id, split, canonical
    ``label``, ``class_index`` and ``class_name`` (both null where the policy drops the row),
    always in step with the ingested annotations. Re-running replaces the earlier definition.
    With ``out``, the rows are also written to Parquet (zstd).

    Parameters
    ----------
    workspace : Workspace
    policy : str or LabelPolicy
        Built-in policy name or TOML policy path.
    dataset : str, optional
        One ingested dataset; default all ingested datasets.
    out : path-like, optional
        Parquet file to export the remapped rows to.
    vote_mode : str, optional
        FER+ vote mode (:data:`curate.labels.VOTE_MODES`): the stored labels of the rows with
        votes are first re-derived from their votes under it, in the same transaction
        (:func:`curate.workspace.relabel_votes`; ``ingests.vote_mode`` records it). Default:
        keep the mode they were ingested under. Rows whose winner is unknown / not a face are
        dropped under every policy (``remapped.dropped_by = 'vote mode'``).
    """
    from curate.workspace import relabel_votes, stored_vote_mode, vote_excluded_counts

    resolved = labels.get_policy(policy)
    if vote_mode is not None:
        labels.get_vote_mode(vote_mode)
    workspace.require_database()
    out_path = None if out is None else Path(out)
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    with workspace.connect(write=True) as con:
        datasets = workspace.require_datasets(con, dataset)
        voted = [name for name in datasets if datasets_registry.get(name).votes]
        if vote_mode is not None:
            if not voted:
                raise ValueError(
                    f"--vote-mode applies to {', '.join(datasets_registry.having('votes'))} only, "
                    f"not {', '.join(datasets)}"
                )
            for name in voted:
                if stored_vote_mode(con, name) != vote_mode:
                    relabel_votes(con, name, vote_mode)
        in_list = sql_list(datasets)
        workspace.record_policy(con, resolved, datasets)
        transitions = {name: transition_matrix_duckdb(con, resolved, datasets=[name]) for name in datasets}
        counts = class_counts_duckdb(con, resolved, datasets=datasets)
        vote_modes = {name: stored_vote_mode(con, name) for name in voted}
        vote_excluded = {name: vote_excluded_counts(con, name) for name in voted}
        if out_path is not None:
            from curate.workspace import copy_to_parquet

            policy_literal = resolved.name.replace("'", "''")
            copy_to_parquet(
                con,
                f"SELECT * FROM remapped WHERE policy = '{policy_literal}' AND dataset IN {in_list} "
                "ORDER BY dataset, split, id",
                out_path,
            )
    return RemapResult(
        policy=resolved,
        datasets=datasets,
        transitions=transitions,
        balance=_balance.summarize_counts(counts, resolved, beta=beta),
        rows=int(sum(m.sum() for m in transitions.values())),
        out=out_path,
        vote_modes=vote_modes,
        vote_excluded=vote_excluded,
    )


# --------------------------------------------------------------------------------------
# curate study remap
# --------------------------------------------------------------------------------------


def _view_summary(counts: np.ndarray, policy: labels.LabelPolicy) -> dict[str, Any]:
    """Numbers of one evaluation view: counts and what trivial predictors would score."""
    kept = counts[:-1]
    total = int(kept.sum())
    present = int((kept > 0).sum())
    return {
        "counts": kept.tolist(),
        "total": total,
        "dropped": int(counts[-1]),
        "shares": (kept / total).tolist() if total else [0.0] * len(kept),
        "majority_class": policy.classes[int(np.argmax(kept))] if total else None,
        # Accuracy of always predicting the largest class; its mean class accuracy is 1/present.
        "majority_accuracy": float(kept.max() / total) if total else None,
        "majority_mean_class_accuracy": 1.0 / present if present else None,
        "chance_accuracy": 1.0 / policy.num_classes,
        "normalized_entropy": _balance.normalized_entropy(kept) if total else None,
        "imbalance_ratio": _balance.imbalance_ratio(kept) if total else None,
    }


#: The views and metrics of a registered run the study shows (names as in ``metrics.json``).
RUN_VIEWS = ("balanced", "class_frequency", "test")
RUN_METRICS = ("accuracy", "balanced_accuracy")


def run_view_metrics(metrics: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """Accuracy and balanced accuracy of each evaluation view of a run's registered metrics
    (``metrics[view][metric]``, or the flat ``"view/metric"`` keys of ``Workspace.register_run``)."""
    out: dict[str, dict[str, float | None]] = {}
    for view in RUN_VIEWS:
        nested = metrics.get(view)
        numbers: dict[str, float | None] = {}
        for metric in RUN_METRICS:
            value = nested.get(metric) if isinstance(nested, Mapping) else None
            if value is None:
                value = metrics.get(f"{view}/{metric}")
            numbers[metric] = None if value is None else float(value)
        if any(v is not None for v in numbers.values()):
            out[view] = numbers
    return out


#: Column titles of the registered runs' figures (one per view and metric; never "bal. acc.").
RUN_COLUMNS = {
    (view, metric): f"{view.replace('_', '-')} view: {metric.replace('_', ' ')}"
    for view in RUN_VIEWS
    for metric in RUN_METRICS
}


def run_figure(entry: Mapping[str, Any], view: str, metric: str) -> str:
    """``41.2%``, or ``41.2 ± 1.3% (3 seeds)`` for several seeds; ``–`` when not measured."""
    numbers = (entry.get("views") or {}).get(view, {}).get(metric)
    if not numbers:
        return "–"
    if numbers["sd"] is None:
        return f"{100 * numbers['mean']:.1f}%"
    return f"{100 * numbers['mean']:.1f} ± {100 * numbers['sd']:.1f}% ({len(numbers['values'])} seeds)"


def run_columns(entries: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The (view, metric) pairs any of ``entries`` has, in view order."""
    return [
        (view, metric)
        for view in RUN_VIEWS
        for metric in RUN_METRICS
        if any(metric in (e.get("views") or {}).get(view, {}) for e in entries)
    ]


def run_protocol(metrics: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """``(protocol card key, data fingerprint)`` a run recorded in its metrics (``train/loop.py``)."""
    protocol = metrics.get("protocol")
    fingerprint = metrics.get("data_fingerprint")
    return (None if protocol is None else str(protocol), None if fingerprint is None else str(fingerprint))


def policy_runs(runs: Sequence[Mapping[str, Any]], policy: str) -> list[dict[str, Any]]:
    """The registered runs of one policy, one entry per (protocol, data fingerprint, recipe).

    ``runs`` come newest first (:func:`curate.workspace.runs_from`). Runs measured under
    different protocol cards, on different data or with different recipes (the trainer's
    ``arm``: everything but the seed) are listed side by side and never averaged. Within one
    entry the newest run of each seed counts, and each view's accuracy and balanced accuracy
    are the mean over those seeds (``sd``: sample sd, ``None`` for one seed) -- the numbers
    ``curate train --seeds`` prints for the same runs.

    Each entry: ``name`` (the newest run), ``path``, ``protocol``, ``data_fingerprint`` (``None``
    when the run did not record them), ``arm``, ``seeds``, ``runs`` (registered runs in the
    entry, repeats of a seed included) and ``views`` = ``{view: {metric: {"mean", "sd",
    "values"}}}``.
    """
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for run in runs:
        if run["policy"] != policy:
            continue
        metrics = run.get("metrics") or {}
        key = (*run_protocol(metrics), metrics.get("arm"))
        group = groups.setdefault(
            key,
            {
                "name": run["name"],
                "path": run["path"],
                "protocol": key[0],
                "data_fingerprint": key[1],
                "arm": key[2],
                "runs": 0,
                "by_seed": {},
            },
        )
        group["runs"] += 1
        group["by_seed"].setdefault(metrics.get("seed"), run_view_metrics(metrics))  # newest per seed
    out = []
    for group in groups.values():
        by_seed = group.pop("by_seed")
        group["seeds"] = [seed for seed in by_seed if seed is not None]
        views: dict[str, Any] = {}
        for view in RUN_VIEWS:
            for metric in RUN_METRICS:
                values = [v[view][metric] for v in by_seed.values() if view in v and v[view][metric] is not None]
                if values:
                    views.setdefault(view, {})[metric] = {
                        "mean": float(np.mean(values)),
                        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                        "values": values,
                    }
        group["views"] = views
        out.append(group)
    return out


def _balanced_as_published(dataset: str) -> str | None:
    """The split published class-balanced (AffectNet's validation set), else ``None``."""
    spec = datasets.get(dataset)
    return spec.balanced_view_split if spec.balanced_split_is_balanced else None


def policy_study(
    workspace: Any,
    dataset: str,
    *,
    policies: Sequence[str | labels.LabelPolicy] = DEFAULT_STUDY_POLICIES,
    fraction: float = DEFAULT_FRACTION,
    seed: int = DEFAULT_SEED,
    beta: float = _balance.DEFAULT_BETA,
    va_sample: int = 2000,
    vote_mode: str | None = None,
) -> dict[str, Any]:
    """Compare label policies on one ingested dataset; every number as a JSON-ready dict.

    Per policy: the transition matrix, rows kept and dropped per split, balance of every
    split, two evaluation views -- each non-train split (for AffectNet ``validation`` is the
    *balanced* view) and ``class_frequency`` (the hold-out of train by
    :func:`~curate.studies.holdout.class_frequency_holdout`) -- with what a majority-class
    predictor would score on each, and the registered runs of that policy (``runs``: the newest
    per protocol card and data fingerprint, with both printed beside the numbers; ``run``: the
    newest of them). When the dataset has valence/arousal, ``va`` compares each label's V/A with
    Neutral's (see :func:`va_comparison`).

    For a dataset with votes, its rows carry the labels of ``vote_mode`` (default: the mode
    they were ingested under; another is computed from the stored votes, the workspace
    unchanged), recorded as ``vote_mode``; rows whose winner is unknown / not a face are
    dropped by every policy and counted in ``vote_excluded``.
    """
    from curate.workspace import stored_vote_mode, vote_excluded_counts, vote_mode_rows

    resolved = [labels.get_policy(p) for p in policies]
    if not resolved:
        raise ValueError("no policies to compare")
    names = [p.name for p in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"policy listed twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    from curate.workspace import runs_from

    holdout = holdout_sql(key="holdout_key", fraction=fraction, seed=seed)
    with workspace.connect() as con:
        workspace.require_datasets(con, dataset)
        splits = workspace.splits(con, dataset)
        source = vote_mode_rows(con, [dataset], vote_mode)
        mode_used = vote_mode or stored_vote_mode(con, dataset)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE study_rows AS SELECT dataset, split, label, votes, "
            f"(split = 'train' AND {holdout}) AS in_holdout FROM {source} WHERE dataset = ?",
            [dataset],
        )
        vote_excluded = vote_excluded_counts(con, dataset, table="study_rows") if mode_used else {}
        canonical = labels.BUILTIN_POLICIES["keep-all"]
        canonical_counts = class_counts_duckdb(con, canonical, datasets=[dataset], table="study_rows")
        holdout_counts = class_counts_duckdb(
            con, canonical, datasets=[dataset], table="study_rows", where="in_holdout"
        ).get((dataset, "train"), np.zeros(labels.NUM_CANONICAL + 1, np.int64))
        per_policy: dict[str, Any] = {}
        runs = runs_from(con, dataset)
        for policy in resolved:
            counts = class_counts_duckdb(con, policy, datasets=[dataset], table="study_rows")
            cf = class_counts_duckdb(con, policy, datasets=[dataset], table="study_rows", where="in_holdout").get(
                (dataset, "train"), np.zeros(policy.num_classes + 1, np.int64)
            )
            transition = transition_matrix_duckdb(con, policy, datasets=[dataset], table="study_rows")
            entry: dict[str, Any] = {
                "description": policy.description,
                "mapping_summary": policy.describe_mapping(),
                "classes": list(policy.classes),
                "num_classes": policy.num_classes,
                "transition": transition.tolist(),
                "kept": {s: int(v[:-1].sum()) for (_, s), v in counts.items()},
                "dropped": {s: int(v[-1]) for (_, s), v in counts.items()},
                "kept_share": {s: float(v[:-1].sum() / v.sum()) if v.sum() else None for (_, s), v in counts.items()},
                "balance": {
                    s: _balance.balance_summary(v[:-1], policy.classes, beta=beta) for (_, s), v in counts.items()
                },
                "views": {s: _view_summary(v, policy) for (_, s), v in counts.items() if s != "train"},
            }
            entry["views"]["class_frequency"] = _view_summary(cf, policy)
            entry["runs"] = policy_runs(runs, policy.name)
            entry["run"] = entry["runs"][0] if entry["runs"] else None
            per_policy[policy.name] = entry
        va = va_comparison(con, dataset, resolved, sample=va_sample, seed=seed)
    train_total = canonical_counts.get((dataset, "train"), np.zeros(labels.NUM_CANONICAL + 1, np.int64))[:-1]
    held = holdout_counts[:-1]
    return {
        "kind": "remap",
        "dataset": dataset,
        "splits": splits,
        "balanced_view": _balanced_as_published(dataset),
        "policies": names,
        "canonical_names": list(labels.CANONICAL_NAMES),
        "canonical_counts": {s: v[:-1].tolist() for (_, s), v in canonical_counts.items()},
        "holdout": {
            "fraction": fraction,
            "seed": seed,
            "rule": "(int(md5(id).hexdigest()[:8], 16) + seed * 0x9E3779B9) % 2**32 < floor(fraction * 2**32)",
            "rows": int(held.sum()),
            "counts": held.tolist(),
            "per_label_fraction": [float(h / t) if t else None for h, t in zip(held, train_total, strict=True)],
        },
        "beta": beta,
        "vote_mode": mode_used,
        "vote_excluded": vote_excluded,
        "per_policy": per_policy,
        "va": va,
    }


def _energy_distance_2d(a: np.ndarray, b: np.ndarray) -> float:
    """2-D energy distance, ``sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|)`` (scipy's 1-D convention)."""
    from scipy.spatial.distance import cdist

    xy = cdist(a, b).mean()
    xx = cdist(a, a).mean()
    yy = cdist(b, b).mean()
    return float(np.sqrt(max(2.0 * xy - xx - yy, 0.0)))


def va_summary_duckdb(con: Any, dataset: str) -> list[tuple[Any, ...]]:
    """Per canonical label: ``(label, n_va, n_without_va, valence mean, sd, arousal mean, sd)``.

    One DuckDB pass with plain sums (mean = S/n, sample variance = (Q - S**2/n)/(n - 1) in
    float64, exact enough for values in [-1, 1]), which is several times faster than
    ``stddev_samp``. Only annotated rows enter the moments; ``None`` where undefined. The
    workspace stores valence and arousal as null together exactly where ``va_annotated`` is
    false (:func:`curate.annotations.normalize_annotations`), so SQL's null-skipping aggregates
    select the annotated rows without a ``FILTER`` clause (which costs 3x here).
    """
    rows = con.execute(
        "SELECT label, count(valence) AS n, count(*) - count(valence) AS missing, "
        "sum(valence::DOUBLE), sum(valence::DOUBLE * valence), sum(arousal::DOUBLE), sum(arousal::DOUBLE * arousal) "
        "FROM annotations WHERE dataset = ? GROUP BY label ORDER BY label",
        [dataset],
    ).fetchall()

    def moments(n: int, total: float | None, squares: float | None) -> tuple[float | None, float | None]:
        if not n:
            return None, None
        mean = total / n
        if n < 2:
            return mean, None
        return mean, float(np.sqrt(max(squares - total * total / n, 0.0) / (n - 1)))

    out = []
    for label, n, missing, sv, qv, sa, qa in rows:
        mv, dv = moments(n, sv, qv)
        ma, da = moments(n, sa, qa)
        out.append((label, n, missing, mv, dv, ma, da))
    return out


def va_comparison(
    con: Any,
    dataset: str,
    policies: Sequence[labels.LabelPolicy],
    *,
    sample: int = 2000,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Valence/arousal of each label compared with Neutral's; ``None`` without V/A data.

    Only rows with ``va_annotated`` (both values in [-1, 1]) enter; AffectNet's -2 sentinel
    never does. Per label: rows with and without V/A, mean and standard deviation of
    valence and arousal, and distances to Neutral's distribution: 1-D Wasserstein and energy
    distances (scipy, every row) on valence and on arousal, and a 2-D energy distance on a
    deterministic random sample of at most ``sample`` rows per side. Per policy, the same
    distances for the class Neutral ends up in (Neutral plus whatever the policy merges
    into it) against pure Neutral.
    """
    stats = va_summary_duckdb(con, dataset)
    if not any(row[1] for row in stats):
        return None
    data = con.execute(
        "SELECT label, valence, arousal FROM annotations WHERE dataset = ? AND va_annotated "
        "AND valence BETWEEN -1 AND 1 AND arousal BETWEEN -1 AND 1",
        [dataset],
    ).fetchnumpy()
    from scipy.stats import energy_distance, wasserstein_distance

    label = np.asarray(data["label"], dtype=np.int64)
    points = np.stack([np.asarray(data["valence"], np.float64), np.asarray(data["arousal"], np.float64)], axis=1)
    rng = np.random.default_rng(seed)

    def sample_of(mask: np.ndarray) -> np.ndarray:
        chosen = points[mask]
        if len(chosen) > sample:
            chosen = chosen[rng.choice(len(chosen), size=sample, replace=False)]
        return chosen

    def distances(mask: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
        if not mask.any() or not reference.any():
            return {"n": int(mask.sum())}
        a, b = points[mask], points[reference]
        return {
            "n": int(mask.sum()),
            "wasserstein_valence": float(wasserstein_distance(a[:, 0], b[:, 0])),
            "wasserstein_arousal": float(wasserstein_distance(a[:, 1], b[:, 1])),
            "energy_valence": float(energy_distance(a[:, 0], b[:, 0])),
            "energy_arousal": float(energy_distance(a[:, 1], b[:, 1])),
            "energy_2d": _energy_distance_2d(sample_of(mask), sample_of(reference)),
        }

    neutral = label == 0
    per_label = {}
    for code, n_va, n_missing, mv, sv, ma, sa in stats:
        entry = {
            "label": int(code),
            "name": labels.CANONICAL_NAMES[code],
            "n_va": int(n_va),
            "n_without_va": int(n_missing),
            "valence_mean": mv,
            "valence_std": sv,
            "arousal_mean": ma,
            "arousal_std": sa,
        }
        if code != 0 and n_va:
            entry["vs_neutral"] = distances(label == code, neutral)
        per_label[labels.CANONICAL_NAMES[code]] = entry
    merged = {}
    for policy in policies:
        target = policy.mapping[0]
        if target is None:
            continue
        group = [lbl for lbl, t in enumerate(policy.mapping) if t == target]
        if group == [0]:
            continue
        mask = np.isin(label, group)
        without = int(sum(r[2] for r in stats if r[0] in group))
        merged[policy.name] = {
            "class": policy.classes[target],
            "labels": [labels.CANONICAL_NAMES[g] for g in group],
            "rows_without_va": without,
            "vs_neutral": distances(mask, neutral),
            "valence_mean": float(points[mask, 0].mean()) if mask.any() else None,
            "arousal_mean": float(points[mask, 1].mean()) if mask.any() else None,
        }
    return {
        "sample": sample,
        "focus": [labels.CANONICAL_NAMES[c] for c in VA_FOCUS_LABELS],
        "per_label": per_label,
        "merged_neutral": merged,
    }


def va_points(workspace: Any, dataset: str) -> dict[str, np.ndarray]:
    """``label``, ``valence``, ``arousal`` arrays of the annotated rows (for plots)."""
    with workspace.connect() as con:
        data = con.execute(
            "SELECT label, valence, arousal FROM annotations WHERE dataset = ? AND va_annotated", [dataset]
        ).fetchnumpy()
    return {k: np.asarray(v) for k, v in data.items()}


def canonical_distribution(workspace: Any) -> dict[str, Any]:
    """Every ingested dataset's canonical class counts (all splits and per split), side by side."""
    canonical = labels.BUILTIN_POLICIES["keep-all"]
    with workspace.connect() as con:
        datasets = workspace.require_datasets(con, None)
        counts = class_counts_duckdb(con, canonical, datasets=datasets)
    per_dataset: dict[str, Any] = {}
    for (dataset, split), vector in counts.items():
        entry = per_dataset.setdefault(dataset, {"splits": {}, "total": np.zeros(labels.NUM_CANONICAL, np.int64)})
        entry["splits"][split] = vector[:-1].tolist()
        entry["total"] = entry["total"] + vector[:-1]
    for entry in per_dataset.values():
        total = entry["total"]
        entry["shares"] = (total / total.sum()).tolist() if total.sum() else [0.0] * len(total)
        entry["total"] = total.tolist()
    return {
        "kind": "distribution",
        "dataset": "all",
        "canonical_names": list(labels.CANONICAL_NAMES),
        "datasets": per_dataset,
    }
