"""Compile, fit and select an epoch: the step a run's model and its cross-fitted fold models share.

:func:`fit_model` compiles the model (``train.models.compile_model``), fits it on a training
stream with the run's callbacks and leaves the weights of the selected epoch in the model:

* **Epoch timer, view monitor, summary line.** Each epoch ends with the monitored view's
  balanced accuracy, accuracy, macro F1 and loss in the logs as ``val_*`` (and V/A RMSE/CCC
  with the V/A head), and one printed line.
* **Epoch selection** (``EpochSelector``). The monitored view's balanced accuracy picks
  the epoch whose weights the run keeps, and early stopping ends a run whose score has not
  improved for ``patience`` epochs (0: never) -- but only from :func:`selection_start` on (the
  second half of the budget). Early epochs of a run from random initialisation sit near chance and
  jump around; a selection hold-out of a hundred rows has a standard error of several
  points, so an early lucky epoch used to win, and patience used to run out before the model
  left chance. The best weights are kept in memory and restored at the end.
* **Weight averaging** (``--ema``, default 0.99): the optimizer keeps an exponential moving
  average of the weights; at each epoch's end it is swapped in, so the monitored view scores
  it and the epoch selector keeps it.
* **Two phases** (``--freeze-epochs N``): the first N epochs train the heads with the
  backbone frozen (its batch norm in inference mode) at ``--learning-rate``; then every layer
  but batch norm trains at ``--learning-rate`` x :data:`FINE_TUNE_RATE_FACTOR`, with its own
  cosine schedule (the Keras fine-tuning recipe for pretrained backbones).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from train import evaluate, models
from train.config import TrainConfig

#: Learning rate of the second phase (all layers) relative to ``--learning-rate``.
FINE_TUNE_RATE_FACTOR = 0.1


def selection_start(epochs: int) -> int:
    """The first epoch (1-based) that may be selected or end the run: the second half of the
    budget (epoch 1 for a one-epoch run)."""
    return max(1, math.ceil(epochs / 2))


@dataclasses.dataclass
class FitResult:
    """What a fit produced: per-epoch logs (both phases), epochs run, the selected epoch
    (1-based), its score, the first selectable epoch and the fit's seconds."""

    history: dict[str, list[float]]
    epochs_run: int
    best_epoch: int
    best_score: float | None
    select_from: int
    seconds: float


