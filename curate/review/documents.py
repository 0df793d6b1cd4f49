"""Sample documents of a review dataset: the fields of each row, written in bulk.

* :func:`sample_fields` -- each row of a :class:`curate.review.sources.ReviewTable` as plain
  values: the canonical label (``ground_truth``; for rows with FER+ votes the FER+ majority
  label, as in the workspace and the TFDS builders), one ``Classification`` per shipped label
  policy (``gt_merge_to_neutral`` ..., missing where the policy drops the row -- and, for a
  row whose FER+ winner is unknown / NF, under every policy), valence/arousal, FER+ votes,
  their entropy and FER2013's own label (``fer2013_label``), the face box (``Detection``) and landmarks
  (``Keypoints``) in relative coordinates, split, source path and annotation id
  (``source_id``).
* :func:`to_documents` turns them into BSON documents, which :func:`insert_samples` bulk-inserts
  in batches into a schema declared up front (:func:`declare_fields`) -- about 20x faster than
  ``Dataset.add_samples`` on the same samples (``benchmarks/bench_review.py``);
  :func:`to_samples` is the slow reference path, checked field by field against it in
  ``tests/test_review_load.py``.
* :func:`ingest_table` creates a non-persistent dataset with a table's samples;
  :func:`configure_dataset` and :func:`update_app_config` set classes, the ``source_id``
  index and the App's defaults; :func:`carry_tags` copies review tags to a rebuilt dataset.
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from curate import datasets as registry
from curate import labels, slicing
from curate.annotations import FER2013_LABEL_COLUMN
from curate.review.fields import (
    GROUND_TRUTH_FIELD,
    INFO_KEY,
    LAYOUT_VERSION,
    VA_DISTANCE_FIELD,
    VA_OUTLIER_FIELD,
    RunFields,
    policy_field,
)
from curate.review.sources import ReviewTable

#: Documents per ``insert_many`` call.
DEFAULT_BATCH_SIZE = 2000


def vote_entropy(votes: Any) -> np.ndarray:
    """Shannon entropy (bits) of each row's raw FER+ vote distribution over the ten columns."""
    counts = np.asarray(votes, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=1)


