"""train.models: backbones, heads and weights files (no training)."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from train import models  # noqa: E402
from train.config import TrainConfig, TrainError, WeightsError  # noqa: E402


def config(**kwargs) -> TrainConfig:
    base = {"dataset": "affectnet", "image_size": 32, "alpha": 0.75, "model": "mobilenet_v3_small"}
    base.update(kwargs)
    return TrainConfig(**base)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("mobilenet_v2", marks=pytest.mark.slow),
        "mobilenet_v3_small",
        pytest.param("mobilenet_v3_large", marks=pytest.mark.slow),
        "small_cnn",
    ],
)
def test_models_take_0_255_images_and_give_logits(name: str) -> None:
    model = models.build_model(config(model=name, alpha=0.35 if name == "mobilenet_v2" else 0.75), 7)
    out = model.predict_on_batch(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32"))
    assert out.shape == (2, 7)
    assert model.get_layer("backbone").count_params() > 0


def test_va_head_is_a_dict_output_in_minus_one_one() -> None:
    model = models.build_model(config(va_head=True), 8)
    out = model.predict_on_batch(np.zeros((3, 32, 32, 3), "float32"))
    assert set(out) == {"label", "va"} and out["va"].shape == (3, 2)
    assert np.all(np.abs(out["va"]) <= 1.0)


def test_backbone_weights_file_round_trip_and_wrong_shape(tmp_path) -> None:
    source = models.build_model(config(), 7)
    path = tmp_path / "backbone.weights.h5"
    source.get_layer("backbone").save_weights(str(path))
    loaded = models.build_model(config(weights=str(path)), 5)
    for a, b in zip(
        source.get_layer("backbone").get_weights(), loaded.get_layer("backbone").get_weights(), strict=True
    ):
        assert np.array_equal(a, b)
    with pytest.raises(WeightsError, match="does not fit"):
        models.build_model(config(weights=str(path), alpha=1.0), 7)


@pytest.mark.slow
def test_weights_of_another_architecture(tmp_path) -> None:
    path = tmp_path / "backbone.weights.h5"
    models.build_model(config(), 7).get_layer("backbone").save_weights(str(path))
    with pytest.raises(WeightsError, match="does not fit"):
        models.build_model(config(weights=str(path), model="mobilenet_v2", alpha=0.35), 7)


def test_legacy_h5_like_keras_applications_files(tmp_path) -> None:
    h5py = pytest.importorskip("h5py")
    from keras.src.legacy.saving import legacy_h5_format

    source = models.build_model(config(), 7).get_layer("backbone")
    path = tmp_path / "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5"
    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    loaded = models.build_model(config(weights=str(path)), 7).get_layer("backbone")
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded.get_weights(), strict=True))
    with pytest.raises(WeightsError):
        models.build_model(config(weights=str(path), alpha=1.0), 7)


def test_previous_run_model_keras(tmp_path) -> None:
    previous = models.build_model(config(), 7)
    path = tmp_path / "model.keras"
    previous.save(path)
    same = models.build_model(config(weights=str(path)), 7)
    assert np.array_equal(same.get_layer("label").get_weights()[0], previous.get_layer("label").get_weights()[0])
    other_classes = models.build_model(config(weights=str(path)), 5)  # backbone only
    assert np.array_equal(
        other_classes.get_layer("backbone").get_weights()[0], previous.get_layer("backbone").get_weights()[0]
    )
    with pytest.raises(WeightsError, match="do not fit"):
        models.build_model(config(weights=str(path), alpha=1.0), 7)


def test_bad_weights_arguments(tmp_path) -> None:
    with pytest.raises(WeightsError, match="no such file"):
        config(weights=str(tmp_path / "missing.h5"))
    text = tmp_path / "weights.txt"
    text.write_text("nope")
    with pytest.raises(WeightsError, match="expected .h5"):
        models.build_model(config(weights=str(text)), 7)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError):
        models.build_model(config(weights=str(junk)), 7)


def test_unknown_model_and_small_images() -> None:
    with pytest.raises(TrainError, match="--model: unknown value 'resnet'"):
        config(model="resnet")
    with pytest.raises(TrainError, match=r"--image-size: value 16 is out of range; allowed an integer in \[32, 512\]"):
        config(image_size=16)


def test_batchnorm_momentum_is_lowered_for_short_runs() -> None:
    backbone = models.build_backbone("mobilenet_v3_small", alpha=0.75, image_size=32)
    momenta = {layer.momentum for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {models.BATCHNORM_MOMENTUM}


def test_imagenet_weights_through_keras_cache(tmp_path, monkeypatch) -> None:
    """--weights imagenet: Keras' file name in Keras' cache folder; offline and not cached, one line
    naming the file and the folder; nothing is downloaded here (get_file is replaced)."""
    h5py = pytest.importorskip("h5py")
    import hashlib

    import keras.src.backend.config as keras_config
    from keras.src.applications import mobilenet_v3
    from keras.src.legacy.saving import legacy_h5_format

    home = tmp_path / "keras-home"
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    downloads = []

    def offline(name, origin, **kwargs):
        downloads.append(origin)
        raise OSError(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    name = "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5"
    with pytest.raises(WeightsError) as missing:
        models.build_model(config(weights="imagenet"), 7)
    message = str(missing.value)
    assert "\n" not in message and name in message and str(home / "models") in message
    assert downloads == [mobilenet_v3.BASE_WEIGHT_PATH + name]

    # A file of the right architecture in the cache: Keras' hash check refuses a file that is not
    # the published one ...
    source = models.build_model(config(), 7).get_layer("backbone")
    (home / "models").mkdir(parents=True)
    with h5py.File(home / "models" / name, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    with pytest.raises(WeightsError, match="hash differs"):
        models.build_model(config(weights="imagenet"), 7)
    # ... and loads it when it is (the expected hash made this file's, as for a real download).
    md5 = hashlib.md5((home / "models" / name).read_bytes()).hexdigest()
    monkeypatch.setitem(mobilenet_v3.WEIGHTS_HASHES, "small_224_0.75_float", ("unused", md5))
    loaded = models.build_model(config(weights="imagenet"), 7).get_layer("backbone")
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded.get_weights(), strict=True))
    assert len(downloads) == 1


def test_imagenet_weights_bad_arguments() -> None:
    with pytest.raises(WeightsError, match="no ImageNet weights for small_cnn"):
        config(model="small_cnn", weights="imagenet")
    with pytest.raises(WeightsError, match="exist for --alpha 0.75, 1.0, not 0.5"):
        config(weights="imagenet", alpha=0.5)
    with pytest.raises(TrainError, match="--freeze-epochs must be 0 or fewer than --epochs"):
        config(freeze_epochs=10, epochs=10)


def test_grey_models_see_luma_and_export_with_rgb_inputs() -> None:
    """--colour grey: a frozen layer inside the model turns RGB into luma, so a colour image and
    its grey version give the same logits, and the model still takes 3 channels."""
    import tensorflow as tf

    model = models.build_model(config(model="small_cnn", colour="grey"), 7)
    layer = model.get_layer("greyscale")
    assert not layer.trainable and model.input_shape[-1] == 3
    rgb = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    grey = np.tile(tf.image.rgb_to_grayscale(rgb).numpy(), (1, 1, 1, 3))
    assert np.allclose(model.predict_on_batch(rgb), model.predict_on_batch(grey), atol=1e-3)
    with pytest.raises(TrainError, match="--colour: unknown value"):
        config(colour="sepia")


def test_epoch_selector_looks_only_at_the_second_half_of_the_budget() -> None:
    """A lucky early epoch (0.9 at epoch 1) is never kept; patience counts from epoch 5 of 10."""
    import types

    from train import fit

    config_ = config(epochs=10, patience=2)
    data = types.SimpleNamespace(views={"class_frequency": None}, monitor_view="class_frequency", class_names=("a",),
                                 steps_per_epoch=1)  # fmt: skip
    callbacks = fit.make_callbacks(config_, data, verbose=0)
    selector = next(c for c in callbacks if type(c).__name__ == "EpochSelector")
    model = models.build_model(config(model="small_cnn"), 2)
    selector.set_model(model)
    assert fit.selection_start(10) == 5 and fit.selection_start(1) == 1 and fit.selection_start(3) == 2
    scores = [0.9, 0.1, 0.2, 0.2, 0.3, 0.4, 0.35, 0.2, 0.5, 0.6]
    kept = None
    for epoch, score in enumerate(scores):
        model.stop_training = False
        if epoch == 5:
            kept = [w.copy() for w in model.get_weights()]
        selector.on_epoch_end(epoch, {"val_balanced_accuracy": score})
        if model.stop_training:
            break
    assert (selector.best_epoch, selector.best_score, epoch + 1) == (6, 0.4, 8)
    assert selector.stopped and all(np.array_equal(a, b) for a, b in zip(kept, selector.best_weights, strict=True))


def test_patience_zero_runs_every_epoch_and_keeps_the_best() -> None:
    """--patience 0: no early stopping; the best epoch of the second half is still the one kept."""
    import types

    from train import fit

    with pytest.raises(TrainError, match=r"--patience: value -1 is out of range; allowed an integer in \[0, 10000\]"):
        config(patience=-1)
    data = types.SimpleNamespace(views={"class_frequency": None}, monitor_view="class_frequency", class_names=("a",),
                                 steps_per_epoch=1)  # fmt: skip
    callbacks = fit.make_callbacks(config(epochs=10, patience=0), data, verbose=0)
    selector = next(c for c in callbacks if type(c).__name__ == "EpochSelector")
    model = models.build_model(config(model="small_cnn"), 2)
    selector.set_model(model)
    model.stop_training = False
    for epoch, score in enumerate([0.1, 0.2, 0.3, 0.4, 0.9, 0.1, 0.1, 0.1, 0.1, 0.2]):
        selector.on_epoch_end(epoch, {"val_balanced_accuracy": score})
    assert not model.stop_training and not selector.stopped and (selector.best_epoch, selector.best_score) == (5, 0.9)


def test_two_phase_fine_tuning_keeps_batchnorm_statistics_and_trains_the_backbone_last() -> None:
    """--freeze-epochs 1 of 4: phase 1 trains the heads on a frozen backbone, phase 2 every layer
    but batch norm -- so the kept epoch (from the second half: phase 2) has moved backbone
    kernels and the initial batch-norm statistics."""
    from train import data as data_module
    from train import fit
    from train.testing import synthetic_source

    source = synthetic_source("affectnet", per_class={"train": 6, "validation": 2}, image_size=32, seed=3)
    config_ = config(model="small_cnn", epochs=4, freeze_epochs=1, batch_size=16, holdout_fraction=0.2,
                     export_tflite=False, patience=5)  # fmt: skip
    prepared = data_module.prepare_data(config_, source=source, verbose=False)
    model = models.build_model(config_, len(prepared.class_names))
    backbone = model.get_layer("backbone")
    statistics = {v.path: v.numpy().copy() for v in backbone.weights if "moving_" in v.path}
    kernels = [v.numpy().copy() for v in backbone.trainable_weights if "kernel" in v.path]
    head = model.get_layer("label").get_weights()[0].copy()
    fitted = fit.fit_model(model, config_, prepared, verbose=0)
    assert fitted.epochs_run == 4 and fitted.best_epoch >= 2 and backbone.trainable
    after = {v.path: v.numpy() for v in backbone.weights if "moving_" in v.path}
    assert statistics and after.keys() == statistics.keys()
    assert all(np.array_equal(statistics[path], after[path]) for path in statistics)
    moved = [v.numpy() for v in backbone.weights if "kernel" in v.path]
    assert any(not np.array_equal(a, b) for a, b in zip(kernels, moved, strict=True))
    assert not np.array_equal(head, model.get_layer("label").get_weights()[0])
