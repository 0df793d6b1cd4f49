"""Compact Keras classifiers: a MobileNet backbone, a softmax head and an optional V/A head.

``small_cnn`` replaces the MobileNet by a plain CNN (:func:`build_small_cnn`: four stages of
3x3 convolution, batch norm and ReLU, 16-32-64-128 channels times ``alpha``, max-pooled
between stages, global-average pooled), about 0.1 M parameters: it learns small inputs
(32-64 px, aligned faces) from scratch in a few epochs and trains ~2,000 img/s at 48 px on
two CPU cores. ImageNet weight files do not exist for it (a previous run's ``model.keras``
does).

The model takes float32 images in [0, 255] (``image_size`` square, RGB) and scales them
itself, so exports carry the preprocessing. Outputs are logits named ``label`` and, with
the valence/arousal head, a dict ``{"label": logits, "va": (valence, arousal) in [-1, 1]}``.

Weights (``--weights``):

* ``none`` -- random initialisation (no network access is assumed);
* a Keras-applications ImageNet file for the backbone without top (``.h5`` such as
  ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5`` or
  ``weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5``, or a ``.weights.h5`` saved
  from a backbone of the same architecture and ``alpha``);
* a previous run's ``model.keras``: its backbone (and its head when the classes match).

A file that does not fit raises :class:`train.config.WeightsError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from train.config import MODELS, TrainConfig, TrainError, WeightsError

BACKBONE_NAME = "backbone"
#: BatchNormalization momentum of the backbone (see :func:`set_batchnorm_momentum`).
BATCHNORM_MOMENTUM = 0.9


def _applications_constructor(model: str) -> Any:
    import keras

    return {
        "mobilenet_v2": keras.applications.MobileNetV2,
        "mobilenet_v3_small": keras.applications.MobileNetV3Small,
        "mobilenet_v3_large": keras.applications.MobileNetV3Large,
    }[model]


def build_backbone(model: str, *, alpha: float, image_size: int) -> Any:
    """A randomly initialised MobileNet without top, global-average pooled, named ``backbone``.

    MobileNetV2 expects inputs in [-1, 1] (the caller rescales); MobileNetV3 rescales
    [0, 255] itself (``include_preprocessing=True``).
    """
    if model not in MODELS:
        raise TrainError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if model == "small_cnn":
        return build_small_cnn(alpha=alpha, image_size=image_size)
    kwargs: dict[str, Any] = {
        "input_shape": (image_size, image_size, 3),
        "alpha": alpha,
        "include_top": False,
        "weights": None,
        "pooling": "avg",
        "name": BACKBONE_NAME,
    }
    if model != "mobilenet_v2":
        kwargs["include_preprocessing"] = True
    try:
        backbone = _applications_constructor(model)(**kwargs)
    except ValueError as error:
        raise TrainError(f"cannot build {model} (alpha {alpha}, {image_size} px): {error}") from None
    set_batchnorm_momentum(backbone, BATCHNORM_MOMENTUM)
    return backbone


def build_small_cnn(*, alpha: float = 1.0, image_size: int = 48) -> Any:
    """The ``small_cnn`` backbone: inputs in [0, 1] (the caller rescales), pooled features out."""
    import keras

    widths = [max(8, round(width * alpha)) for width in (16, 32, 64, 128)]
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for stage, width in enumerate(widths):
        if stage:
            x = keras.layers.MaxPooling2D(name=f"pool{stage}")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{stage + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=BATCHNORM_MOMENTUM, name=f"bn{stage + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{stage + 1}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, outputs, name=BACKBONE_NAME)


#: ITU-R BT.601 luma weights (what ``tf.image.rgb_to_grayscale`` and PIL's "L" use).
LUMA = (0.299, 0.587, 0.114)


def greyscale_layer() -> Any:
    """A frozen 1x1 convolution that replaces each RGB pixel by its luma in all three channels
    (``--colour grey``). Being a plain layer of the model, it travels into ``model.keras`` and
    the TFLite exports, so every user of the model feeds RGB as before."""
    import keras
    import numpy as np

    layer = keras.layers.Conv2D(3, 1, use_bias=False, trainable=False, name="greyscale")
    layer.build((None, None, None, 3))
    layer.set_weights([np.tile(np.asarray(LUMA, np.float32)[:, None], (1, 3))[None, None]])
    return layer


def set_batchnorm_momentum(model: Any, momentum: float) -> None:
    """Set the moving-average momentum of every BatchNormalization layer in ``model``.

    Keras' MobileNetV3 uses 0.999, which needs thousands of steps before the inference-mode
    statistics fit the data: short runs then predict one class for everything. 0.9 lets
    the statistics follow within an epoch or two.
    """
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def build_model(config: TrainConfig, num_classes: int) -> Any:
    """The functional classifier of a run, with ``config.weights`` loaded."""
    import keras

    backbone = build_backbone(config.model, alpha=config.alpha, image_size=config.image_size)
    inputs = keras.Input((config.image_size, config.image_size, 3), name="image")
    x = inputs
    if config.colour == "grey":
        x = greyscale_layer()(x)
    if config.model == "mobilenet_v2":
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(x)
    elif config.model == "small_cnn":
        x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(x)
    features = backbone(x)
    if config.dropout > 0:
        features = keras.layers.Dropout(config.dropout, name="dropout")(features)
    logits = keras.layers.Dense(num_classes, name="label")(features)
    outputs: Any = logits
    if config.va_head:
        va = keras.layers.Dense(2, activation="tanh", name="va")(features)
        outputs = {"label": logits, "va": va}
    model = keras.Model(inputs, outputs, name=f"{config.model}_{num_classes}cls")
    if config.weights == "imagenet":
        load_weights(model, imagenet_weights(config.model, alpha=config.alpha, image_size=config.image_size))
    elif config.weights and config.weights != "none":
        load_weights(model, config.weights)
    return model


def imagenet_weights_file(model: str, *, alpha: float, image_size: int) -> tuple[str, str, str | None]:
    """``(file name, URL, expected hash)`` of the Keras-applications ImageNet weights without
    top that ``keras.applications`` would fetch for this backbone (same names and rules as
    Keras: MobileNetV3 files are the 224 px ones; MobileNetV2 has 96-224 px files, else 224)."""
    if model == "mobilenet_v2":
        from keras.src.applications.mobilenet_v2 import BASE_WEIGHT_PATH

        rows = image_size if image_size in (96, 128, 160, 192, 224) else 224
        name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}_no_top.h5"
        return name, BASE_WEIGHT_PATH + name, None
    if model in ("mobilenet_v3_small", "mobilenet_v3_large"):
        from keras.src.applications.mobilenet_v3 import BASE_WEIGHT_PATH, WEIGHTS_HASHES

        key = f"{model.rsplit('_', 1)[1]}_224_{float(alpha)}_float"
        if key not in WEIGHTS_HASHES:
            raise WeightsError(f"--weights imagenet: Keras has no ImageNet weights for {model} at alpha {alpha}")
        name = f"weights_mobilenet_v3_{key}_no_top_v2.h5"
        return name, BASE_WEIGHT_PATH + name, WEIGHTS_HASHES[key][1]
    raise WeightsError(f"--weights imagenet: Keras has no ImageNet weights for {model}")


def imagenet_weights(model: str, *, alpha: float, image_size: int) -> Path:
    """The ImageNet weights file of this backbone, through Keras' own cache and download.

    Keras keeps application weights in ``$KERAS_HOME/models`` (default ``~/.keras/models``).
    A file already there is used after its hash is checked against Keras' published one
    (where Keras has one); otherwise ``keras.utils.get_file`` downloads it there, as
    ``keras.applications`` would. Offline with nothing cached: :class:`WeightsError` naming
    the file, the folder to put it in and the URL it comes from.
    """
    import keras
    from keras.src.backend.config import keras_home
    from keras.src.utils.file_utils import validate_file

    name, url, file_hash = imagenet_weights_file(model, alpha=alpha, image_size=image_size)
    folder = Path(keras_home()).expanduser() / "models"
    cached = folder / name
    if cached.is_file():
        if file_hash and not validate_file(str(cached), file_hash):
            raise WeightsError(
                f"--weights imagenet: {cached} is not Keras' published file (hash differs); delete it to "
                f"download it again, or replace it with {url}"
            )
        return cached
    try:
        return Path(keras.utils.get_file(name, url, cache_subdir="models", file_hash=file_hash))
    except Exception as error:  # no network, proxy, HTTP error: all end the same way
        raise WeightsError(
            f"--weights imagenet: {name} is not in {folder} and could not be downloaded "
            f"({_first_line(error)}); put the file from {url} in {folder}"
        ) from None


def load_weights(model: Any, path: str | Path) -> None:
    """Load ``path`` into ``model``'s backbone (or whole model); :class:`WeightsError` if it does not fit."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    backbone = model.get_layer(BACKBONE_NAME)
    if path.suffix == ".keras":
        _load_from_run_model(model, backbone, path)
        return
    if path.suffix not in (".h5", ".hdf5"):
        raise WeightsError(f"weights file {str(path)!r}: expected .h5, .weights.h5 or .keras")
    import warnings

    problem = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            backbone.load_weights(str(path))
        except Exception as error:  # Keras raises ValueError / KeyError / OSError variants
            problem = _first_line(error)
    partial = [
        str(w.message) for w in caught if "freshly-initialized" in str(w.message) or "Skipping" in str(w.message)
    ]
    if problem is None and partial:  # a silent partial load is as wrong as a failed one
        problem = partial[0].splitlines()[0]
    if problem is not None:
        raise WeightsError(
            f"weights file {str(path)!r} does not fit the {backbone.count_params():,}-parameter backbone "
            f"of this model (architecture, alpha or input channels differ): {problem}"
        )


