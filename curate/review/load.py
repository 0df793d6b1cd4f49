"""Load a dataset (and optionally a training run) into a persistent FiftyOne dataset.

:func:`load` ties the review package's steps together, each in its own module:

1. the source (:mod:`curate.review.sources`): a manual dir, a built TFDS dataset, or the
   workspace's last ingest of the dataset;
2. the samples (:mod:`curate.review.documents`), built only when the dataset is new, its
   annotations changed or ``refresh`` asks for it -- an unchanged dataset is reused;
3. after a rebuild, the old dataset's sample tags and runs are carried over; then the run
   asked for is attached (:mod:`curate.review.runs`, with :mod:`curate.review.label_scores`);
4. the audits written on the samples (:mod:`curate.review.audit_fields`: V/A outliers,
   duplicate groups) and the saved views (:mod:`curate.review.views`).

It never leaves a half-loaded dataset: a new or rebuilt dataset is built under a temporary
(non-persistent) name and renamed at the end, and deleted if anything fails; a run added to
an existing dataset is removed again if anything fails (:func:`curate.review.runs.attach_run`).
Field names are in :mod:`curate.review.fields`.
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.review import db, views
from curate.review.audit_fields import duplicate_pairs, mark_duplicate_groups, mark_va_outliers
from curate.review.documents import DEFAULT_BATCH_SIZE, carry_tags, delete_quietly, ingest_table
from curate.review.fields import INFO_KEY, LAYOUT_VERSION, ReviewLoadError
from curate.review.runs import RunSummary, attach_run, reattach_runs, resolve_run
from curate.review.sources import (
    ReviewSource,
    check_dataset,
    default_source,
    prepare_manual,
    prepare_tfds,
    read_manual_annotations,
    resolve_tfds,
    source_for,
)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclasses.dataclass
class LoadSummary:
    """What :func:`load` did."""

    name: str
    source: str
    samples: int
    built: bool
    seconds_ingest: float = 0.0
    refused: int = 0
    missing_images: int = 0
    images_written: int = 0
    tags_carried: int = 0
    runs: list[RunSummary] = dataclasses.field(default_factory=list)
    views: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    duplicates: dict[str, int] = dataclasses.field(default_factory=dict)
    va_outliers: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_name(fo: Any, name: str, source: ReviewSource) -> Any | None:
    """The existing dataset ``name`` if it was loaded from ``source``; raise if another source owns it."""
    if not fo.dataset_exists(name):
        return None
    ds = fo.load_dataset(name)
    info = ds.info.get(INFO_KEY)
    if not info:
        raise ReviewLoadError(
            f"FiftyOne dataset name {name!r} is already used by a dataset curate did not create; "
            f"choose another --name (or delete it with `curate review delete {name}`)"
        )
    owner = info.get("source", {}).get("key")
    if owner != source.key:
        raise ReviewLoadError(
            f"FiftyOne dataset name {name!r} is already used by another source ({owner}); "
            f"choose another --name, or delete it with `curate review delete {name}`"
        )
    return ds


def load(
    dataset: str,
    *,
    manual_dir: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    tfds_config: str | None = None,
    run: str | os.PathLike[str] | None = None,
    name: str | None = None,
    workspace: Any | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_partial: bool = False,
    refresh: bool = False,
    top_k: int | None = None,
    landmark_model: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    log: Log = _quiet,
) -> LoadSummary:
    """Create or update the persistent FiftyOne dataset ``name`` (default: the dataset's name).

    Without ``manual_dir``/``data_dir`` the source of the dataset's last ``curate ingest`` in
    the workspace is used. An existing dataset from the same source is rebuilt only when its
    annotations changed (or ``refresh``): its sample tags and previous runs are carried
    over. ``run`` (a run folder, or a run name registered in the workspace) is attached.
    """
    check_dataset(dataset)
    notes: list[str] = []
    pairs = duplicate_pairs(workspace, dataset, notes)
    keep_groups = bool(notes)  # the pairs table could not be read: leave the groups as they are
    if manual_dir is None and data_dir is None:
        defaults = default_source(dataset, workspace)
        manual_dir, data_dir = defaults.get("manual_dir"), defaults.get("data_dir")
    source = source_for(dataset, manual_dir=manual_dir, data_dir=data_dir, tfds_config=tfds_config)
    run_info = resolve_run(run, workspace=workspace) if run is not None else None
    fo = db.connect()
    name = name or dataset
    existing = check_name(fo, name, source)
    if cache_dir is None:
        cache_dir = (workspace.root if workspace is not None else Path(".")) / "review-cache"

    if source.kind == "manual":
        annotations, refused, source = read_manual_annotations(source)
    else:
        (source, _), annotations, refused = resolve_tfds(source), None, 0
    old_info = existing.info.get(INFO_KEY, {}) if existing is not None else {}
    summary = LoadSummary(name=name, source=source.describe(), samples=0, built=False, refused=refused, notes=notes)
    if samples_up_to_date(existing, source) and not refresh:
        ds = existing
        log(f"{name}: samples up to date ({len(ds)}); not rebuilt")
    else:
        ds = build_samples(
            source, summary, cache_dir=cache_dir, annotations=annotations, batch_size=batch_size, log=log
        )
    try:
        if summary.built and existing is not None:
            summary.tags_carried = carry_tags(existing, ds)
            summary.runs += reattach_runs(ds, old_info, skip=run_info, notes=summary.notes, log=log)
        if run_info is not None:
            summary.runs.append(
                attach_run(
                    ds, run_info, allow_partial=allow_partial, top_k=top_k, landmark_model=landmark_model, log=log
                )
            )
        summary.va_outliers = mark_va_outliers(ds, dataset, log=log)
        if not keep_groups:
            summary.duplicates = mark_duplicate_groups(ds, pairs, dataset, log)
        summary.views = views.create_views(ds)
        if summary.built:
            _swap_in(ds, existing, name)
    except BaseException:
        if summary.built:  # the new samples go; an existing dataset's failed run removed itself
            delete_quietly(ds)
        raise
    summary.samples = len(ds)
    return summary


def samples_up_to_date(existing: Any | None, source: ReviewSource) -> bool:
    """Whether ``existing`` holds the samples of ``source`` as they are now (same annotations, same layout)."""
    if existing is None:
        return False
    info = existing.info.get(INFO_KEY, {})
    return (
        info.get("source", {}).get("fingerprint") == source.fingerprint and info.get("layout_version") == LAYOUT_VERSION
    )


def build_samples(
    source: ReviewSource,
    summary: LoadSummary,
    *,
    cache_dir: str | os.PathLike[str],
    annotations: Any | None,
    batch_size: int,
    log: Log,
) -> Any:
    """Read the source's images and ingest its samples into a new, *non-persistent* dataset.

    The dataset has a temporary name (``<name>-loading-<hex>``); :func:`load` renames it when
    everything else succeeded. ``summary`` gets the image counts, the ingest time and
    ``built``.
    """
    name = summary.name
    log(f"{name}: reading images of {source.describe()}")
    table = (
        prepare_manual(source, cache_dir=cache_dir, annotations=annotations, refused=summary.refused)
        if source.kind == "manual"
        else prepare_tfds(source, cache_dir=cache_dir)
    )
    summary.missing_images, summary.images_written = table.missing_images, table.images_written
    start = time.perf_counter()
    ds = ingest_table(table, name=f"{name}-loading-{uuid.uuid4().hex[:8]}", batch_size=batch_size)
    summary.seconds_ingest = time.perf_counter() - start
    summary.built = True
    log(f"{name}: {len(ds)} samples ingested in {summary.seconds_ingest:.1f} s")
    return ds


def _swap_in(ds: Any, existing: Any | None, name: str) -> None:
    """Make ``ds`` the persistent dataset ``name``, replacing ``existing``."""
    backup = None
    if existing is not None:
        backup = f"{name}-replaced-{uuid.uuid4().hex[:8]}"
        existing.name = backup
    try:
        ds.name = name
        ds.persistent = True
    except BaseException:
        if existing is not None:
            existing.name = name
        raise
    if existing is not None:
        existing.delete()
