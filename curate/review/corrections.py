"""Export the corrections reviewers tagged in the App.

Tags on a sample (or on its ``ground_truth`` label) of the form ``relabel:<label>`` (e.g.
``relabel:fear``) or ``exclude`` become rows of a corrections table
(:mod:`curate.corrections`, FiftyOne-free), which ingest, the studies and the trainer apply
with :func:`curate.corrections.apply_corrections`. Other tags (``reviewed``, ...) are
ignored; unknown labels and contradicting tags on one sample are reported together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from curate import corrections as corr
from curate.review.fields import GROUND_TRUTH_FIELD, INFO_KEY


def corrections_from_dataset(ds: Any) -> Any:
    """The corrections table of a review dataset's tags (Polars, :func:`curate.corrections.corrections_schema`)."""
    from fiftyone import ViewField as F

    info = ds.info.get(INFO_KEY) or {}
    dataset = info.get("dataset")
    if not dataset:
        raise corr.CorrectionError(f"FiftyOne dataset {ds.name!r} was not created by `curate review load`")
    tagged = ds.match((F("tags").length() > 0) | (F(f"{GROUND_TRUTH_FIELD}.tags").length() > 0))
    if len(tagged):
        ids, sample_tags, label_tags = tagged.values(["source_id", "tags", f"{GROUND_TRUTH_FIELD}.tags"])
    else:
        ids, sample_tags, label_tags = [], [], []
    pairs = [
        (sid, [*(tags or []), *(gt_tags or [])])
        for sid, tags, gt_tags in zip(ids, sample_tags, label_tags, strict=True)
    ]
    return corr.corrections_from_tags(pairs, dataset=dataset, source=f"fiftyone:{ds.name}")


def default_path(ds_name: str, workspace: Any | None) -> Path:
    """``<workspace>/exports/corrections_<name>.parquet`` (or the current folder without a workspace)."""
    root = workspace.exports_dir if workspace is not None else Path(".")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in ds_name)
    return root / f"corrections_{safe}.parquet"


def export_corrections(ds: Any, path: str | os.PathLike[str]) -> tuple[Any, Path]:
    """Write the dataset's corrections to ``path`` (Parquet); returns ``(table, path)``."""
    table = corrections_from_dataset(ds)
    return table, corr.write_corrections(table, path)
