"""train.data (with train.rows, train.images, train.sources): views, hold-out, subsamples, caching,
sampler and augmentation (no model)."""

from __future__ import annotations

import io

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from curate.studies.holdout import class_frequency_holdout  # noqa: E402
from train import data, rows, sources  # noqa: E402
from train import images as image_steps  # noqa: E402
from train.config import MissingDatasetError, TrainConfig, TrainError  # noqa: E402
from train.testing import synthetic_source  # noqa: E402


@pytest.fixture(scope="module")
def affectnet_source() -> sources.InMemorySource:
    return synthetic_source("affectnet", per_class={"train": 12, "validation": 3}, image_size=40, seed=1)


@pytest.fixture(scope="module")
def ferplus_source() -> sources.InMemorySource:
    # Imbalanced train: Happy x3 (balanced sampler and class weights have something to do).
    source = synthetic_source("ferplus", per_class={"train": 8, "validation": 4, "test": 3}, seed=2)
    train = source._splits["train"]
    happy = np.flatnonzero(np.argmax(train["votes"], axis=1) == 1)
    extra = {key: np.concatenate([value, value[happy], value[happy]]) for key, value in train.items()}
    extra["id"] = np.concatenate(
        [train["id"], [f"{i}a" for i in train["id"][happy]], [f"{i}b" for i in train["id"][happy]]]
    )
    source._splits["train"] = extra
    return source


def config(dataset: str, **kwargs) -> TrainConfig:
    base = {"image_size": 32, "batch_size": 16, "epochs": 1, "holdout_fraction": 0.2, "export_tflite": False}
    base.update(kwargs)
    return TrainConfig(dataset=dataset, **base)


def labels_of(batches, soft: bool) -> np.ndarray:
    out = []
    for _, y, _ in batches:
        y = y["label"] if isinstance(y, dict) else y
        out.append(np.argmax(y, axis=-1) if soft else np.asarray(y))
    return np.concatenate(out)


def test_views_hold_out_and_no_leakage(affectnet_source) -> None:
    prepared = data.prepare_data(config("affectnet"), source=affectnet_source, verbose=False)
    scan = data.scan_split(affectnet_source, "train", config("affectnet"))
    held = class_frequency_holdout(list(scan.ids), 0.2, 0)
    assert set(prepared.views["class_frequency"].ids) == set(scan.ids[held & scan.keep])
    assert not set(prepared.train_ids) & set(prepared.views["class_frequency"].ids)
    assert set(prepared.train_ids) | set(prepared.views["class_frequency"].ids) == set(scan.ids)
    assert prepared.views["balanced"].split == "validation" and len(prepared.views["balanced"].ids) == 24
    assert "test" not in prepared.views
    assert prepared.monitor_view == "class_frequency"  # protocol: AffectNet selects on the hold-out
    batch = next(iter(prepared.views["balanced"].dataset))
    assert batch["image"].dtype == tf.uint8 and tuple(batch["image"].shape[1:]) == (32, 32, 3)
    x, y, w = next(iter(prepared.train))
    assert x.dtype == tf.float32 and x.shape[1:] == (32, 32, 3) and float(tf.reduce_max(x)) <= 255.0
    assert y.dtype == tf.int64 and w.shape == y.shape


def test_va_head_batches_are_dicts_with_mask(affectnet_source) -> None:
    prepared = data.prepare_data(
        config("affectnet", policy="keep-all", va_head=True), source=affectnet_source, verbose=False
    )
    _, y, w = next(iter(prepared.train))
    assert set(y) == {"label", "va"} and y["va"].shape[-1] == 2
    assert set(w) == {"label", "va"}
    assert set(np.unique(w["va"].numpy())) <= {0.0, 1.0}


def test_ferplus_views_grey_tiled_balanced_and_test_split(ferplus_source) -> None:
    prepared = data.prepare_data(config("ferplus"), source=ferplus_source, verbose=False)
    balanced = prepared.views["balanced"]
    assert balanced.split == "validation"
    assert np.all(np.bincount(balanced.labels, minlength=8)[np.unique(balanced.labels)] == 4)
    assert prepared.views["test"].split == "test" and len(prepared.views["test"].ids) == 24
    assert prepared.monitor_view == "balanced"
    image = next(iter(balanced.dataset))["image"].numpy()
    assert image.shape[-1] == 3 and np.array_equal(image[..., 0], image[..., 2])


def test_seeds_of_a_recipe_see_the_same_rows(ferplus_source) -> None:
    """--seed changes the training luck, never the rows: balanced subsamples and caps follow the
    hold-out seed, so a comparison scores every seed on the same rows."""
    first = data.prepare_data(config("ferplus", seed=0, max_eval_examples=16), source=ferplus_source, verbose=False)
    second = data.prepare_data(config("ferplus", seed=5, max_eval_examples=16), source=ferplus_source, verbose=False)
    for name in ("balanced", "class_frequency", "test"):
        assert list(first.views[name].ids) == list(second.views[name].ids)
    assert list(first.train_ids) == list(second.train_ids)


