"""Saved views of a review dataset, and the plain-text report built on them.

Scope
-----
:func:`create_views` (re)creates these saved views on every load; the App lists them under
*saved views*, and ``?view=<name>`` opens one directly:

========================  =================================================================
``misclassified``         prediction of the active run differs from its policy ground truth
``confident-mistakes``    ... with confidence >= ``confident_threshold`` (most confident first)
``likely-label-errors``   cleanlab's flagged rows, lowest label quality first (top-k)
``merged-by-policy``      rows whose label some shipped policy changes (e.g. Contempt -> Neutral)
``annotator-disagreement`` FER+ rows with vote entropy >= ``entropy_threshold`` bits
``no-va``                 AffectNet rows without valence/arousal
``duplicates``            rows in a duplicate group (``curate audit duplicates``), sorted by group
``va-outliers``           AffectNet rows flagged by the V/A consistency audit, farthest first
``slice-<attr>-<value>``  one per slice of :mod:`curate.slicing` (RAF-DB gender / race / age
                          group, FER+ vote agreement, AffectNet V-A quadrant and face size)
========================  =================================================================

``va-outliers`` (like ``duplicates``) is saved only when it has rows: the flags come from
:func:`curate.review.audit_fields.mark_va_outliers` (``va_outlier`` / ``va_distance``).

The run views use the *active* run (the last one loaded; ``dataset.info["curate"]``).
:func:`report` gathers view sizes, per-run accuracy and the worst confusions for
``curate review report``.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from curate.review import duplicates
from curate.review.fields import INFO_KEY, VA_DISTANCE_FIELD, VA_OUTLIER_FIELD, VA_OUTLIER_K, RunFields
from curate.slicing import COLUMN_PREFIX as SLICE_PREFIX

#: Default confidence above which a wrong prediction counts as a confident mistake.
CONFIDENT_THRESHOLD = 0.8
#: Default FER+ vote entropy (bits) from which annotators count as disagreeing (a 5/5 split is 1 bit).
ENTROPY_THRESHOLD = 1.0

VIEW_DESCRIPTIONS = {
    "misclassified": "Prediction of run {run} differs from {gt}",
    "confident-mistakes": "Run {run} wrong with confidence >= {confident:g}, most confident first",
    "likely-label-errors": "Confident learning (cleanlab) on run {run}: flagged rows, lowest label quality first (top {k})",
    "merged-by-policy": "Rows whose label a shipped policy changes (merged into another class)",
    "annotator-disagreement": "FER+ rows whose votes have entropy >= {entropy:g} bits, most disputed first",
    "no-va": "AffectNet rows without valence/arousal annotations",
    "duplicates": "{samples} rows in {groups} duplicate groups (curate audit duplicates), copies side by side",
    "va-outliers": "AffectNet rows whose valence/arousal is far from their label's typical region "
    "(robust distance > median + {k:g}·1.4826·MAD per label), farthest first",
}
VIEW_NAMES: tuple[str, ...] = tuple(VIEW_DESCRIPTIONS)
#: Saved views per slice are named ``slice-<attribute>-<value>`` (value made URL-safe).
SLICE_VIEW_PREFIX = "slice-"


def slice_view_name(attribute: str, value: str) -> str:
    """``slice-<attribute>-<value>``: the value lower-cased, ``+`` as ``pos``, and anything else not a
    letter or digit as ``-``; V-A quadrants spell their signs: ``V+A-`` -> ``vpos-aneg``."""
    if attribute == "va_quadrant":  # signs, not separators: V+A- must not read as V-A+
        value = value.replace("+", "pos ").replace("-", "neg ")
    slug = "-".join("".join(ch if ch.isalnum() else " " for ch in value.lower()).split())
    return f"{SLICE_VIEW_PREFIX}{attribute.replace('_', '-')}-{slug}"


def slice_views(ds: Any) -> dict[str, tuple[Any, str]]:
    """One view per value of every ``slice_<attribute>`` field (``curate.slicing``)."""
    from fiftyone import ViewField as F

    out: dict[str, tuple[Any, str]] = {}
    for field in sorted(f for f in ds.get_field_schema() if f.startswith(SLICE_PREFIX)):
        attribute = field.removeprefix(SLICE_PREFIX)
        for value in sorted(v for v in ds.distinct(field) if v is not None):
            view = ds.match(F(field) == value)
            out[slice_view_name(attribute, value)] = (
                view,
                f"Slice {attribute} = {value} (curate.slicing; its accuracy per run is in metrics.json and "
                "`curate train compare`)",
            )
    return out


def build_views(
    ds: Any,
    *,
    confident_threshold: float = CONFIDENT_THRESHOLD,
    entropy_threshold: float = ENTROPY_THRESHOLD,
    top_k: int | None = None,
) -> dict[str, tuple[Any, str]]:
    """The views that apply to ``ds`` (name -> (view, description)), without saving them."""
    from fiftyone import ViewField as F

    info = ds.info.get(INFO_KEY) or {}
    out: dict[str, tuple[Any, str]] = {}
    fmt = {"confident": confident_threshold, "entropy": entropy_threshold}
    active = info.get("active_run")
    record = info.get("runs", {}).get(active) if active else None
    if record is not None:
        fields = RunFields(active)
        eval_key, gt = record["eval_key"], record["gt_field"]
        fmt |= {"run": record["name"], "gt": gt}
        if ds.has_sample_field(eval_key):
            wrong = ds.match(F(eval_key) == False)  # noqa: E712 - a MongoDB expression, not a Python test
            out["misclassified"] = (wrong, VIEW_DESCRIPTIONS["misclassified"].format(**fmt))
            confident = wrong.match(F(f"{fields.pred}.confidence") >= confident_threshold).sort_by(
                f"{fields.pred}.confidence", reverse=True
            )
            out["confident-mistakes"] = (confident, VIEW_DESCRIPTIONS["confident-mistakes"].format(**fmt))
        if ds.has_sample_field(fields.label_quality):
            k = top_k or record.get("top_k")
            if k:
                errors = ds.exists(fields.label_quality).sort_by(fields.label_quality).limit(int(k))
            else:
                errors = ds.match(F(fields.label_issue) == True).sort_by(fields.label_quality)  # noqa: E712
                k = len(errors)
            out["likely-label-errors"] = (errors, VIEW_DESCRIPTIONS["likely-label-errors"].format(**fmt, k=k))
    out["merged-by-policy"] = (ds.match(F("policy_merged").length() > 0), VIEW_DESCRIPTIONS["merged-by-policy"])
    if ds.has_sample_field("vote_entropy"):
        disputed = ds.match(F("vote_entropy") >= entropy_threshold).sort_by("vote_entropy", reverse=True)
        out["annotator-disagreement"] = (disputed, VIEW_DESCRIPTIONS["annotator-disagreement"].format(**fmt))
    if ds.has_sample_field("va_annotated"):
        out["no-va"] = (ds.match(F("va_annotated") == False), VIEW_DESCRIPTIONS["no-va"])  # noqa: E712
    stats = duplicates.group_stats(ds)
    if stats:
        copies = ds.exists(duplicates.GROUP_FIELD).sort_by(
            [(duplicates.GROUP_FIELD, 1), ("split", 1), ("source_id", 1)]
        )
        out["duplicates"] = (copies, VIEW_DESCRIPTIONS["duplicates"].format(**stats))
    if ds.has_sample_field(VA_OUTLIER_FIELD):
        flagged = ds.match(F(VA_OUTLIER_FIELD) == True).sort_by(VA_DISTANCE_FIELD, reverse=True)  # noqa: E712
        if len(flagged):
            k = (info.get("va_outliers") or {}).get("k", VA_OUTLIER_K)
            out["va-outliers"] = (flagged, VIEW_DESCRIPTIONS["va-outliers"].format(k=k))
    out.update(slice_views(ds))
    return out


def create_views(ds: Any, **options: Any) -> dict[str, int]:
    """(Re)create the saved views that apply to ``ds``; returns name -> size.

    Saved views of :data:`VIEW_NAMES` that no longer apply are deleted; other saved views
    (the user's own) are left alone.
    """
    wanted = build_views(ds, **options)
    for name in ds.list_saved_views():
        if (name in VIEW_NAMES or name.startswith(SLICE_VIEW_PREFIX)) and name not in wanted:
            ds.delete_saved_view(name)
    sizes = {}
    for name, (view, description) in wanted.items():
        ds.save_view(name, view, description=description, overwrite=True)
        sizes[name] = len(view)
    return sizes


def view_sizes(ds: Any) -> dict[str, int]:
    """Size of every saved view of ``ds``."""
    return {name: len(ds.load_saved_view(name)) for name in ds.list_saved_views()}


@dataclasses.dataclass
class RunReport:
    key: str
    name: str
    policy: str
    gt_field: str
    eval_key: str
    evaluated: int
    accuracy: float | None
    label_issues: int
    confusions: list[tuple[str, str, int]]
    protocol: str | None = None
    data_fingerprint: str | None = None
    #: the probabilities confident learning ranked: ``run`` or ``run + landmark geometry ...``
    label_quality_from: str = "run"


@dataclasses.dataclass
class ReviewReport:
    """What ``curate review report`` prints."""

    name: str
    dataset: str
    source: str
    samples: int
    splits: dict[str, int]
    views: dict[str, tuple[int, str]]
    runs: list[RunReport]
    tags: dict[str, int]
    active_run: str | None
    duplicates: dict[str, int] = dataclasses.field(default_factory=dict)


def worst_confusions(
    ds: Any, pred_field: str, gt_field: str, eval_key: str, *, limit: int = 10
) -> list[tuple[str, str, int]]:
    """The most frequent (ground truth, prediction) pairs among wrong predictions."""
    from fiftyone import ViewField as F

    wrong = ds.match(F(eval_key) == False)  # noqa: E712
    if not len(wrong):
        return []
    truth, predicted = wrong.values([f"{gt_field}.label", f"{pred_field}.label"])
    counts = collections.Counter(zip(truth, predicted, strict=True))
    return [(t, p, n) for (t, p), n in counts.most_common(limit)]


def report(ds: Any, *, limit: int = 10) -> ReviewReport:
    """Sizes of the saved views, accuracy and worst confusions of each loaded run."""
    from fiftyone import ViewField as F

    info = ds.info.get(INFO_KEY) or {}
    runs = []
    for key, record in info.get("runs", {}).items():
        fields = RunFields(key)
        eval_key = record["eval_key"]
        evaluated = len(ds.exists(eval_key)) if ds.has_sample_field(eval_key) else 0
        correct = ds.count_values(eval_key).get(True, 0) if evaluated else 0
        issues = len(ds.match(F(fields.label_issue) == True)) if ds.has_sample_field(fields.label_issue) else 0  # noqa: E712
        runs.append(
            RunReport(
                key=key,
                name=record["name"],
                policy=record["policy"] + (f" ({record['vote_mode']})" if record.get("vote_mode") else ""),
                gt_field=record["gt_field"],
                eval_key=eval_key,
                evaluated=evaluated,
                accuracy=correct / evaluated if evaluated else None,
                label_issues=issues,
                confusions=worst_confusions(ds, fields.pred, record["gt_field"], eval_key, limit=limit)
                if evaluated
                else [],
                protocol=record.get("protocol"),
                data_fingerprint=record.get("data_fingerprint"),
                label_quality_from=(record.get("scores") or {}).get("confident_learning_probabilities", "run"),
            )
        )
    views = {}
    for name in ds.list_saved_views():
        description = ds.get_saved_view_info(name).get("description") or ""
        views[name] = (len(ds.load_saved_view(name)), description)
    tag_counts = ds.count_sample_tags()
    return ReviewReport(
        name=ds.name,
        dataset=info.get("dataset", "?"),
        source=info.get("source", {}).get("key", "?"),
        samples=len(ds),
        splits=dict(sorted(ds.count_values("split").items(), key=lambda kv: str(kv[0])))
        if ds.has_sample_field("split")
        else {},
        views=views,
        runs=runs,
        tags=dict(sorted(tag_counts.items())),
        active_run=info.get("active_run"),
        duplicates=duplicates.group_stats(ds),
    )
