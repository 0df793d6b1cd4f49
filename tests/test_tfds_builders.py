"""End-to-end checks of the TFDS builders over synthetic manual dirs.

* The real ``tfds`` CLI in a subprocess: from the builders' folder, from anywhere with
  ``--imports tfds_builders``, with a missing manual dir, and with Beam (FnApiRunner,
  multi-processing) -- whose examples must equal the plain build's.
* Row accounting against the generator's manifest: split sizes, reject counts by reason,
  label counts per class (input minus rejects), valence/arousal flags, shapes.
* Determinism: two builds of the same files give the same decoded examples in the same order.
* ``@pytest.mark.slow``: FERPlus over the real ``fer2013new.csv`` with aligned synthetic pixels.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from test_formats_ferplus import gs_in_memory
from test_formats_rafdb import (
    HAND_ROWS,
    ORIGINAL_SIZE,
    hand_box,
    hand_csv,
    tiny_jpeg,
    write_basic_by_hand,
    write_folders_by_hand,
)

tfds = pytest.importorskip("tensorflow_datasets")

import tfds_builders  # noqa: E402, F401  (registers the builders)
from tfds_builders import common  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILDERS_DIR = REPO / "tfds_builders"
TFDS_BIN = Path(sys.executable).with_name("tfds")
BEAM_OPTIONS = "runner=FnApiRunner,direct_num_workers=2,direct_running_mode=multi_processing"
#: Generator manifest names of image failures -> builder reject reasons.
IMAGE_FAILURE_REASONS = {"missing image": common.MISSING_IMAGE, "truncated image": common.TRUNCATED_IMAGE}


@pytest.fixture
def memory_gs(monkeypatch):
    """gs:// in memory (see test_formats_ferplus.gs_in_memory)."""
    with gs_in_memory(monkeypatch) as upload:
        yield upload


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def run_tfds(args: list[str], *, cwd: Path, timeout: int = 300, extra_env: dict[str, str] | None = None):
    env = dict(os.environ)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    env.update(extra_env or {})
    return subprocess.run(
        [str(TFDS_BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (
        f"tfds failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )


def build(name: str, manual_dir: Path, data_dir: Path, config: str | None = None, **download_kwargs: Any):
    builder = tfds.builder(name, config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir), **download_kwargs)
    )
    return builder


def examples(builder, split: str) -> list[dict[str, Any]]:
    """Decoded examples of a split, in stored order."""
    return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def assert_same_examples(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{key} of {a.get('id')!r}")


def manifest_of(manual_dir: Path) -> dict[str, Any]:
    return json.loads((manual_dir.parent / f"{manual_dir.name}.synth_manifest.json").read_text())


def ledger_counts(builder, split: str) -> collections.Counter:
    return collections.Counter(r["reason"] for r in common.read_ledger(builder.data_path, split))


def label_counter(values) -> dict[int, int]:
    return {int(k): int(v) for k, v in collections.Counter(int(x) for x in values).items() if v}


def manifest_class_counts(manifest: dict[str, Any], split: str) -> dict[int, int]:
    return {int(k): int(v) for k, v in manifest["class_counts"][split].items() if int(v)}


def subtract(total: dict[int, int], removed: dict[int, int]) -> dict[int, int]:
    out = dict(total)
    for label, count in removed.items():
        out[label] = out.get(label, 0) - count
    return {k: v for k, v in out.items() if v}


# --------------------------------------------------------------------------------------
# Synthetic manual dirs (small; generated once per session by tests/fixtures_synth.py)
# --------------------------------------------------------------------------------------


# Session fixtures of tests/fixtures_synth.py (shared with the other test modules):
# synth_affectnet_original, synth_affectnet_cropped, synth_ferplus, synth_rafdb.


@pytest.fixture(scope="module")
def affectnet_original(synth_affectnet_original) -> Path:
    return synth_affectnet_original


@pytest.fixture(scope="module")
def affectnet_cropped(synth_affectnet_cropped) -> Path:
    return synth_affectnet_cropped


@pytest.fixture(scope="module")
def affectnet_plain(affectnet_original, tmp_path_factory):
    """crop224 built with the plain generator path (shared by several tests)."""
    return build("affectnet", affectnet_original, tmp_path_factory.mktemp("plain"), config="crop224")


# --------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------


def test_cli_from_builders_folder(affectnet_original, tmp_path):
    result = run_tfds(
        ["build", "affectnet", "--config", "crop224", f"--manual_dir={affectnet_original}", f"--data_dir={tmp_path}"],
        cwd=BUILDERS_DIR,
    )
    assert_ok(result)
    out = tmp_path / "affectnet" / "crop224" / "1.0.0"
    assert (out / "dataset_info.json").exists()
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["totals"]["rows_in"] == metadata["totals"]["examples"] + metadata["totals"]["rejects"]
    assert (out / "rejects-train.jsonl").exists() and (out / "rejects-validation.jsonl").exists()


def test_cli_with_imports_builds_all_three(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in ("affectnet", "ferplus", "rafdb"):
        (manual / name).symlink_to(BUILDERS_DIR / name / "dummy_data", target_is_directory=True)
    data_dir = tmp_path / "data"
    result = run_tfds(
        [
            "build",
            "affectnet",
            "ferplus",
            "rafdb",
            "--imports",
            "tfds_builders",
            f"--manual_dir={manual}",
            "--add_name_to_manual_dir",
            f"--data_dir={data_dir}",
        ],
        cwd=tmp_path,
    )
    assert_ok(result)
    # ... and tfds.load finds them after `import tfds_builders`.
    for name, config in (("affectnet", "crop224"), ("affectnet", "original"), ("ferplus", None), ("rafdb", None)):
        full = f"{name}/{config}" if config else name
        ds, info = tfds.load(full, data_dir=str(data_dir), split="train", with_info=True, download=False)
        counts = info.metadata["counts"]["train"]
        assert counts["examples"] == info.splits["train"].num_examples == sum(1 for _ in ds)
        assert counts["rows_in"] == counts["examples"] + counts["rejects"]


def test_cli_empty_manual_dir_prints_the_instructions(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    result = run_tfds(
        ["build", "ferplus", "--imports", "tfds_builders", f"--manual_dir={manual}", f"--data_dir={tmp_path}"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "does not exist or is empty" in result.stderr
    assert "fer2013new.csv" in result.stderr and "kaggle.com" in result.stderr


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("affectnet", ("mohammadmahoor.com/affectnet", "Manually_Annotated_file_lists/training.csv", "val_set/images")),
        ("rafdb", ("whdeng.cn/raf", "basic/EmoLabel/list_patition_label.txt", "basic/Image/aligned")),
    ],
)
def test_missing_manual_dir_prints_the_instructions(tmp_path, name, expected):
    with pytest.raises(AssertionError, match="does not exist or is empty") as error:
        build(name, tmp_path / "absent", tmp_path / "data")
    for text in expected:
        assert text in str(error.value)


def test_wrong_manual_dir_names_the_expected_files(tmp_path):
    (tmp_path / "manual").mkdir()
    (tmp_path / "manual" / "README.txt").write_text("not AffectNet")
    with pytest.raises(AssertionError, match="affectnet: cannot read the manual dir") as error:
        build("affectnet", tmp_path / "manual", tmp_path / "data", config="crop224")
    assert "Manually_Annotated_file_lists/training.csv" in str(error.value)
    assert not (tmp_path / "data" / "affectnet" / "crop224" / "1.0.0").exists()


# --------------------------------------------------------------------------------------
# AffectNet: accounting against the generator's manifest
# --------------------------------------------------------------------------------------


def _affectnet_csv_labels(manual_dir: Path) -> dict[str, dict[str, int]]:
    """split -> id -> expression, read straight from the generated CSVs (test oracle)."""
    out = {}
    for split, name in (("train", "training.csv"), ("validation", "validation.csv")):
        frame = pl.read_csv(manual_dir / "Manually_Annotated_file_lists" / name, infer_schema=False)
        out[split] = dict(zip(frame.get_column(frame.columns[0]).to_list(), map(int, frame["expression"]), strict=True))
    return out


def test_affectnet_original_accounting(affectnet_original, affectnet_plain):
    builder = affectnet_plain
    manifest = manifest_of(affectnet_original)
    csv_labels = _affectnet_csv_labels(affectnet_original)
    metadata = builder.info.metadata

    expected_reasons = collections.Counter(manifest["expected_reader_rejects"])
    for name, count in manifest["expected_image_failures"].items():
        expected_reasons[IMAGE_FAILURE_REASONS[name]] += count
    got_reasons = ledger_counts(builder, "train") + ledger_counts(builder, "validation")
    assert got_reasons == expected_reasons
    quirk_ids = {
        common.MISSING_IMAGE: set(manifest["quirks"]["missing_image"]["ids"]),
        common.TRUNCATED_IMAGE: set(manifest["quirks"]["truncated_image"]["ids"]),
        "non-positive face box": set(manifest["quirks"]["non_positive_box"]["ids"]),
    }
    rejected: dict[str, dict[int, int]] = {}
    for split in ("train", "validation"):
        ledger = common.read_ledger(builder.data_path, split)
        for record in ledger:
            assert record["id"] in quirk_ids[record["reason"]]
            assert record["source_file"] == manifest["files"][split] and record["source_row"] >= 2
        rejected[split] = label_counter(csv_labels[split][r["id"]] for r in ledger)
        rows_in = manifest["split_counts"][split]
        assert metadata["counts"][split]["rows_in"] == rows_in
        assert builder.info.splits[split].num_examples == rows_in - len(ledger)
        assert metadata["counts"][split]["rejects"] == len(ledger)
        assert metadata["reject_reasons"][split] == dict(ledger_counts(builder, split))
        assert label_counter(csv_labels[split].values()) == manifest_class_counts(manifest, split)

        stored = examples(builder, split)
        assert label_counter(e["expression"] for e in stored) == subtract(
            manifest_class_counts(manifest, split), rejected[split]
        )
        for example in stored:
            assert example["image"].shape == (224, 224, 3)
            assert example["landmarks"].shape == (68, 2) and example["source_landmarks"].shape == (68, 2)
            box = example["face_box"]
            assert 0.0 <= box[0] < box[2] <= 1.0 and 0.0 <= box[1] < box[3] <= 1.0
            annotated = example["expression"] not in (9, 10)
            assert bool(example["va_annotated"]) == annotated
            if not annotated:
                assert example["valence"] == 0.0 and example["arousal"] == 0.0
            else:
                assert -1.0 <= example["valence"] <= 1.0 and -1.0 <= example["arousal"] <= 1.0
            if example["expression"] != 10:  # No-Face landmarks are a template, not on the box
                inside = np.mean((example["landmarks"] >= -1) & (example["landmarks"] <= 225))
                assert inside > 0.9, example["id"]
    files = metadata["annotation_files_sha256"]
    assert set(files) == set(manifest["files"].values())
    for relative, digest in files.items():
        assert digest == common.sha256_file(affectnet_original / relative)
    # the generator's LZW TIFFs decode with Pillow and are kept
    tif_ids = set(manifest["quirks"]["tif_lzw"]["ids"])
    stored_ids = {e["id"].decode() for split in ("train", "validation") for e in examples(builder, split)}
    assert tif_ids and tif_ids <= stored_ids


def test_affectnet_original_config_keeps_the_same_rows(affectnet_original, affectnet_plain, tmp_path):
    original = build("affectnet", affectnet_original, tmp_path, config="original")
    for split in ("train", "validation"):
        cropped = {e["id"]: e for e in examples(affectnet_plain, split)}
        full = examples(original, split)
        assert {e["id"] for e in full} == set(cropped)
        assert common.read_ledger(original.data_path, split) == common.read_ledger(affectnet_plain.data_path, split)
        for example in full[:20]:
            other = cropped[example["id"]]
            np.testing.assert_array_equal(example["source_landmarks"], other["source_landmarks"])
            np.testing.assert_array_equal(example["landmarks"], example["source_landmarks"])
            height, width = example["image"].shape[:2]
            x, y, w, h = example["source_face_box"]
            np.testing.assert_allclose(
                example["face_box"],
                np.clip([y / height, x / width, (y + h) / height, (x + w) / width], 0, 1),
                atol=1e-6,
            )
            # crop224: box + 20% margin clamped to the image, pixel centres mapped linearly
            x0, y0 = max(0, np.floor(x - 0.2 * w)), max(0, np.floor(y - 0.2 * h))
            x1, y1 = min(width, np.ceil(x + 1.2 * w)), min(height, np.ceil(y + 1.2 * h))
            scale = np.array([224 / (x1 - x0), 224 / (y1 - y0)])
            expected = (example["source_landmarks"] + 0.5 - [x0, y0]) * scale - 0.5
            np.testing.assert_allclose(other["landmarks"], expected, rtol=1e-5, atol=1e-3)
            crop_box = [(y - y0) / (y1 - y0), (x - x0) / (x1 - x0), (y + h - y0) / (y1 - y0), (x + w - x0) / (x1 - x0)]
            np.testing.assert_allclose(other["face_box"], np.clip(crop_box, 0, 1), atol=1e-6)


def test_affectnet_cropped_layout(affectnet_cropped, tmp_path):
    builder = build("affectnet", affectnet_cropped, tmp_path, config="crop224")
    manifest = manifest_of(affectnet_cropped)
    assert builder.info.metadata["layout"] == "cropped"
    for split in ("train", "validation"):
        assert builder.info.splits[split].num_examples == manifest["split_counts"][split]
        assert common.read_ledger(builder.data_path, split) == []
        stored = examples(builder, split)
        assert label_counter(e["expression"] for e in stored) == manifest_class_counts(manifest, split)
        for example in stored:
            assert example["id"].decode().startswith(("train_set/", "val_set/"))
            np.testing.assert_array_equal(example["source_face_box"], [0, 0, 224, 224])
            np.testing.assert_allclose(example["face_box"], [0, 0, 1, 1])
            np.testing.assert_allclose(example["landmarks"], example["source_landmarks"], atol=1e-4)
            assert example["va_annotated"]


# --------------------------------------------------------------------------------------
# Determinism and Beam
# --------------------------------------------------------------------------------------


def test_two_builds_give_identical_examples(affectnet_original, affectnet_plain, tmp_path):
    again = build("affectnet", affectnet_original, tmp_path, config="crop224")
    for split in ("train", "validation"):
        assert_same_examples(examples(affectnet_plain, split), examples(again, split))
        assert common.read_ledger(again.data_path, split) == common.read_ledger(affectnet_plain.data_path, split)
    assert dict(again.info.metadata) == dict(affectnet_plain.info.metadata)


def test_thread_pool_gives_the_same_examples_as_one_thread(affectnet_original, affectnet_plain, tmp_path, monkeypatch):
    """Examples are made on WORKERS threads in chunks; the output is that of one thread."""
    builder_class = type(affectnet_plain)
    monkeypatch.setattr(builder_class, "WORKERS", 1)
    inline = build("affectnet", affectnet_original, tmp_path / "one", config="crop224")
    monkeypatch.setattr(builder_class, "WORKERS", 3)
    monkeypatch.setattr(builder_class, "CHUNK_ROWS", 7)  # many chunk boundaries, rejects among them
    threaded = build("affectnet", affectnet_original, tmp_path / "three", config="crop224")
    for split in ("train", "validation"):
        reference = examples(inline, split)
        assert_same_examples(examples(threaded, split), reference)
        assert_same_examples(examples(affectnet_plain, split), reference)
        ledger = common.read_ledger(inline.data_path, split)
        assert common.read_ledger(threaded.data_path, split) == ledger
    assert dict(threaded.info.metadata) == dict(inline.info.metadata) == dict(affectnet_plain.info.metadata)


def test_ordered_map_keeps_order_bounds_work_and_stops_early():
    import threading
    import time

    lock, state = threading.Lock(), {"running": 0, "most": 0, "started": 0}

    def slow_square(x: int) -> int:
        with lock:
            state["running"] += 1
            state["started"] += 1
            state["most"] = max(state["most"], state["running"])
        time.sleep(0.002 * (x % 3))  # finish out of order
        with lock:
            state["running"] -= 1
        return x * x

    consumed = []

    def source():
        for x in range(40):
            consumed.append(x)
            yield x

    results = []
    for value in common.ordered_map(slow_square, source(), workers=3, window=5):
        results.append(value)
        assert len(consumed) <= len(results) + 5  # never more than `window` ahead of the consumer
    assert results == [x * x for x in range(40)]
    assert state["most"] <= 3
    assert list(common.ordered_map(slow_square, range(5), workers=1, window=1)) == [0, 1, 4, 9, 16]

    def fails_at_7(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x

    got = []
    with pytest.raises(ValueError, match="seven"):
        for value in common.ordered_map(fails_at_7, range(20), workers=2, window=4):
            got.append(value)
    assert got == list(range(7))

    state["started"] = 0
    stream = common.ordered_map(slow_square, range(10_000), workers=2, window=4)
    assert [next(stream) for _ in range(3)] == [0, 1, 4]
    stream.close()  # what --max_examples_per_split does
    assert state["started"] <= 3 + 4 + 2


def test_beam_build_equals_plain_build(affectnet_original, affectnet_plain, tmp_path):
    result = run_tfds(
        [
            "build",
            "affectnet",
            "--imports",
            "tfds_builders",
            "--config",
            "crop224",
            f"--manual_dir={affectnet_original}",
            f"--data_dir={tmp_path}",
            f"--beam_pipeline_options={BEAM_OPTIONS}",
        ],
        cwd=tmp_path,
        extra_env={"PYTHONPATH": str(REPO)},
    )
    assert_ok(result)
    beam_built = tfds.builder("affectnet", config="crop224", data_dir=str(tmp_path))
    for split in ("train", "validation"):
        assert_same_examples(examples(affectnet_plain, split), examples(beam_built, split))
        assert common.read_ledger(beam_built.data_path, split) == common.read_ledger(affectnet_plain.data_path, split)
    beam_metadata, plain_metadata = dict(beam_built.info.metadata), dict(affectnet_plain.info.metadata)
    assert beam_metadata.pop("generated_with") == "apache_beam"
    assert plain_metadata.pop("generated_with") == "python_generator"
    counters = beam_metadata.pop("beam_counters")
    assert beam_metadata == plain_metadata
    for split in ("train", "validation"):
        assert counters[f"{split}/examples"] == beam_built.info.splits[split].num_examples
        builder_rejects = collections.Counter(
            r["reason"] for r in common.read_ledger(beam_built.data_path, split) if r["stage"] == "builder"
        )
        assert {k.split("/", 2)[2]: v for k, v in counters.items() if k.startswith(f"{split}/rejects/")} == dict(
            builder_rejects
        )
    assert not list(Path(beam_built.data_path).glob("beam-rejects-*"))


# --------------------------------------------------------------------------------------
# FERPlus
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ferplus_synthetic(synth_ferplus) -> Path:
    return synth_ferplus


def check_ferplus_build(builder, manual_dir: Path, manifest: dict[str, Any]) -> None:
    from test_ferplus_labels import majority_oracle

    """Every row accounted for; labels, votes and names as in the input files."""
    from curate import labels
    from curate.formats import ferplus as ferplus_format

    tables = ferplus_format.read(manual_dir, with_pixels=False)
    metadata = builder.info.metadata
    assert set(metadata["annotation_files_sha256"]) == {"fer2013.csv", "fer2013new.csv"}
    assert metadata["totals"]["rows_in"] == sum(manifest["split_counts"].values()) == tables.rows_in
    by_id = {row["id"]: row for row in tables.annotations.iter_rows(named=True)}
    # test oracle: FER2013 emotion per data row, straight from the CSV
    emotions = pl.read_csv(manual_dir / "fer2013.csv", columns=["emotion"], infer_schema=False)["emotion"]
    emotions = [int(e) if e and e.isdigit() else None for e in emotions.to_list()]
    empty_names = 0
    for split in ("train", "validation", "test"):
        ledger = common.read_ledger(builder.data_path, split)
        reader_rejects = tables.rejects.filter(pl.col("split") == split)
        assert len(ledger) == reader_rejects.height  # synthetic pixels: the builder rejects nothing
        counts = metadata["counts"][split]
        assert counts["rows_in"] == manifest["split_counts"][split]
        assert counts["rows_in"] == counts["examples"] + counts["rejects"]
        stored = examples(builder, split)
        assert len(stored) == builder.info.splits[split].num_examples == counts["examples"]
        rejected_labels = label_counter(
            labels.FER2013_TO_CANONICAL[emotions[int(r["id"][3:])]]
            for r in ledger
            if r["id"] and emotions[int(r["id"][3:])] is not None
        )
        assert label_counter(labels.FER2013_TO_CANONICAL[e["fer2013_label"]] for e in stored) == subtract(
            manifest_class_counts(manifest, split), rejected_labels
        )
        for example in stored:
            row = by_id[example["id"].decode()]
            assert example["image"].shape == (48, 48, 1)
            np.testing.assert_array_equal(example["votes"], row["votes"])
            assert example["fer2013_label"] == row["raw_label"]
            # label: the FER+ majority label of the votes (builder 2.0.0), FER2013's stays in fer2013_label
            assert example["label"] == majority_oracle(row["votes"])
            assert example["image_name"].decode() == (row["image_name"] or "")
            empty_names += not row["image_name"]
    assert empty_names == manifest["quirks"]["empty_image_name"]["count"]


def test_ferplus_synthetic_accounting(ferplus_synthetic, tmp_path):
    from curate.formats import ferplus as ferplus_format

    builder = build("ferplus", ferplus_synthetic, tmp_path)
    check_ferplus_build(builder, ferplus_synthetic, manifest_of(ferplus_synthetic))
    # pixels: the stored PNG is exactly the 48x48 grey image of the pixel string
    pixels = {
        row["id"]: row["pixels"]
        for row in ferplus_format.read(ferplus_synthetic, with_pixels=True).annotations.head(50).iter_rows(named=True)
    }
    for example in examples(builder, "train"):
        key = example["id"].decode()
        if key in pixels:
            expected = np.array(pixels[key].split(), dtype=np.uint8).reshape(48, 48, 1)
            np.testing.assert_array_equal(example["image"], expected)


def test_ferplus_exclusion_list_in_manual_dir(ferplus_synthetic, tmp_path):
    """``curate_exclusions.parquet`` in the manual dir: listed ids become builder rejects."""
    from curate.formats import ferplus as ferplus_format

    manual = tmp_path / "manual"
    manual.mkdir()
    for name in ("fer2013.csv", "fer2013new.csv"):
        shutil.copy(ferplus_synthetic / name, manual / name)
    annotations = ferplus_format.read(manual, with_pixels=False).annotations
    train_ids = annotations.filter(pl.col("split") == "train")["id"].to_list()[:3]
    test_id = annotations.filter(pl.col("split") == "test")["id"][0]
    listed = [*train_ids, test_id]
    pl.DataFrame(
        {
            "dataset": ["ferplus"] * len(listed) + ["rafdb"],
            "id": [*listed, annotations["id"][-1]],  # another dataset's row: ignored here
            "split": ["train"] * len(train_ids) + ["test", "train"],
            "group": [f"ferplus:{test_id}"] * len(listed) + ["rafdb:x"],
        }
    ).write_parquet(manual / common.EXCLUSIONS_FILE)

    builder = build("ferplus", manual, tmp_path / "data")
    metadata = builder.info.metadata
    assert metadata["annotation_files_sha256"][common.EXCLUSIONS_FILE] == common.sha256_file(
        manual / common.EXCLUSIONS_FILE
    )
    expected = {"train": len(train_ids), "validation": 0, "test": 1}
    for split, count in expected.items():
        counts = metadata["counts"][split]
        assert counts["rows_in"] == counts["examples"] + counts["rejects"]
        assert metadata["reject_reasons"][split].get(common.EXCLUDED_DUPLICATE, 0) == count
        assert ledger_counts(builder, split)[common.EXCLUDED_DUPLICATE] == count
        stored = {e["id"].decode() for e in examples(builder, split)}
        assert not stored & set(listed)
    assert annotations["id"][-1] in {e["id"].decode() for e in examples(builder, "test")} | {
        e["id"].decode() for e in examples(builder, "train")
    } | {e["id"].decode() for e in examples(builder, "validation")}
    record = next(r for r in common.read_ledger(builder.data_path, "test") if r["id"] == test_id)
    assert record["stage"] == "builder" and record["detail"] == f"duplicate of ferplus:{test_id}"


def test_unreadable_exclusion_list_fails_the_build(ferplus_synthetic, tmp_path):
    """A ``curate_exclusions.parquet`` that is not a usable list stops the build, naming the file."""
    manual = tmp_path / "manual"
    manual.mkdir()
    for name in ("fer2013.csv", "fer2013new.csv"):
        shutil.copy(ferplus_synthetic / name, manual / name)
    (manual / common.EXCLUSIONS_FILE).write_text("id\nfer0000001\n")
    with pytest.raises(AssertionError, match="not a readable Parquet exclusion list") as error:
        build("ferplus", manual, tmp_path / "data")
    assert str(manual / common.EXCLUSIONS_FILE) in str(error.value)
    pl.DataFrame({"x": [1]}).write_parquet(manual / common.EXCLUSIONS_FILE)
    with pytest.raises(AssertionError, match=r"curate_exclusions.parquet: no 'id' column \(columns: x\)"):
        build("ferplus", manual, tmp_path / "data2")


def _real_ferplus_csv() -> Path | None:
    candidates = [os.environ.get("FERPLUS_LABELS_CSV"), REPO.parent / "shared" / "data" / "ferplus" / "fer2013new.csv"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@pytest.mark.slow
def test_ferplus_real_vote_file_every_row_accounted_for(tmp_path):
    real = _real_ferplus_csv()
    if real is None:
        pytest.skip(
            "real fer2013new.csv not found: set FERPLUS_LABELS_CSV or place it at ../shared/data/ferplus/ "
            "relative to the repository root"
        )
    manual = tmp_path / "ferplus"
    command = [
        str(Path(sys.executable).with_name("curate")),
        "synth",
        "ferplus",
        "--votes-from",
        str(real),
        "--out",
        str(manual),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1200)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    manifest = manifest_of(manual)
    assert sum(manifest["split_counts"].values()) == 35_887
    builder = build("ferplus", manual, tmp_path / "data")
    check_ferplus_build(builder, manual, manifest)
    metadata = builder.info.metadata
    assert metadata["totals"]["rows_in"] == 35_887
    assert metadata["totals"]["examples"] + metadata["totals"]["rejects"] == 35_887
    assert metadata["annotation_files_sha256"]["fer2013new.csv"] == common.sha256_file(real)


# --------------------------------------------------------------------------------------
# RAF-DB
# --------------------------------------------------------------------------------------


def test_rafdb_accounting_with_injected_image_faults(synth_rafdb, tmp_path):
    """The generator writes clean RAF-DB files; image faults are injected into a copy here."""
    from PIL import Image

    from curate import labels
    from curate.formats import rafdb as rafdb_format

    manual = tmp_path / "rafdb"
    shutil.copytree(synth_rafdb, manual)
    manifest = manifest_of(synth_rafdb)
    tables = rafdb_format.read(manual)
    rows = {row["id"]: row for row in tables.annotations.iter_rows(named=True)}
    train = sorted(i for i in rows if i.startswith("train_"))
    test = sorted(i for i in rows if i.startswith("test_"))
    faults = {
        train[0]: common.MISSING_IMAGE,  # aligned image deleted
        train[1]: common.TRUNCATED_IMAGE,
        test[0]: common.UNDECODABLE_IMAGE,
        test[1]: common.MISSING_IMAGE,  # original image deleted: the box cannot be normalised
    }
    (manual / rafdb_format.aligned_path(train[0])).unlink()
    aligned = manual / rafdb_format.aligned_path(train[1])
    aligned.write_bytes(aligned.read_bytes()[: aligned.stat().st_size // 2])
    (manual / rafdb_format.aligned_path(test[0])).write_bytes(b"GIF89a not really")
    (manual / rafdb_format.original_path(test[1])).unlink()

    builder = build("rafdb", manual, tmp_path / "data")
    metadata = builder.info.metadata
    for split in ("train", "test"):
        ledger = common.read_ledger(builder.data_path, split)
        assert {r["id"]: r["reason"] for r in ledger} == {k: v for k, v in faults.items() if k.startswith(split)}
        assert all(r["stage"] == "builder" and r["source_file"] == rafdb_format.LABEL_FILE for r in ledger)
        counts = metadata["counts"][split]
        assert counts["rows_in"] == manifest["split_counts"][split] == counts["examples"] + counts["rejects"]
        stored = examples(builder, split)
        rejected = label_counter(rows[r["id"]]["label"] for r in ledger)
        assert label_counter(e["label"] for e in stored) == subtract(manifest_class_counts(manifest, split), rejected)
        for example in stored:
            row = rows[example["id"].decode()]
            assert example["image"].shape == (100, 100, 3)
            assert example["rafdb_label"] == row["raw_label"] - 1
            assert example["label"] == labels.RAFDB_TO_CANONICAL[example["rafdb_label"]] == row["label"]
            np.testing.assert_allclose(example["landmarks5"].reshape(-1), row["landmarks"], rtol=1e-6)
            np.testing.assert_allclose(example["landmarks37"].reshape(-1), row["landmarks_auto"], rtol=1e-6)
            assert (example["gender"], example["race"], example["age_group"]) == (
                row["gender"],
                row["race"],
                row["age_group"],
            )
            with Image.open(manual / rafdb_format.original_path(row["id"])) as original:
                width, height = original.size
            x, y, w, h = row["face_x"], row["face_y"], row["face_width"], row["face_height"]
            np.testing.assert_allclose(
                example["face_box"],
                np.clip([y / height, x / width, (y + h) / height, (x + w) / width], 0, 1),
                atol=1e-6,
            )


def _hand_copy(layout: str, manual: Path) -> dict[str, dict[str, str]]:
    """A hand-written copy of ``layout`` with faults; split -> {id or source_file: expected reject reason}."""
    if layout == "folder-per-label":
        csv = hand_csv()
        csv.append("train_00042_aligned.jpg,3")  # a CSV row without its image
        write_folders_by_hand(manual, csv_lines={"train": csv})  # test/ has no CSV: labels from the folders
        tiny_jpeg(manual / "train" / "6" / "train_00050_aligned.jpg")  # an image without a CSV row
        tiny_jpeg(manual / "test" / "9" / "test_0009_aligned.jpg")  # a label folder out of range
        return {
            "train": {"train_00042": "missing image file", "train_00050": "not in label list"},
            "test": {"test_0009": "label out of range"},
        }
    write_basic_by_hand(manual, original=layout == "basic", annotations=layout != "basic-labels-only")
    if layout == "basic":  # originals present, one missing: that row is rejected, as always
        (manual / "basic" / "Image" / "original" / "train_00002.jpg").unlink()
    else:
        (manual / "basic" / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    (manual / "basic" / "Image" / "aligned" / "test_0002_aligned.jpg").write_bytes(b"not a JPEG")
    return {"train": {"train_00002": common.MISSING_IMAGE}, "test": {"test_0002": common.UNDECODABLE_IMAGE}}


@pytest.mark.parametrize("layout", ["basic", "basic-aligned-only", "basic-labels-only", "folder-per-label"])
def test_rafdb_hand_written_copies_build(layout, tmp_path):
    """Each copy people hold builds; the metadata names it; every row is an example or a listed reject."""
    from curate import labels

    manual = tmp_path / "manual"
    expected_rejects = _hand_copy(layout, manual)
    builder = build("rafdb", manual, tmp_path / "data")
    metadata = builder.info.metadata
    assert metadata["layout"] == layout and builder.info.version == "1.1.0"
    has_original, has_annotations = layout == "basic", layout in ("basic", "basic-aligned-only")
    index = {stem: i for i, (stem, _) in enumerate(HAND_ROWS)}
    for split in ("train", "test"):
        ledger = common.read_ledger(builder.data_path, split)
        assert {r["id"]: r["reason"] for r in ledger} == expected_rejects[split]
        counts = metadata["counts"][split]
        assert counts["rows_in"] == counts["examples"] + counts["rejects"]
        stored = examples(builder, split)
        listed = [stem for stem, _ in HAND_ROWS if stem.startswith(split) and stem not in expected_rejects[split]]
        assert sorted(e["id"].decode() for e in stored) == listed and counts["examples"] == len(listed)
        for example in stored:
            i = index[example["id"].decode()]
            raw = HAND_ROWS[i][1]
            assert example["rafdb_label"] == raw - 1 and example["label"] == labels.RAFDB_TO_CANONICAL[raw - 1]
            assert example["image"].shape == (100, 100, 3)
            assert (example["has_original"], example["has_annotations"]) == (has_original, has_annotations)
            x1, y1, x2, y2 = hand_box(i)
            width, height = ORIGINAL_SIZE
            box = [y1 / height, x1 / width, y2 / height, x2 / width] if has_original else [0.0] * 4
            np.testing.assert_allclose(example["face_box"], box, atol=1e-6)
            attributes = (example["gender"], example["race"], example["age_group"])
            if has_annotations:
                assert example["landmarks5"][0].tolist() == [50.0 + i, 60.0]
                assert example["landmarks37"][36].tolist() == [66.0, 76.0 + i]
                assert attributes == (i % 3, (i + 1) % 3, i % 5)
            else:
                assert not example["landmarks5"].any() and not example["landmarks37"].any()
                assert attributes == (-1, -1, -1)
    # Read back into the annotation schema (`curate ingest --tfds-dir`): no annotations, null landmarks.
    from curate.tfds_tables import read_tfds

    table = read_tfds(tmp_path / "data", "rafdb").annotations
    assert table.height == sum(metadata["counts"][split]["examples"] for split in ("train", "test"))
    assert table["landmarks"].null_count() == (0 if has_annotations else table.height)


@pytest.mark.parametrize("layout", ["basic-aligned-only", "basic-labels-only", "folder-per-label"])
def test_rafdb_generator_copies_build_the_basic_images(layout, tmp_path):
    """The generator's copies of one draw give the basic build's images and labels, less what they lack."""
    from curate.synth.rafdb import generate_rafdb

    generate_rafdb(tmp_path / "basic", scale=0.002, seed=9, workers=1)
    generate_rafdb(tmp_path / layout, scale=0.002, seed=9, workers=1, layout=layout, labels_csv=False)
    basic = build("rafdb", tmp_path / "basic", tmp_path / "data-basic")
    other = build("rafdb", tmp_path / layout, tmp_path / "data-other")
    assert (basic.info.metadata["layout"], other.info.metadata["layout"]) == ("basic", layout)
    kept = ["id", "image", "rafdb_label", "label"] + (["landmarks5", "landmarks37"] if "aligned" in layout else [])
    for split in ("train", "test"):
        counts = other.info.metadata["counts"][split]
        assert counts["rows_in"] == counts["examples"] == basic.info.metadata["counts"][split]["examples"]
        ours = sorted(examples(other, split), key=lambda e: e["id"])
        theirs = sorted(examples(basic, split), key=lambda e: e["id"])
        assert_same_examples([{k: e[k] for k in kept} for e in ours], [{k: e[k] for k in kept} for e in theirs])
        assert all(not e["has_original"] and not e["face_box"].any() for e in ours)


def test_rafdb_csv_and_folder_disagree_fails_the_build(tmp_path):
    csv = hand_csv()
    csv[1] = "train_00001_aligned.jpg,3"  # the image lies in train/5/
    write_folders_by_hand(tmp_path / "manual", csv_lines={"train": csv})
    with pytest.raises(AssertionError, match="rafdb: cannot read the manual dir") as error:
        build("rafdb", tmp_path / "manual", tmp_path / "data")
    first_line = str(error.value).splitlines()[0]
    assert (
        "train_labels.csv:2: train_00001_aligned.jpg has label 3 in the CSV but lies in "
        "train/5/train_00001_aligned.jpg (label folder 5); fix the CSV or move the image"
    ) in first_line
    assert not (tmp_path / "data" / "rafdb" / "1.1.0").exists()


def test_rafdb_unknown_copy_lists_what_was_looked_for(tmp_path):
    (tmp_path / "manual" / "DATASET" / "train" / "1").mkdir(parents=True)
    with pytest.raises(AssertionError, match="no RAF-DB copy found") as error:
        build("rafdb", tmp_path / "manual", tmp_path / "data")
    first_line, *instructions = str(error.value).splitlines()
    assert first_line.endswith("(folder-per-label); top-level entries found: DATASET")
    text = "\n".join(instructions)
    for copy in ("basic", "basic-aligned-only", "basic-labels-only", "folder-per-label"):
        assert f" {copy} -- " in text
    assert "<manual_dir>/train/<1-7>/train_<digits>_aligned.jpg" in text


def test_rafdb_build_from_cluster_storage(synth_rafdb, memory_gs, tmp_path):
    """A gs:// manual dir (epath, in memory here): same examples, ledger and metadata as local."""
    remote = memory_gs(synth_rafdb, "rafdb")
    local = build("rafdb", synth_rafdb, tmp_path / "local")
    from_remote = build("rafdb", remote, tmp_path / "remote")
    for split in ("train", "test"):
        assert_same_examples(examples(from_remote, split), examples(local, split))
        assert common.read_ledger(from_remote.data_path, split) == common.read_ledger(local.data_path, split)
    assert dict(from_remote.info.metadata) == dict(local.info.metadata)


def test_affectnet_build_from_cluster_storage(affectnet_original, affectnet_plain, memory_gs, tmp_path):
    remote = memory_gs(affectnet_original, "affectnet")
    from_remote = build("affectnet", remote, tmp_path, config="crop224")
    for split in ("train", "validation"):
        assert_same_examples(examples(from_remote, split), examples(affectnet_plain, split))
        assert common.read_ledger(from_remote.data_path, split) == common.read_ledger(affectnet_plain.data_path, split)
    assert dict(from_remote.info.metadata) == dict(affectnet_plain.info.metadata)