def make_callbacks(
    config: TrainConfig,
    data: Any,
    *,
    verbose: int,
    steps_per_epoch: int | None = None,
    prefix: str = "",
) -> list[Any]:
    """Epoch timer, monitored-view metrics, the epoch selector and the epoch summary line
    (``prefix`` first). ``steps_per_epoch`` defaults to the run's."""
    import keras

    monitor = data.views[data.monitor_view]
    class_names = data.class_names
    steps = steps_per_epoch or data.steps_per_epoch
    va_head = config.va_head

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of the training part of each epoch (before the evaluation callbacks)."""

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds = time.perf_counter() - self.start
            if logs is not None:
                logs["train_seconds"] = seconds
                logs["train_images_per_second"] = steps * config.batch_size / max(seconds, 1e-9)

    class ViewMonitor(keras.callbacks.Callback):
        """Balanced accuracy, accuracy, macro F1 (and loss) of the monitored view, as ``val_*``."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            predictions = evaluate.predict_view(self.model, monitor, va_head=va_head)
            metrics = evaluate.view_metrics(predictions, class_names)
            if logs is None:
                return
            probabilities = np.clip(
                predictions["probabilities"][np.arange(len(predictions["label"])), predictions["label"]], 1e-7, 1
            )
            logs["val_loss"] = float(-np.log(probabilities).mean())
            logs["val_accuracy"] = metrics["accuracy"]
            logs["val_balanced_accuracy"] = metrics["balanced_accuracy"]
            logs["val_macro_f1"] = metrics["macro_f1"]
            if "va" in metrics:
                for key in ("valence", "arousal"):
                    logs[f"val_{key}_rmse"] = metrics["va"][key]["rmse"]
                    logs[f"val_{key}_ccc"] = metrics["va"][key]["ccc"]

    class EpochSummary(keras.callbacks.Callback):
        """One line per epoch, after Keras' progress bar."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            accuracy = logs.get("accuracy", logs.get("label_accuracy", float("nan")))
            line = prefix + (
                f"epoch {epoch + 1}/{config.epochs}: loss {logs.get('loss', float('nan')):.4f} "
                f"acc {accuracy:.3f} | {data.monitor_view}: bal-acc {logs.get('val_balanced_accuracy', float('nan')):.3f} "
                f"acc {logs.get('val_accuracy', float('nan')):.3f} macro-F1 {logs.get('val_macro_f1', float('nan')):.3f}"
            )
            if "val_valence_rmse" in logs:
                line += (
                    f" | V rmse {logs['val_valence_rmse']:.3f} ccc {logs['val_valence_ccc']:.3f}"
                    f" A rmse {logs['val_arousal_rmse']:.3f} ccc {logs['val_arousal_ccc']:.3f}"
                )
            line += f" | {logs.get('train_seconds', 0):.1f} s, {logs.get('train_images_per_second', 0):.0f} img/s"
            print(line, flush=True)

    class EpochSelector(keras.callbacks.Callback):
        """Keeps the weights of the epoch with the best ``val_balanced_accuracy`` from
        :func:`selection_start` on and stops after ``patience`` epochs without improvement
        there. Its state lives across ``fit`` calls (the two phases of ``--freeze-epochs``)."""

        def __init__(self) -> None:
            super().__init__()
            self.select_from = selection_start(config.epochs)
            self.best_score: float | None = None
            self.best_epoch = 0  # 1-based; 0 = none selected yet
            self.best_weights: list[np.ndarray] | None = None
            self.stopped = False

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            score = (logs or {}).get("val_balanced_accuracy")
            if epoch + 1 < self.select_from or score is None:
                return
            if self.best_score is None or score > self.best_score:
                self.best_score, self.best_epoch = float(score), epoch + 1
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
            elif config.patience and epoch + 1 - self.best_epoch >= config.patience:
                self.stopped = True
                self.model.stop_training = True

    callbacks = [EpochTimer(), ViewMonitor(), EpochSelector()]
    if config.ema:
        # First, so the view monitor and the selector see (and keep) the averaged weights; the
        # raw ones are swapped back at the next epoch's start.
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if verbose:
        callbacks.append(EpochSummary())
    return callbacks


def _frozen_batchnorm(model: Any, frozen: bool) -> None:
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = not frozen


def fit_model(
    model: Any,
    config: TrainConfig,
    data: Any,
    *,
    stream: Any = None,
    steps_per_epoch: int | None = None,
    verbose: int = 1,
    prefix: str = "",
) -> FitResult:
    """Compile and fit ``model`` on ``stream`` (default: the run's training stream), in two
    phases with ``config.freeze_epochs``; restore the selected epoch's weights."""
    stream = stream if stream is not None else data.train
    steps = steps_per_epoch or data.steps_per_epoch
    callbacks = make_callbacks(config, data, verbose=verbose, steps_per_epoch=steps, prefix=prefix)
    selector = next(c for c in callbacks if type(c).__name__ == "EpochSelector")
    phases = [(0, config.epochs, config.learning_rate, None)]
    if config.freeze_epochs:
        phases = [
            (0, config.freeze_epochs, config.learning_rate, "heads"),
            (config.freeze_epochs, config.epochs, config.learning_rate * FINE_TUNE_RATE_FACTOR, "all"),
        ]
    backbone = model.get_layer(models.BACKBONE_NAME)
    history: dict[str, list[float]] = {}
    started = time.perf_counter()
    for first, last, rate, trainable in phases:
        if trainable == "heads":
            backbone.trainable = False
        elif trainable == "all":
            backbone.trainable = True
            _frozen_batchnorm(backbone, True)  # pretrained statistics stay (Keras' fine-tuning advice)
        models.compile_model(
            model, config, target_kind=data.target_kind, steps_per_epoch=steps, epochs=last - first, learning_rate=rate
        )
        fitted = model.fit(
            stream,
            epochs=last,
            initial_epoch=first,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=1 if verbose == 1 else 0,
        )
        for key, values in fitted.history.items():
            history.setdefault(key, []).extend(values)
        if selector.stopped:
            break
    seconds = time.perf_counter() - started
    if selector.best_weights is not None:
        model.set_weights(selector.best_weights)
    epochs_run = len(history.get("loss", []))
    return FitResult(
        history=history,
        epochs_run=epochs_run,
        best_epoch=selector.best_epoch or epochs_run,
        best_score=selector.best_score,
        select_from=selector.select_from,
        seconds=seconds,
    )