def test_balanced_subsample_is_deterministic_and_order_free() -> None:
    ids = np.array([f"id{i}" for i in range(60)], dtype=object)
    labels_ = np.array([0] * 40 + [1] * 15 + [2] * 5)
    mask = rows.balanced_subsample(ids, labels_, np.ones(60, bool), seed=3)
    assert np.bincount(labels_[mask]).tolist() == [5, 5, 5]
    order = np.random.default_rng(0).permutation(60)
    again = rows.balanced_subsample(ids[order], labels_[order], np.ones(60, bool), seed=3)
    assert set(ids[order][again]) == set(ids[mask])
    capped = rows.balanced_subsample(ids, labels_, np.ones(60, bool), seed=3, per_class_cap=2)
    assert np.bincount(labels_[capped]).tolist() == [2, 2, 2]


def test_class_weights_come_from_the_balance_study(ferplus_source) -> None:
    from curate.studies.balance import class_weights

    prepared = data.prepare_data(config("ferplus", class_weight="inverse"), source=ferplus_source, verbose=False)
    expected = class_weights(prepared.train_counts, "inverse")
    assert np.allclose(prepared.class_weights, expected)
    _, y, w = next(iter(prepared.train))
    assert np.allclose(w.numpy(), expected[y.numpy()])


def test_balanced_sampler_evens_out_classes(ferplus_source) -> None:
    natural = data.prepare_data(
        config("ferplus", sampler="natural", augment=False), source=ferplus_source, verbose=False
    )
    balanced = data.prepare_data(
        config("ferplus", sampler="balanced", augment=False), source=ferplus_source, verbose=False
    )
    steps = 40
    natural_counts = np.bincount(labels_of(natural.train.take(steps), False), minlength=8)
    balanced_counts = np.bincount(labels_of(balanced.train.take(steps), False), minlength=8)
    assert natural_counts[1] / natural_counts.sum() > 0.25  # Happy is 3x over-represented
    assert balanced_counts[1] / balanced_counts.sum() < 0.2
    assert balanced_counts.min() > 0


def test_soft_and_sampled_targets(ferplus_source) -> None:
    soft = data.prepare_data(config("ferplus", vote_mode="crossentropy"), source=ferplus_source, verbose=False)
    assert soft.target_kind == "soft"
    _, y, _ = next(iter(soft.train))
    assert y.shape[-1] == 8 and np.allclose(y.numpy().sum(axis=1), 1.0)
    assert (y.numpy().max(axis=1) < 1.0).any()  # real vote distributions
    sampled = data.prepare_data(config("ferplus", vote_mode="probability"), source=ferplus_source, verbose=False)
    _, y, _ = next(iter(sampled.train))
    assert set(np.unique(y.numpy())) <= {0.0, 1.0} and np.allclose(y.numpy().sum(axis=1), 1.0)