def _load_from_run_model(model: Any, backbone: Any, path: Path) -> None:
    import keras

    try:
        previous = keras.models.load_model(str(path), compile=False)
    except Exception as error:
        raise WeightsError(f"cannot read model file {str(path)!r}: {_first_line(error)}") from None
    try:
        old_backbone = previous.get_layer(BACKBONE_NAME)
    except ValueError:
        raise WeightsError(f"{str(path)!r} is not a model of this trainer (no {BACKBONE_NAME!r} layer)") from None
    new_shapes = [tuple(w.shape) for w in backbone.weights]
    old_shapes = [tuple(w.shape) for w in old_backbone.weights]
    if new_shapes != old_shapes:
        raise WeightsError(
            f"weights of {str(path)!r} do not fit: its backbone has {old_backbone.count_params():,} parameters, "
            f"this one {backbone.count_params():,} (model, alpha or image size differ)"
        )
    backbone.set_weights(old_backbone.get_weights())
    # Heads too, where their shapes match (same policy and head layout).
    for name in ("label", "va"):
        try:
            new_layer, old_layer = model.get_layer(name), previous.get_layer(name)
        except ValueError:
            continue
        if [w.shape for w in new_layer.weights] == [w.shape for w in old_layer.weights]:
            new_layer.set_weights(old_layer.get_weights())


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def learning_rate_schedule(
    learning_rate: float, *, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0
) -> Any:
    """Linear warm-up from 0 over ``warmup_epochs`` (at most half the steps), then cosine decay
    to 5% of ``learning_rate`` over the remaining steps."""
    import keras

    total = max(1, epochs * steps_per_epoch)
    warmup = min(int(round(warmup_epochs * steps_per_epoch)), total // 2)
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total, alpha=0.05)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, alpha=0.05, warmup_target=learning_rate, warmup_steps=warmup
    )


