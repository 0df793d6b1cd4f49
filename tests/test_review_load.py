"""curate.review.load and the steps it ties together (sources, documents, runs): sources -> samples,
runs -> predictions/evaluations/scores, failure handling."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_fixtures import fo, write_affectnet, write_ferplus, write_run  # noqa: F401

from curate import labels, slicing
from curate.review import load as rl
from curate.review import views
from curate.review.documents import insert_samples, sample_fields, to_samples
from curate.review.fields import ReviewLoadError, RunFields, identifier, policy_field
from curate.review.runs import RunMismatchError
from curate.review.sources import prepare_manual, safe_filename, source_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def affectnet_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("affectnet")
    return root, write_affectnet(root)


def _run_for(root: Path, frame: Any, *, policy: str = "drop-8-plus", flip: Sequence[int] = (), **kwargs: Any) -> Path:
    """A run on every row the policy keeps; rows in ``flip`` get a wrong given label (model says the true one)."""
    policy_object = labels.get_policy(policy)
    mapped = policy_object.apply(frame["label"].to_numpy())
    keep = mapped >= 0
    ids = [i for i, k in zip(frame["id"].to_list(), keep, strict=True) if k]
    true = mapped[keep]
    given = true.copy()
    for row in flip:
        given[row] = (true[row] + 1) % policy_object.num_classes
    splits = [s for s, k in zip(frame["split"].to_list(), keep, strict=True) if k]
    return write_run(root, ids=ids, given=given, true=true, splits=splits, policy=policy, **kwargs)


def _clean(value: Any) -> Any:
    """A sample dict without ids, timestamps and random keys (they differ between two inserts)."""
    if isinstance(value, dict):
        return {
            k: _clean(v)
            for k, v in value.items()
            if k not in ("_id", "id", "created_at", "last_modified_at", "_rand", "_dataset_id")
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def test_bulk_insert_matches_add_samples(fo: Any, affectnet_dir: tuple[Path, Any]) -> None:  # noqa: F811
    root, _ = affectnet_dir
    source = source_for("affectnet", manual_dir=root)
    table = prepare_manual(source, cache_dir=root.parent / "cache")
    policies = list(labels.BUILTIN_POLICIES.values())
    fast = fo.Dataset()
    insert_samples(fast, table.frame, "affectnet", batch_size=7)
    slow = fo.Dataset()
    sliced = slicing.frame_slices(table.frame, "affectnet")  # insert_samples adds the slice columns itself
    slow.add_samples(to_samples(sample_fields(sliced, "affectnet", policies)), progress=False)
    assert len(fast) == len(slow) == table.frame.height
    fast_docs = {s["source_id"]: _clean(s.to_dict()) for s in fast}
    slow_docs = {s["source_id"]: _clean(s.to_dict()) for s in slow}
    assert fast_docs == slow_docs
    slow_schema = slow.get_field_schema(flat=True)
    fast_schema = fast.get_field_schema(flat=True)
    for name, field in slow_schema.items():
        assert name in fast_schema, name
        assert type(fast_schema[name]) is type(field), name
    assert fast._sample_collection.count_documents({"_media_type": "image", "_rand": {"$gte": 0.999}}) == len(fast)
    assert len(fast.take(3)) == 3  # _rand is usable


def test_load_manual_affectnet(fo: Any, affectnet_dir: tuple[Path, Any], tmp_path: Path) -> None:  # noqa: F811
    root, frame = affectnet_dir
    summary = rl.load("affectnet", manual_dir=root, name="rv-affectnet", cache_dir=tmp_path)
    assert summary.built and summary.samples == frame.height and summary.missing_images == 1
    ds = fo.load_dataset("rv-affectnet")
    assert ds.persistent
    by_id = {s.source_id: s for s in ds}
    row = frame.row(12, named=True)  # label 1 (Happy)
    sample = by_id[row["id"]]
    assert sample.ground_truth.label == "Happy" and sample.split == row["split"]
    assert sample.filepath == str(root / "Manually_Annotated_Images" / row["id"])
    w, h = sample.metadata.width, sample.metadata.height
    assert sample.face.bounding_box == pytest.approx(
        [row["face_x"] / w, row["face_y"] / h, row["face_width"] / w, row["face_height"] / h], rel=1e-5
    )
    points = np.asarray(sample.landmarks.keypoints[0].points)
    assert points.shape == (68, 2) and points.min() >= 0 and points.max() <= 1
    assert points[0] == pytest.approx([row["landmarks"][0] / w, row["landmarks"][1] / h], rel=1e-5)
    assert sample.valence == pytest.approx(row["valence"], abs=1e-6) and sample.va_annotated
    contempt = by_id[frame.row(7, named=True)["id"]]  # label 7
    assert contempt.gt_merge_to_neutral.label == "Neutral" and contempt.gt_drop_7_plus is None
    assert contempt.gt_drop_8_plus.label == "Contempt"
    assert set(contempt.policy_merged) == {"merge-to-neutral"} and "drop-7-plus" in contempt.policy_dropped
    no_face = by_id[frame.row(10, named=True)["id"]]
    assert no_face.valence is None and no_face.va_annotated is False and no_face.gt_drop_no_face is None
    missing = by_id[frame.row(5, named=True)["id"]]
    assert missing.metadata is None and missing.face is None
    labels_seen = np.asarray(ds.values("label_index"))
    assert summary.views["merged-by-policy"] == int(np.isin(labels_seen, [7, 8, 9, 10]).sum())
    assert summary.views["no-va"] == int(np.isin(labels_seen, [9, 10]).sum())
    assert {v for v in ds.list_saved_views() if not v.startswith("slice-")} == {"merged-by-policy", "no-va"}
    quadrants = {v for v in ds.list_saved_views() if v.startswith("slice-va-quadrant-")}
    assert quadrants <= {f"slice-va-quadrant-v{v}-a{a}" for v in ("pos", "neg") for a in ("pos", "neg")} and quadrants
    assert sum(len(ds.load_saved_view(v)) for v in quadrants) == len(ds.match({"va_annotated": True}))
    assert ds.classes["gt_drop_8_plus"] == list(labels.get_policy("drop-8-plus").classes)
    again = rl.load("affectnet", manual_dir=root, name="rv-affectnet", cache_dir=tmp_path)
    assert not again.built and again.samples == summary.samples


def test_run_predictions_evaluation_and_scores(fo: Any, affectnet_dir: tuple[Path, Any], tmp_path: Path) -> None:  # noqa: F811
    root, frame = affectnet_dir
    flips = (0, 4, 9, 15)
    run = _run_for(tmp_path / "runs" / "an-run.1", frame, flip=flips)
    summary = rl.load("affectnet", manual_dir=root, run=run, name="rv-run", cache_dir=tmp_path)
    ds = fo.load_dataset("rv-run")
    (run_summary,) = summary.runs
    fields = RunFields.for_run("an-run.1")
    assert fields.key == "an_run_1" and run_summary.eval_key == "eval_an_run_1_drop_8_plus"
    kept = int((labels.get_policy("drop-8-plus").apply(frame["label"].to_numpy()) >= 0).sum())
    assert run_summary.matched == kept and run_summary.unmatched == 0  # balanced duplicates collapsed
    assert run_summary.label_disagreements == len(flips)  # the run's labels are the flipped ones
    assert run_summary.eval_key in ds.list_evaluations()
    assert set(ds.list_brain_runs()) == {fields.mistakenness, fields.hardness}
    predicted = ds.exists(fields.pred).first()[fields.pred]
    assert predicted.confidence is not None and len(predicted.logits) == 8
    assert len(ds.exists(fields.valence)) == kept
    for name in (fields.mistakenness, fields.hardness, fields.label_quality, fields.label_issue):
        assert len(ds.exists(name)) == kept, name
    results = ds.load_evaluation_results(run_summary.eval_key)
    assert results.confusion_matrix().shape == (8, 8)
    # The dataset's labels are right, so the run disagrees nowhere but at its own flipped labels:
    # nothing is misclassified against gt_drop_8_plus ... and the model is always right.
    assert summary.views["misclassified"] == 0
    sizes = views.create_views(ds, confident_threshold=0.5)
    assert {"misclassified", "confident-mistakes", "likely-label-errors"} <= set(sizes)
    quadrants = {name: size for name, size in sizes.items() if name.startswith("slice-va-quadrant-")}
    faces = {name: size for name, size in sizes.items() if name.startswith("slice-face-size-")}
    assert sum(quadrants.values()) == len(ds.match({"va_annotated": True}))
    assert faces and set(faces) <= {"slice-face-size-small", "slice-face-size-medium", "slice-face-size-large"}
    assert sum(faces.values()) == len(ds.exists("slice_face_size")) > 0  # every row with a box, once
    report = views.report(ds)
    assert report.runs[0].accuracy == pytest.approx(1.0) and report.samples == len(ds)


def test_scores_rank_flipped_labels_first(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    frame = write_affectnet(root, n_train=66, n_validation=22, seed=3)
    # The dataset's labels are wrong on these rows: the model (trained on the truth) disagrees.
    wrong_rows = [1, 12, 23, 34, 45, 56]
    flipped = frame.with_columns(
        frame["label"].scatter(wrong_rows, [(frame["label"][i] % 7) + 1 for i in wrong_rows]).alias("label")
    )
    from curate.formats import affectnet as fmt

    fmt.write_original(root, flipped)
    policy = labels.get_policy("drop-8-plus")
    true = policy.apply(frame["label"].to_numpy())
    given = policy.apply(flipped["label"].to_numpy())
    keep = (true >= 0) & (given >= 0)
    ids = [i for i, k in zip(frame["id"].to_list(), keep, strict=True) if k]
    run = write_run(tmp_path / "runs" / "noisy", ids=ids, given=given[keep], true=true[keep], policy=policy.name)
    summary = rl.load("affectnet", manual_dir=root, run=run, name="rv-noisy", cache_dir=tmp_path)
    ds = fo.load_dataset("rv-noisy")
    fields = RunFields.for_run("noisy")
    flipped_ids = {frame["id"][i] for i in wrong_rows if keep[i]}
    top = ds.exists(fields.mistakenness).sort_by(fields.mistakenness, reverse=True).limit(len(flipped_ids))
    assert set(top.values("source_id")) == flipped_ids
    worst = ds.exists(fields.label_quality).sort_by(fields.label_quality).limit(len(flipped_ids))
    assert set(worst.values("source_id")) == flipped_ids
    assert summary.views["misclassified"] == len(flipped_ids)
    # The fixture's landmarks are random: the landmark model has no skill and stays out.
    assert summary.runs[0].scores["confident_learning_probabilities"] == "run"
    assert set(ds.load_saved_view("likely-label-errors").values("source_id")) <= flipped_ids | set()
    confusions = views.report(ds).runs[0].confusions
    assert sum(n for _, _, n in confusions) == len(flipped_ids)


def test_mismatched_run_ids(fo: Any, affectnet_dir: tuple[Path, Any], tmp_path: Path) -> None:  # noqa: F811
    root, frame = affectnet_dir
    rl.load("affectnet", manual_dir=root, name="rv-mismatch", cache_dir=tmp_path)
    ids = frame["id"].to_list()[:6] + ["9/nope1.jpg", "9/nope2.jpg", "9/nope3.jpg"]
    given = [int(v) for v in labels.get_policy("keep-all").apply(frame["label"].to_numpy()[:6])] + [0, 1, 2]
    run = write_run(tmp_path / "partial", ids=ids, given=given, policy="keep-all")
    with pytest.raises(RunMismatchError, match=r"3 of 9 prediction ids .* --allow-partial to load the 6"):
        rl.load("affectnet", manual_dir=root, name="rv-mismatch", run=run, cache_dir=tmp_path)
    ds = fo.load_dataset("rv-mismatch")
    assert not ds.has_sample_field("pred_partial") and ds.list_evaluations() == []
    summary = rl.load("affectnet", manual_dir=root, name="rv-mismatch", run=run, cache_dir=tmp_path, allow_partial=True)
    assert summary.runs[0].matched == 6 and summary.runs[0].unmatched == 3
    foreign = write_run(tmp_path / "foreign", ids=["x/1.jpg"], given=[0], policy="keep-all")
    with pytest.raises(RunMismatchError, match="none of the 1 prediction ids"):
        rl.load("affectnet", manual_dir=root, name="rv-mismatch", run=foreign, cache_dir=tmp_path)
    incomplete = write_run(tmp_path / "incomplete", ids=ids[:2], given=[0, 1], policy="keep-all", complete=False)
    with pytest.raises(ReviewLoadError, match="not complete"):
        rl.load("affectnet", manual_dir=root, name="rv-mismatch", run=incomplete, cache_dir=tmp_path)
    other = write_run(tmp_path / "ferrun", ids=ids[:2], given=[0, 1], policy="keep-all", dataset="ferplus")
    with pytest.raises(ReviewLoadError, match="trained on ferplus"):
        rl.load("affectnet", manual_dir=root, name="rv-mismatch", run=other, cache_dir=tmp_path)


def test_name_used_by_another_source(fo: Any, affectnet_dir: tuple[Path, Any], tmp_path: Path) -> None:  # noqa: F811
    root, _ = affectnet_dir
    rl.load("affectnet", manual_dir=root, name="rv-owned", cache_dir=tmp_path)
    other = tmp_path / "other-affectnet"
    write_affectnet(other, n_train=5, n_validation=2, seed=9)
    with pytest.raises(ReviewLoadError, match="already used by another source"):
        rl.load("affectnet", manual_dir=other, name="rv-owned", cache_dir=tmp_path)
    ds = fo.load_dataset("rv-owned")
    assert ds.info["curate"]["source"]["path"] == str(root.resolve())
    plain = fo.Dataset("rv-foreign", persistent=True)
    with pytest.raises(ReviewLoadError, match="curate did not create"):
        rl.load("affectnet", manual_dir=root, name="rv-foreign", cache_dir=tmp_path)
    assert len(plain) == 0
    assert not [n for n in fo.list_datasets() if "-loading-" in n]


def test_failures_leave_nothing_half_loaded(
    fo: Any,  # noqa: F811
    affectnet_dir: tuple[Path, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, frame = affectnet_dir

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(views, "create_views", boom)
    with pytest.raises(RuntimeError, match="injected"):
        rl.load("affectnet", manual_dir=root, name="rv-broken", cache_dir=tmp_path)
    assert not fo.dataset_exists("rv-broken")
    assert not [n for n in fo.list_datasets() if n.startswith("rv-broken")]
    monkeypatch.undo()

    rl.load("affectnet", manual_dir=root, name="rv-broken", cache_dir=tmp_path)
    ds = fo.load_dataset("rv-broken")
    schema_before = set(ds.get_field_schema())
    from curate.review import label_scores

    monkeypatch.setattr(label_scores, "score_run", boom)
    run = _run_for(tmp_path / "runs" / "fails", frame)
    with pytest.raises(RuntimeError, match="injected"):
        rl.load("affectnet", manual_dir=root, name="rv-broken", run=run, cache_dir=tmp_path)
    ds.reload()
    assert set(ds.get_field_schema()) == schema_before
    assert ds.list_evaluations() == [] and ds.info["curate"]["runs"] == {}


def test_refresh_keeps_tags_and_runs(fo: Any, affectnet_dir: tuple[Path, Any], tmp_path: Path) -> None:  # noqa: F811
    root, frame = affectnet_dir
    run = _run_for(tmp_path / "runs" / "kept", frame)
    rl.load("affectnet", manual_dir=root, name="rv-refresh", run=run, cache_dir=tmp_path)
    ds = fo.load_dataset("rv-refresh")
    first, second = frame["id"][1], frame["id"][2]
    ds.match({"source_id": first}).tag_samples("relabel:fear")
    ds.match({"source_id": second}).tag_labels("exclude", label_fields="ground_truth")
    summary = rl.load("affectnet", manual_dir=root, name="rv-refresh", cache_dir=tmp_path, refresh=True)
    assert summary.built and summary.tags_carried == 2
    assert [r.name for r in summary.runs] == ["kept"]
    ds = fo.load_dataset("rv-refresh")
    assert ds.match({"source_id": first}).first().tags == ["relabel:fear"]
    assert ds.match({"source_id": second}).first().ground_truth.tags == ["exclude"]
    assert "eval_kept_drop_8_plus" in ds.list_evaluations()
    assert not [n for n in fo.list_datasets() if "-replaced-" in n or "-loading-" in n]


def test_ferplus_images_materialised_once(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "ferplus"
    votes = write_ferplus(root)
    cache = tmp_path / "cache"
    summary = rl.load("ferplus", manual_dir=root, name="rv-ferplus", cache_dir=cache)
    assert summary.images_written == len(votes) and summary.samples == len(votes)
    ds = fo.load_dataset("rv-ferplus")
    sample = ds.match({"source_id": "fer0000000"}).first()
    assert Path(sample.filepath).is_file() and sample.metadata.width == 48
    assert sample.votes == votes[0].tolist() and sample.vote_entropy == pytest.approx(1.0)
    assert summary.views["annotator-disagreement"] == int(np.ceil(len(votes) / 4))
    assert "no-va" not in summary.views
    # one saved view per slice of curate.slicing: the FER+ vote agreement of every row
    from curate.slicing import vote_agreement

    expected = collections.Counter(vote_agreement(votes).tolist())
    for value, count in expected.items():
        name = views.slice_view_name("vote_agreement", value)
        assert summary.views[name] == count and set(ds.load_saved_view(name).values("slice_vote_agreement")) == {value}
    mtime = Path(sample.filepath).stat().st_mtime_ns
    again = rl.load("ferplus", manual_dir=root, name="rv-ferplus", cache_dir=cache, refresh=True)
    assert again.built and again.images_written == 0
    assert Path(sample.filepath).stat().st_mtime_ns == mtime
    # A run trained with the majority vote mode is evaluated against the vote-derived labels.
    targets = labels.ferplus_vote_targets(votes, "majority")
    policy = labels.get_policy("merge-to-neutral")
    mapped = policy.apply(targets.label)
    keep = targets.keep & (mapped >= 0)
    ids = [f"fer{i:07d}" for i in np.flatnonzero(keep)]
    run = write_run(
        tmp_path / "runs" / "fer-run",
        ids=ids,
        given=mapped[keep],
        dataset="ferplus",
        policy=policy.name,
        vote_mode="majority",
    )
    loaded = rl.load("ferplus", manual_dir=root, name="rv-ferplus", cache_dir=cache, run=run)
    assert loaded.runs[0].gt_field == "gt_merge_to_neutral_majority" and loaded.runs[0].label_disagreements == 0
    assert loaded.runs[0].accuracy == pytest.approx(1.0)


def test_identifiers() -> None:
    assert identifier("affectnet-keep-all-mobilenetv3-96px-s0") == "affectnet_keep_all_mobilenetv3_96px_s0"
    assert identifier("3rd run") == "r3rd_run"
    assert policy_field("merge-to-neutral") == "gt_merge_to_neutral"
    assert policy_field("keep-all", "multi-target") == "gt_keep_all_multi_target"
    assert safe_filename("689/abc.jpg").startswith("689_abc_jpg-")
    assert safe_filename("a.b") != safe_filename("a_b")
    assert safe_filename("fer0000001") == "fer0000001"
    with pytest.raises(ReviewLoadError):
        identifier("---")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_load_from_built_tfds(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    """``--data-dir``: images come out of the TFDS records once; geometry of the stored crop."""
    tfds = pytest.importorskip("tensorflow_datasets")
    import tfds_builders  # noqa: F401  (registers the builders)

    write_affectnet(tmp_path / "affectnet", n_train=22, n_validation=11)
    votes = write_ferplus(tmp_path / "ferplus")
    data = tmp_path / "data"
    for name in ("affectnet", "ferplus"):
        builder = tfds.builder(name, data_dir=str(data))
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / name)))
    cache = tmp_path / "cache"
    affectnet = rl.load("affectnet", data_dir=data, name="rv-tfds-affectnet", cache_dir=cache)
    built = tfds.builder("affectnet", data_dir=str(data))
    total = sum(split.num_examples for split in built.info.splits.values())
    assert affectnet.samples == total and affectnet.images_written == total and affectnet.missing_images == 0
    ds = fo.load_dataset("rv-tfds-affectnet")
    sample = ds.exists("face").first()
    assert sample.metadata.width == 224 and Path(sample.filepath).is_relative_to(cache)
    box = np.asarray(sample.face.bounding_box)
    assert (box >= 0).all() and (box[:2] + box[2:] <= 1.0001).all()
    points = np.asarray(sample.landmarks.keypoints[0].points)
    assert points.shape == (68, 2) and points.min() >= -0.05 and points.max() <= 1.05
    again = rl.load("affectnet", data_dir=data, name="rv-tfds-affectnet", cache_dir=cache, refresh=True)
    assert again.images_written == 0
    ferplus = rl.load("ferplus", data_dir=data, name="rv-tfds-ferplus", cache_dir=cache)
    assert ferplus.samples == len(votes) and ferplus.views["annotator-disagreement"] == int(np.ceil(len(votes) / 4))


def test_load_rafdb_shows_the_original_image(fo: Any, synth_rafdb: Path, tmp_path: Path) -> None:  # noqa: F811
    """RAF-DB's box and landmarks are in original-image pixels: the sample shows that image."""
    from curate import datasets, formats
    from curate.formats import rafdb  # noqa: F401  (formats.rafdb below)

    summary = rl.load("rafdb", manual_dir=synth_rafdb, name="rv-rafdb", cache_dir=tmp_path)
    annotations = datasets.read("rafdb", synth_rafdb).annotations
    assert summary.samples == annotations.height
    ds = fo.load_dataset("rv-rafdb")
    row = annotations.row(0, named=True)
    sample = ds.match({"source_id": row["id"]}).first()
    assert sample.filepath == str(synth_rafdb.resolve() / formats.rafdb.original_path(row["id"]))
    assert sample.source_path == row["source_path"]
    w, h = sample.metadata.width, sample.metadata.height
    assert sample.face.bounding_box == pytest.approx(
        [row["face_x"] / w, row["face_y"] / h, row["face_width"] / w, row["face_height"] / h], rel=1e-5
    )
    assert len(sample.landmarks.keypoints[0].points) == 5
    assert set(ds.distinct("split")) == {"train", "test"} and "no-va" not in summary.views


def test_rafdb_copy_without_originals_shows_the_aligned_face_without_geometry(synth_rafdb: Path, tmp_path: Path) -> None:
    """RAF-DB without ``Image/original/`` (layout basic-aligned-only): every row shows its aligned
    face (none is "missing"), and no box or landmarks are drawn on it -- they are in the pixels of
    the photograph the copy lacks."""
    import shutil

    manual = tmp_path / "rafdb"
    shutil.copytree(synth_rafdb, manual, ignore=shutil.ignore_patterns("original"))
    table = prepare_manual(source_for("rafdb", manual_dir=manual), cache_dir=tmp_path / "cache")
    frame = table.frame
    assert table.source.layout == "basic-aligned-only"
    assert table.missing_images == 0 and frame.height > 0
    assert set(frame["image_width"].unique().to_list()) == {100}  # the aligned 100x100 faces
    assert frame["box_rel"].null_count() == frame.height
    assert frame["landmarks_rel"].null_count() == frame.height