def test_training_stream_is_deterministic_given_the_seed(ferplus_source) -> None:
    def first_batches(seed: int) -> list[np.ndarray]:
        prepared = data.prepare_data(
            config("ferplus", seed=seed, sampler="balanced"), source=ferplus_source, verbose=False
        )
        return [x.numpy() for x, _, _ in prepared.train.take(3)]

    a, b, c = first_batches(5), first_batches(5), first_batches(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_file_cache_equals_memory_cache_and_is_cleaned(ferplus_source, tmp_path) -> None:
    memory = data.prepare_data(config("ferplus", cache="memory"), source=ferplus_source, verbose=False)
    on_disk = data.prepare_data(
        config("ferplus", cache="file"), source=ferplus_source, work_dir=tmp_path, verbose=False
    )
    assert on_disk.cache == "file"
    first = [b["image"].numpy() for b in memory.views["balanced"].dataset]
    second = [b["image"].numpy() for b in on_disk.views["balanced"].dataset]
    again = [b["image"].numpy() for b in on_disk.views["balanced"].dataset]  # read back from the cache file
    assert all(np.array_equal(x, y) and np.array_equal(x, z) for x, y, z in zip(first, second, again, strict=True))
    assert any((tmp_path / "cache").iterdir())
    on_disk.cleanup()
    assert not (tmp_path / "cache").exists()


def test_no_cache_above_128_pixels() -> None:
    assert data.resolve_cache(config("rafdb", image_size=160), 10) == "none"
    assert data.resolve_cache(config("rafdb", image_size=96), 10) == "memory"
    assert data.resolve_cache(config("rafdb", image_size=128), 10**6) == "file"


def test_decode_resize_handles_encoded_grey_and_face_boxes() -> None:
    from PIL import Image

    grey = np.tile(np.arange(48, dtype=np.uint8)[None, :], (48, 1))
    buffer = io.BytesIO()
    Image.fromarray(grey, "L").save(buffer, format="PNG")
    out = image_steps.decode_resize(tf.constant(buffer.getvalue()), 24).numpy()
    assert out.shape == (24, 24, 3) and np.array_equal(out[..., 0], out[..., 1])
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = 255
    crop = image_steps.decode_resize(tf.constant(image), 20, face_box=tf.constant([0.4, 0.4, 0.6, 0.6]), margin=0.0).numpy()
    assert crop.mean() > 200 and crop[10, 10, 0] == 255  # the bright square fills the crop


def _eye_landmarks(left, right) -> np.ndarray:
    """68 points whose eye groups (36-41, 42-47) centre on ``left`` and ``right`` (x, y)."""
    points = np.full((68, 2), 50.0, np.float32)
    ring = np.array([[-2, 0], [-1, -1], [1, -1], [2, 0], [1, 1], [-1, 1]], np.float32)
    points[36:42] = np.asarray(left, np.float32) + ring
    points[42:48] = np.asarray(right, np.float32) + ring
    return points


def test_eye_alignment_puts_the_eyes_at_fixed_places() -> None:
    """A tilted pair of bright eyes in a 224 px crop lands on (0.3, 0.35) and (0.7, 0.35) of the
    aligned square, in TF (the trainer) and in NumPy/PIL (train.testing.align_face) alike."""
    from PIL import Image

    from train.testing import align_face

    image = np.zeros((224, 224, 3), np.uint8)
    left, right = np.array([70.0, 120.0]), np.array([150.0, 90.0])  # rolled by about 20 degrees
    for x, y in (left, right):
        image[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = 255
    size = 40
    aligned = image_steps.decode_resize(tf.constant(image), size, landmarks=tf.constant(_eye_landmarks(left, right))).numpy()
    grey = aligned[..., 0].astype(float)
    for (fx, fy), half in ((image_steps.ALIGNED_LEFT_EYE, slice(0, size // 2)), (image_steps.ALIGNED_RIGHT_EYE, slice(size // 2, size))):
        part = np.zeros_like(grey)
        part[:, half] = grey[:, half]
        y, x = np.unravel_index(np.argmax(part), part.shape)
        assert abs(x + 0.5 - fx * size) <= 1.5 and abs(y + 0.5 - fy * size) <= 1.5
    # The same geometry in PIL (the review benchmark's aligned faces).
    pil = align_face(Image.fromarray(image), _eye_landmarks(left, right), size).astype(float)
    assert np.corrcoef(pil.ravel(), grey.ravel())[0, 1] > 0.8
    # Unusable landmarks (both eyes on one point, or missing rows): the plain resize.
    same = _eye_landmarks(left, left)
    plain = image_steps.decode_resize(tf.constant(image), size).numpy()
    assert np.array_equal(image_steps.decode_resize(tf.constant(image), size, landmarks=tf.constant(same)).numpy(), plain)


def test_in_memory_affectnet_is_aligned_by_its_landmarks(affectnet_source) -> None:
    aligned = data.prepare_data(config("affectnet"), source=affectnet_source, verbose=False)
    stored = data.prepare_data(config("affectnet", align="none"), source=affectnet_source, verbose=False)
    first = next(iter(aligned.views["balanced"].dataset))["image"].numpy()
    second = next(iter(stored.views["balanced"].dataset))["image"].numpy()
    assert first.shape == second.shape and not np.array_equal(first, second)
    assert config("affectnet").to_dict()["align"] == "eyes"


def test_align_option_resolves_by_dataset() -> None:
    assert config("affectnet").resolved_align == "eyes"
    assert config("rafdb").resolved_align == "none" and config("affectnet", align="none").resolved_align == "none"
    with pytest.raises(TrainError, match="--align eyes needs 68-point landmarks"):
        config("ferplus", align="eyes")
    with pytest.raises(TrainError, match="--align: unknown value"):
        config("affectnet", align="nose")


def test_augment_keeps_range_and_shape() -> None:
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3)), tf.uint8)
    a = image_steps.augment(image, tf.constant(7, tf.int64))
    b = image_steps.augment(image, tf.constant(7, tf.int64))
    assert a.shape == (32, 32, 3) and float(tf.reduce_min(a)) >= 0 and float(tf.reduce_max(a)) <= 255
    assert np.array_equal(a.numpy(), b.numpy())


def test_policy_without_rows_in_the_dataset_is_a_clear_error(tmp_path) -> None:
    policy = tmp_path / "contempt-only.toml"
    policy.write_text(
        'name = "contempt-only"\nclasses = ["Contempt"]\nmapping = { Contempt = "Contempt" }\n'
        'drop = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "None", "Uncertain", "No-Face"]\n'
    )
    source = synthetic_source("rafdb", per_class=2, image_size=32)
    with pytest.raises(TrainError, match="leaves no training rows in rafdb"):
        data.prepare_data(config("rafdb", policy=str(policy)), source=source, verbose=False)


def test_missing_tfds_dataset_names_the_build_command(tmp_path) -> None:
    with pytest.raises(MissingDatasetError) as error:
        sources.TFDSSource("rafdb", data_dir=str(tmp_path))
    message = str(error.value)
    assert f"tfds build rafdb --imports tfds_builders --data_dir {tmp_path} --manual_dir" in message
    assert isinstance(error.value, ValueError)


def test_exclude_list_drops_ids_from_training_and_holdout(tmp_path) -> None:
    """``--exclude``: listed ids never reach a training batch nor the hold-out; views keep theirs."""
    import polars as pl

    from train import loop

    source = synthetic_source("affectnet", per_class={"train": 6, "validation": 2}, image_size=32, seed=5)
    train = source._splits["train"]
    count = len(train["id"])
    # every training image is constant, its value the row index: batches name their rows
    train["image"] = np.broadcast_to(np.arange(count, dtype=np.uint8)[:, None, None, None], train["image"].shape).copy()
    index_of = {str(key): i for i, key in enumerate(train["id"])}
    plain_config = config("affectnet", augment=False, sampler="natural")
    plain = data.prepare_data(plain_config, source=source, verbose=False)
    listed = [*map(str, plain.train_ids[:5]), str(plain.views["class_frequency"].ids[0])]
    validation_id = str(source._splits["validation"]["id"][0])
    other_dataset_id = str(plain.train_ids[5])
    path = tmp_path / "exclusions.parquet"
    pl.DataFrame(
        {
            "dataset": ["affectnet"] * (len(listed) + 1) + ["rafdb"],
            "id": [*listed, validation_id, other_dataset_id],
        }
    ).write_parquet(path)

    excluded_config = config("affectnet", augment=False, sampler="natural", exclude=str(path))
    prepared = data.prepare_data(excluded_config, source=source, verbose=False)
    assert not set(listed) & set(prepared.train_ids)
    assert not set(listed) & set(prepared.views["class_frequency"].ids)
    assert other_dataset_id in set(prepared.train_ids)  # another dataset's row of the list
    assert validation_id in set(prepared.views["balanced"].ids)  # official views are not filtered
    assert prepared.train_count == plain.train_count - 5
    assert prepared.describe()["exclusions"]["train_rows_excluded"] == len(listed)
    seen: set[int] = set()
    for images, _, _ in prepared.train.take(prepared.steps_per_epoch + 1):
        seen |= set(np.asarray(images)[:, 0, 0, 0].astype(int).tolist())
    assert not seen & {index_of[key] for key in listed}
    assert seen == {index_of[str(key)] for key in prepared.train_ids}
    # the tf.data filter itself (StaticHashTable over the ids), whatever the row selection says
    rows = data._rows_dataset(
        source, "train", train["id"], excluded_config, face_crop=False, exclude_ids=np.array(listed, dtype=object)
    )
    kept = {row["id"].decode() for row in rows.as_numpy_iterator()}
    assert kept and not kept & set(listed)

    resolved = excluded_config.to_dict()
    assert resolved["exclude_count"] == len(listed) + 1
    assert len(resolved["exclude_sha256"]) == 64
    assert "exclude_sha256" not in plain_config.to_dict()
    info = source.describe()
    assert loop.data_fingerprint(excluded_config, info) != loop.data_fingerprint(plain_config, info)
    with pytest.raises(TrainError, match="--exclude"):
        config("affectnet", exclude=str(tmp_path / "missing.parquet"))


def test_exclude_list_errors_are_train_errors(tmp_path) -> None:
    """``--exclude`` reads through ``curate.exclusions``; each bad file is one ``TrainError`` naming it."""
    import polars as pl

    missing = tmp_path / "missing.parquet"
    with pytest.raises(TrainError, match=f"--exclude {missing}: no such file"):
        config("affectnet", exclude=str(missing))
    text = tmp_path / "list.parquet"
    text.write_text("id\n1\n")
    with pytest.raises(TrainError, match="--exclude .*list.parquet: not a readable Parquet exclusion list"):
        config("affectnet", exclude=str(text))
    pl.DataFrame({"x": [1]}).write_parquet(text)
    with pytest.raises(TrainError, match=r"no 'id' column \(columns: x\)"):
        config("affectnet", exclude=str(text))
    pl.DataFrame({"id": ["b", "a", "b", None]}).write_parquet(text)
    assert config("affectnet", exclude=str(text)).exclusions()[0] == ("b", "a")
