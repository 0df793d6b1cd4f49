"""curate.review: the valence/arousal consistency flags (``va_outlier``, ``va_distance``) and the ``va-outliers`` view."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from review_fixtures import fo, write_affectnet, write_ferplus  # noqa: F401
from typer.testing import CliRunner

from curate import labels
from curate.cli import app
from curate.formats import affectnet as fmt
from curate.review import load as rl
from curate.review import views
from curate.review.audit_fields import mark_va_outliers
from curate.review.fields import INFO_KEY, VA_DISTANCE_FIELD, VA_OUTLIER_FIELD

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()

HAPPY = labels.CANONICAL_NAMES.index("Happy")


def _invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def _affectnet_with_bad_happy(root: Path, *, n_bad: int = 3) -> tuple[pl.DataFrame, list[str]]:
    """12 rows per label, V/A tightly clustered per label; ``n_bad`` Happy rows get valence -0.9."""
    frame = write_affectnet(root, n_train=99, n_validation=33, seed=3)
    rng = np.random.default_rng(7)
    annotated = ~frame["label"].is_in(list(labels.NOT_ANNOTATED_VA_LABELS))
    centre_v = frame["label"].cast(pl.Float64) / 10.0 - 0.4  # a distinct centre per label
    noise = rng.normal(0.0, 0.03, size=(frame.height, 2))
    valence = (centre_v + noise[:, 0]).round(3)
    arousal = (0.3 + pl.Series(noise[:, 1])).round(3)
    happy = [i for i, label in enumerate(frame["label"].to_list()) if label == HAPPY]
    bad_rows = happy[:n_bad]
    valence = valence.scatter(bad_rows, -0.9)
    frame = frame.with_columns(
        pl.when(annotated).then(valence).otherwise(None).alias("valence"),
        pl.when(annotated).then(arousal).otherwise(None).alias("arousal"),
    )
    fmt.write_original(root, frame)
    return frame, [frame["id"][i] for i in bad_rows]


def test_va_outliers_flagged_viewed_and_reported(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    frame, bad = _affectnet_with_bad_happy(root)
    result = _invoke(
        "review", "load", "affectnet", "--manual-dir", str(root), "--name", "rv-va",
        "--workspace", str(tmp_path / "ws"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "va-outliers" in result.output

    ds = fo.load_dataset("rv-va")
    assert ds.has_sample_field(VA_OUTLIER_FIELD) and ds.has_sample_field(VA_DISTANCE_FIELD)
    record = ds.info[INFO_KEY]["va_outliers"]
    assert record["k"] == 3.0 and record["scored"] == int(frame["valence"].is_not_null().sum())
    view = ds.load_saved_view("va-outliers")
    flagged = view.values("source_id")
    assert set(bad) <= set(flagged) and len(view) == record["flagged"]
    assert set(flagged[: len(bad)]) == set(bad)  # the -0.9 Happy rows are the farthest
    distances = view.values(VA_DISTANCE_FIELD)
    assert distances == sorted(distances, reverse=True)
    assert all(view.values(VA_OUTLIER_FIELD))

    # Rows without V/A (labels 9, 10): not flagged, no distance; every other row has one.
    by_id = dict(zip(*ds.values(["source_id", VA_DISTANCE_FIELD]), strict=True))
    flags = dict(zip(*ds.values(["source_id", VA_OUTLIER_FIELD]), strict=True))
    for row_id, valence in zip(frame["id"].to_list(), frame["valence"].to_list(), strict=True):
        if valence is None:
            assert by_id[row_id] is None and flags[row_id] is False
        else:
            assert isinstance(by_id[row_id], float) and isinstance(flags[row_id], bool)

    result = _invoke("review", "report", "--name", "rv-va")
    assert result.exit_code == 0, result.output
    listed = result.output.split("Saved views")[1]
    assert re.search(rf"va-outliers\s*[│|]?\s*{len(view)}\b", listed), listed

    # An unchanged reload keeps the flags and the view.
    again = rl.load("affectnet", manual_dir=root, name="rv-va")
    assert not again.built and again.views["va-outliers"] == len(view)
    assert again.va_outliers == record


def test_va_outliers_view_absent_when_nothing_flagged(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    write_affectnet(root)  # 4 rows per label: below curate.audit.VA_MIN_ROWS, nothing flagged
    summary = rl.load("affectnet", manual_dir=root, name="rv-va-none", cache_dir=tmp_path)
    ds = fo.load_dataset("rv-va-none")
    assert summary.va_outliers["flagged"] == 0 and "va-outliers" not in summary.views
    assert ds.has_sample_field(VA_OUTLIER_FIELD) and not any(ds.values(VA_OUTLIER_FIELD))
    assert "va-outliers" not in views.create_views(ds)


def test_va_outliers_skipped_without_va(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "ferplus"
    write_ferplus(root)
    summary = rl.load("ferplus", manual_dir=root, name="rv-va-ferplus", cache_dir=tmp_path / "cache")
    ds = fo.load_dataset("rv-va-ferplus")
    assert summary.va_outliers == {} and "va-outliers" not in summary.views
    assert not ds.has_sample_field(VA_OUTLIER_FIELD) and not ds.has_sample_field(VA_DISTANCE_FIELD)
    assert mark_va_outliers(ds, "ferplus") == {}