def compile_model(
    model: Any,
    config: TrainConfig,
    *,
    target_kind: str,
    steps_per_epoch: int,
    epochs: int | None = None,
    learning_rate: float | None = None,
) -> None:
    """Adam with warm-up and cosine decay (:func:`learning_rate_schedule`; ``epochs`` and
    ``learning_rate`` default to the config's, a phase of ``--freeze-epochs`` gives its own)
    and, with ``config.ema``, a moving average of the weights;
    cross-entropy on logits (sparse for hard targets); masked MSE for V/A (the pipeline's
    sample weight ``va_mask`` zeroes rows without V/A)."""
    import keras

    schedule = learning_rate_schedule(
        config.learning_rate if learning_rate is None else learning_rate,
        steps_per_epoch=steps_per_epoch,
        epochs=config.epochs if epochs is None else epochs,
        warmup_epochs=config.warmup_epochs,
    )
    # An exponential moving average of the weights (``--ema``), evaluated and kept instead of
    # the raw weights (train.fit swaps it in at each epoch's end): it smooths the
    # epoch-to-epoch jumps that made the kept epoch, and the seeds, differ by several points.
    optimizer = keras.optimizers.Adam(schedule, use_ema=config.ema > 0, ema_momentum=config.ema or 0.99)
    if target_kind == "soft":
        label_loss: Any = keras.losses.CategoricalCrossentropy(from_logits=True)
        accuracy: Any = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        label_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if config.va_head:
        model.compile(
            optimizer=optimizer,
            loss={"label": label_loss, "va": keras.losses.MeanSquaredError()},
            loss_weights={"label": 1.0, "va": config.va_loss_weight},
            metrics={"label": [accuracy]},
            jit_compile=False,
        )
    else:
        model.compile(optimizer=optimizer, loss=label_loss, metrics=[accuracy], jit_compile=False)
    # Create the optimizer's slots eagerly: created while tracing the first train step, the
    # ~300 Adam variables cost 10-20 s on a small CPU; here they cost a fraction of a second.
    model.optimizer.build(model.trainable_variables)