def declare_fields(
    ds: Any, dataset: str, policies: Sequence[labels.LabelPolicy], slice_columns: Sequence[str] = ()
) -> None:
    """Declare every sample field :func:`ingest_table` writes (so raw inserts need no schema expansion)."""
    import fiftyone as fo

    def add(name: str, ftype: Any, **kwargs: Any) -> None:
        if not ds.has_sample_field(name):
            ds.add_sample_field(name, ftype, **kwargs)

    for name in ("source_id", "dataset", "split", "source_path"):
        add(name, fo.StringField)
    add("label_index", fo.IntField)
    add(GROUND_TRUTH_FIELD, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    for policy in policies:
        add(policy_field(policy), fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    add("policy_merged", fo.ListField, subfield=fo.StringField)
    add("policy_dropped", fo.ListField, subfield=fo.StringField)
    add("face", fo.EmbeddedDocumentField, embedded_doc_type=fo.Detection)
    add("landmarks", fo.EmbeddedDocumentField, embedded_doc_type=fo.Keypoints)
    spec = registry.get(dataset)
    if spec.valence_arousal:
        add("valence", fo.FloatField)
        add("arousal", fo.FloatField)
        add("va_annotated", fo.BooleanField)
    if spec.votes:
        add("votes", fo.ListField, subfield=fo.IntField)
        add("vote_entropy", fo.FloatField)
        add("ferplus_majority", fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
        add(FER2013_LABEL_COLUMN, fo.EmbeddedDocumentField, embedded_doc_type=fo.Classification)
    for column in slice_columns:  # curate.slicing: one saved view per value (curate.review.views)
        add(column, fo.StringField)


def sample_fields(frame: Any, dataset: str, policies: Sequence[labels.LabelPolicy]) -> Iterator[dict[str, Any]]:
    """Each row's sample fields as plain Python values (``None`` = field absent).

    Labels are dicts ``{"label": ...}`` (Classification), ``{"bounding_box": [...]}``
    (Detection) and ``{"points": [[x, y], ...]}`` (Keypoints); :func:`to_documents` turns
    them into BSON, :func:`to_samples` into FiftyOne objects, so both paths carry the same
    content.
    """
    names = (
        "id",
        "split",
        "source_path",
        "label",
        "filepath",
        "image_width",
        "image_height",
        "box_rel",
        "landmarks_rel",
    )
    columns = {name: frame[name].to_list() for name in names}
    n = frame.height
    pairs = point_pairs(columns["landmarks_rel"])
    channels = frame["image_channels"].to_list() if "image_channels" in frame.columns else [None] * n
    canonical = labels.CANONICAL_NAMES
    per_policy = [(policy_field(p), [None if t is None else p.classes[t] for t in p.mapping]) for p in policies]
    merged_by_label = [
        [p.name for p in policies if p.mapping[c] is not None and p.classes[p.mapping[c]] != canonical[c]]
        for c in range(labels.NUM_CANONICAL)
    ]
    dropped_by_label = [[p.name for p in policies if p.mapping[c] is None] for c in range(labels.NUM_CANONICAL)]
    va = registry.get(dataset).valence_arousal
    if va:
        valence, arousal, annotated = (frame[c].to_list() for c in ("valence", "arousal", "va_annotated"))
    votes = registry.get(dataset).votes
    excluded = [False] * n
    all_policies = [p.name for p in policies]
    if votes:
        votes_list = frame["votes"].to_list()
        vote_array = np.array([v if v is not None else [0] * 10 for v in votes_list], dtype=np.int64).reshape(n, 10)
        entropy = vote_entropy(vote_array).tolist()
        majority = labels.ferplus_vote_targets(vote_array, labels.DEFAULT_VOTE_MODE).label.tolist()
        excluded = frame.select(labels.vote_excluded_polars()).to_series().to_list()
        originals = frame[FER2013_LABEL_COLUMN].to_list() if FER2013_LABEL_COLUMN in frame.columns else [None] * n
    slice_values = {c: frame[c].to_list() for c in frame.columns if c.startswith(slicing.COLUMN_PREFIX)}
    for i in range(n):
        label = columns["label"][i]
        width, height = columns["image_width"][i], columns["image_height"][i]
        fields: dict[str, Any] = {
            "filepath": columns["filepath"][i],
            "metadata": None if width is None else _metadata(width, height, channels[i]),
            "source_id": columns["id"][i],
            "dataset": dataset,
            "split": columns["split"][i],
            "source_path": columns["source_path"][i],
            "label_index": label,
            GROUND_TRUTH_FIELD: {"label": canonical[label]},
            "policy_merged": [] if excluded[i] else merged_by_label[label],
            "policy_dropped": all_policies if excluded[i] else dropped_by_label[label],
        }
        for name, names in per_policy:
            target = None if excluded[i] else names[label]
            fields[name] = None if target is None else {"label": target}
        box = columns["box_rel"][i]
        fields["face"] = None if box is None else {"label": "face", "bounding_box": box}
        points = pairs[i]
        fields["landmarks"] = None if points is None else {"label": "landmarks", "points": points}
        if va:
            fields["valence"] = valence[i]
            fields["arousal"] = arousal[i]
            fields["va_annotated"] = bool(annotated[i])
        if votes:
            fields["votes"] = votes_list[i]
            fields["vote_entropy"] = None if votes_list[i] is None else entropy[i]
            fields["ferplus_majority"] = None if votes_list[i] is None else {"label": canonical[majority[i]]}
            original = originals[i]
            fields[FER2013_LABEL_COLUMN] = None if original is None else {"label": canonical[original]}
        for column, values in slice_values.items():
            fields[column] = values[i]
        yield fields


def point_pairs(flat: Sequence[Any]) -> list[list[list[float]] | None]:
    """``[x0, y0, x1, y1 ...]`` lists -> ``[[x0, y0], [x1, y1] ...]`` (vectorised per list length)."""
    out: list[list[list[float]] | None] = [None] * len(flat)
    groups: dict[int, list[int]] = {}
    for i, values in enumerate(flat):
        if values is not None and len(values) >= 2:
            groups.setdefault(len(values), []).append(i)
    for length, rows in groups.items():
        shaped = np.asarray([flat[i] for i in rows], dtype=np.float64).reshape(len(rows), length // 2, 2)
        for i, row in zip(rows, shaped.tolist(), strict=True):
            out[i] = row
    return out


def _metadata(width: int, height: int, channels: int | None) -> dict[str, int]:
    return (
        {"width": width, "height": height}
        if channels is None
        else {"width": width, "height": height, "num_channels": channels}
    )


def _rand_generator() -> Callable[[], float]:
    try:  # the same distribution FiftyOne gives new samples
        from fiftyone.core.odm.sample import _generate_rand

        return _generate_rand
    except ImportError:  # pragma: no cover - FiftyOne moved it
        return lambda: random.random() * 0.001 + 0.999


def to_documents(rows: Iterator[dict[str, Any]], dataset_id: Any) -> Iterator[dict[str, Any]]:
    """BSON sample documents, exactly as ``Dataset.add_samples`` writes them."""
    from bson import ObjectId

    rand = _rand_generator()
    now = _dt.datetime.now(_dt.UTC).replace(tzinfo=None)
    for fields in rows:
        doc: dict[str, Any] = {
            "filepath": fields.pop("filepath"),
            "tags": [],
            "_media_type": "image",
            "_rand": rand(),
            "_dataset_id": dataset_id,
            "created_at": now,
            "last_modified_at": now,
        }
        for name, value in fields.items():
            if value is None:
                continue
            if name == "metadata":
                doc[name] = {"_cls": "ImageMetadata", **value}
            elif name == "face":
                doc[name] = {"_id": ObjectId(), "_cls": "Detection", "tags": [], "attributes": {}, **value}
            elif name == "landmarks":
                doc[name] = {
                    "_cls": "Keypoints",
                    "keypoints": [
                        {
                            "_id": ObjectId(),
                            "_cls": "Keypoint",
                            "tags": [],
                            "attributes": {},
                            "confidence": None,
                            **value,
                        }
                    ],
                }
            elif isinstance(value, dict):
                doc[name] = {"_id": ObjectId(), "_cls": "Classification", "tags": [], **value}
            else:
                doc[name] = value
        yield doc


def to_samples(rows: Iterator[dict[str, Any]]) -> Iterator[Any]:
    """``fiftyone.Sample`` objects with the same content (the slow, reference path)."""
    import fiftyone as fo

    for fields in rows:
        kwargs: dict[str, Any] = {}
        for name, value in fields.items():
            if value is None:
                continue
            if name == "metadata":
                kwargs[name] = fo.ImageMetadata(**value)
            elif name == "face":
                kwargs[name] = fo.Detection(**value)
            elif name == "landmarks":
                kwargs[name] = fo.Keypoints(keypoints=[fo.Keypoint(**value)])
            elif isinstance(value, dict):
                kwargs[name] = fo.Classification(**value)
            else:
                kwargs[name] = value
        yield fo.Sample(**kwargs)


def insert_samples(
    ds: Any,
    frame: Any,
    dataset: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    policies: Sequence[labels.LabelPolicy] | None = None,
) -> int:
    """Bulk-insert a :class:`ReviewTable` frame into ``ds`` (fields declared first); returns rows inserted.

    The frame is converted ``batch_size`` rows at a time, so Python objects exist for one
    batch only (AffectNet's 420k rows x 68 landmarks would not fit as Python lists at once).
    """
    policies = list(labels.BUILTIN_POLICIES.values()) if policies is None else list(policies)
    if ds.media_type is None:
        ds.media_type = "image"
    frame = slicing.frame_slices(frame, dataset)
    declare_fields(ds, dataset, policies, [c for c in frame.columns if c.startswith(slicing.COLUMN_PREFIX)])
    collection = ds._sample_collection  # FiftyOne's own bulk path (Dataset._add_samples_batch) does the same
    inserted = 0
    for offset in range(0, frame.height, max(1, batch_size)):
        chunk = frame.slice(offset, batch_size)
        documents = list(to_documents(sample_fields(chunk, dataset, policies), ds._doc.id))
        collection.insert_many(documents, ordered=False)
        inserted += len(documents)
    return inserted


def configure_dataset(ds: Any, dataset: str, policies: Sequence[labels.LabelPolicy]) -> None:
    """Classes per field, index on ``source_id``, and App defaults (visible fields, sidebar groups)."""
    ds.create_index("source_id", unique=True)
    ds.default_classes = list(labels.CANONICAL_NAMES)
    ds.classes = {policy_field(p): list(p.classes) for p in policies} | {
        GROUND_TRUTH_FIELD: list(labels.CANONICAL_NAMES)
    }
    update_app_config(ds)
    ds.save()


def update_app_config(ds: Any) -> None:
    """Show ground truth, face and landmarks (plus the active run's predictions) on the tiles."""
    import fiftyone as fo

    info = ds.info.get(INFO_KEY, {})
    active = info.get("active_run")
    paths = [GROUND_TRUTH_FIELD, "face", "landmarks"]
    if active:
        paths.append(RunFields(active).pred)
    ds.app_config.active_fields = fo.ActiveFields(paths=[p for p in paths if ds.has_sample_field(p)])
    schema = ds.get_field_schema()
    groups: dict[str, list[str]] = {"annotation": [], "policies": [], "runs": [], "metadata": [], "other": []}
    for name in schema:
        if name in ("id", "filepath", "tags", "metadata", "created_at", "last_modified_at"):
            groups["metadata"].append(name)
        elif name.startswith("gt_") or name.startswith("policy_"):
            groups["policies"].append(name)
        elif name.startswith(("pred_", "eval_", "mistakenness_", "hardness_", "label_quality_", "label_issue_")):
            groups["runs"].append(name)
        elif name in (
            GROUND_TRUTH_FIELD,
            "face",
            "landmarks",
            "ferplus_majority",
            FER2013_LABEL_COLUMN,
            "source_id",
            "dataset",
            "split",
            "source_path",
            "label_index",
            "valence",
            "arousal",
            "va_annotated",
            "votes",
            "vote_entropy",
            "duplicate_group",
            "duplicate_group_size",
            VA_OUTLIER_FIELD,
            VA_DISTANCE_FIELD,
        ):
            groups["annotation"].append(name)
        else:
            groups["other"].append(name)
    ds.description = describe_dataset(info)
    ds.app_config.sidebar_groups = [
        fo.SidebarGroupDocument(name="tags", paths=[]),
        fo.SidebarGroupDocument(name="label tags", paths=[]),
        *[
            fo.SidebarGroupDocument(name=group, paths=paths, expanded=group in ("annotation", "runs"))
            for group, paths in groups.items()
            if paths
        ],
    ]
    ds.save()


def describe_dataset(info: Mapping[str, Any]) -> str:
    """The dataset description the App shows: the source, each run's protocol and data fingerprint."""
    lines = [f"curate review of {info.get('dataset', '?')} ({info.get('source', {}).get('key', '?')})"]
    for record in info.get("runs", {}).values():
        lines.append(
            f"run {record.get('name')}: protocol {record.get('protocol') or 'none'}, "
            f"data {record.get('data_fingerprint') or 'unknown'}"
        )
    return "\n".join(lines)


def ingest_table(table: ReviewTable, *, name: str, batch_size: int = DEFAULT_BATCH_SIZE) -> Any:
    """Create a *non-persistent* dataset ``name`` with the table's samples; the caller persists it."""
    import fiftyone as fo

    policies = list(labels.BUILTIN_POLICIES.values())
    ds = fo.Dataset(name, persistent=False)
    try:
        insert_samples(ds, table.frame, table.source.dataset, batch_size=batch_size, policies=policies)
        configure_dataset(ds, table.source.dataset, policies)
        ds.info[INFO_KEY] = {
            "dataset": table.source.dataset,
            "source": table.source.to_info(),
            "layout_version": LAYOUT_VERSION,
            "runs": {},
            "active_run": None,
            "loaded": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        ds.description = describe_dataset(ds.info[INFO_KEY])
        ds.save()
    except BaseException:
        delete_quietly(ds)
        raise
    return ds


def delete_quietly(ds: Any) -> None:
    """Delete ``ds``, ignoring any error (cleanup after another error)."""
    try:
        ds.delete()
    except Exception:  # noqa: BLE001 - best effort cleanup after another error
        pass


def carry_tags(old: Any, new: Any) -> int:
    """Copy sample tags and ``ground_truth`` label tags from ``old`` to ``new`` by ``source_id``."""
    from fiftyone import ViewField as F

    tagged = old.match((F("tags").length() > 0) | (F(f"{GROUND_TRUTH_FIELD}.tags").length() > 0))
    if not len(tagged):
        return 0
    ids, tags, label_tags = tagged.values(["source_id", "tags", f"{GROUND_TRUTH_FIELD}.tags"])
    present = set(new.values("source_id"))
    sample_tags = {s: t for s, t in zip(ids, tags, strict=True) if t and s in present}
    gt_tags = {s: t for s, t in zip(ids, label_tags, strict=True) if t and s in present}
    if sample_tags:
        new.set_values("tags", sample_tags, key_field="source_id")
    if gt_tags:
        new.set_values(f"{GROUND_TRUTH_FIELD}.tags", gt_tags, key_field="source_id")
    return len(set(sample_tags) | set(gt_tags))
