"""The resolved configuration of one training run, validated once at the entry point.

:class:`TrainConfig` holds every option of ``curate train`` / ``python -m train``; the run
folder's ``config.json`` is its :meth:`TrainConfig.to_dict` plus what was resolved while
running (class names, counts, weights). User mistakes raise :class:`TrainError` (a
``ValueError``) whose message names the option and the allowed values.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from curate import datasets, labels
from curate.studies.balance import CLASS_WEIGHT_METHODS

#: ``small_cnn``: a plain four-stage CNN (``train.models.build_small_cnn``) for small inputs
#: (32-64 px, e.g. aligned faces), fast on a CPU; the MobileNets are Keras applications.
MODELS = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "small_cnn")
#: Width multipliers Keras publishes ImageNet weights for (``--weights imagenet``).
IMAGENET_ALPHAS = {
    "mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    "mobilenet_v3_small": (0.75, 1.0),
    "mobilenet_v3_large": (0.75, 1.0),
}
SAMPLERS = ("natural", "balanced")
MONITORS = ("auto", "balanced", "class_frequency")
CACHE_MODES = ("auto", "memory", "file", "none")
#: ``--align``: ``eyes`` = a similarity transform from the 68-point landmarks puts the eye
#: centres at fixed places (``train.images.align_by_eyes``); ``none`` = the stored crop as it
#: is; ``auto`` = ``eyes`` where the dataset carries 68-point landmarks (AffectNet).
ALIGN_MODES = ("auto", "eyes", "none")
#: ``--colour``: ``grey`` = the model turns its RGB input into luma first (a frozen layer, so
#: exports keep RGB inputs); ``rgb`` = colour as stored.
COLOURS = ("grey", "rgb")
#: Largest image side whose decoded images are cached (in memory or in a file).
CACHE_MAX_IMAGE_SIZE = 128
#: ``cache="auto"`` keeps the cache in memory up to this many bytes of images, else a file.
CACHE_MEMORY_LIMIT_BYTES = 2 * 1024**3


class TrainError(ValueError):
    """A training run cannot start or finish; the message says what to change."""


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The allowed range of one numeric option: ``low``..``high``, each end open or closed,
    plus ``also`` (a value outside the range that means "off", e.g. ``--ema 0``)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False
    also: float | None = None
    integer: bool = False

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.also is not None and value == self.also:
            return True
        above = value > self.low if self.low_open else value >= self.low  # False for NaN
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        def number(x: float) -> str:
            return f"{int(x)}" if float(x).is_integer() else f"{x:g}"

        text = f"{'(' if self.low_open else '['}{number(self.low)}, {number(self.high)}{')' if self.high_open else ']'}"
        if self.integer:
            text = f"an integer in {text}"
        return f"{number(self.also)} or {text}" if self.also is not None else text


#: Largest seed: TensorFlow, NumPy and the hashed hold-out all take it as a 32-bit integer.
MAX_SEED = 2**31 - 1
#: Every numeric option of ``curate train`` (``TrainConfig`` field -> allowed range), checked
#: by :meth:`TrainConfig.validate` before anything is built or written. ``seeds`` is the
#: plan's (:func:`train.plan.plan_training`). Sizes beyond these bounds are mistakes (an
#: image side of 100000 px exhausts memory), not experiments.
NUMERIC_BOUNDS: dict[str, Bounds] = {
    "alpha": Bounds(0.0, 2.0, low_open=True),
    "image_size": Bounds(32, 512, integer=True),
    "epochs": Bounds(1, 10_000, integer=True),
    "batch_size": Bounds(1, 4096, integer=True),
    "learning_rate": Bounds(0.0, 1.0, low_open=True),
    "seed": Bounds(0, MAX_SEED, integer=True),
    "seeds": Bounds(1, 100, integer=True),
    "va_loss_weight": Bounds(0.0, 100.0),
    "patience": Bounds(0, 10_000, integer=True),
    "holdout_fraction": Bounds(0.0, 0.5, low_open=True, high_open=True),
    "holdout_seed": Bounds(0, MAX_SEED, integer=True),
    "max_train_examples": Bounds(0, 10**9, integer=True),
    "max_eval_examples": Bounds(0, 10**9, integer=True),
    "dropout": Bounds(0.0, 1.0, high_open=True),
    "oof_folds": Bounds(2, 100, also=0, integer=True),
    "oof_epochs": Bounds(0, 10_000, integer=True),
    "freeze_epochs": Bounds(0, 10_000, integer=True),
    "warmup_epochs": Bounds(0.0, 10_000.0),
    "ema": Bounds(0.0, 1.0, high_open=True),
}


def check_number(field: str, value: object) -> None:
    """Raise :class:`TrainError` ``--option: value V is out of range; allowed R`` when ``value``
    is outside ``NUMERIC_BOUNDS[field]`` (NaN never fits)."""
    bounds = NUMERIC_BOUNDS[field]
    if value not in bounds:
        raise TrainError(f"--{field.replace('_', '-')}: value {value} is out of range; allowed {bounds}")


class MissingDatasetError(TrainError):
    """The TFDS dataset is not built in the data dir; the message gives the build command."""


class WeightsError(TrainError):
    """A weights file does not exist or does not fit the model."""


@dataclasses.dataclass
class TrainConfig:
    """Options of one run. Defaults are the CLI's.

    Attributes mirror the command-line options: ``dataset``, ``policy`` (built-in name or
    TOML path; default: the dataset's ``DatasetSpec.default_policy``), ``vote_mode`` (FERPlus), ``model``, ``alpha``, ``image_size``, ``epochs``,
    ``batch_size``, ``learning_rate``, ``weights`` (``"none"`` or a path), ``class_weight``,
    ``sampler``, ``seed``, ``va_head`` and ``va_loss_weight`` (AffectNet), ``patience``
    (early stopping), ``monitor`` (the view whose balanced accuracy early stopping and the
    best checkpoint watch; ``auto`` = the protocol cards' selection split: the train
    hold-out for AffectNet and RAF-DB, the validation-derived balanced view for FERPlus),
    ``holdout_fraction`` / ``holdout_seed`` (the class-frequency hold-out from train, the
    studies' rule and defaults), ``max_train_examples`` / ``max_eval_examples`` (caps for quick runs, 0 =
    all), ``cache``, ``export_tflite``, ``augment``, ``dropout``, ``config`` (TFDS builder
    config, e.g. ``crop224``), ``data_dir``, ``runs_dir`` and ``name``.

    ``oof_folds`` (0 = off, else >= 2) adds out-of-fold predictions of the training rows
    (:mod:`train.oof`): after the main run, ``oof_folds`` extra models are trained, each on
    all training rows but one fold (folds stratified by label, by hashed id and ``seed``),
    and predict the fold they did not see (view ``train_oof`` of ``predictions.parquet``).
    ``oof_epochs`` (0 = ``epochs``) is their epoch budget.
    """

    dataset: str
    policy: str | None = None
    vote_mode: str | None = None
    model: str = "mobilenet_v3_small"
    alpha: float = 1.0
    image_size: int = 96
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    weights: str = "none"
    class_weight: str = "none"
    sampler: str = "balanced"
    seed: int = 0
    va_head: bool = False
    va_loss_weight: float = 0.5
    patience: int = 5
    holdout_fraction: float = 0.05
    holdout_seed: int = 0
    monitor: str = "auto"
    max_train_examples: int = 0
    max_eval_examples: int = 0
    cache: str = "auto"
    export_tflite: bool = True
    augment: bool = True
    dropout: float = 0.2
    config: str | None = None
    data_dir: str | None = None
    runs_dir: str | None = None
    name: str | None = None
    deterministic: bool = True
    exclude: str | None = None
    oof_folds: int = 0
    oof_epochs: int = 0
    freeze_epochs: int = 0
    warmup_epochs: float = 1.0
    align: str = "auto"
    colour: str = "rgb"
    ema: float = 0.99

    def __post_init__(self) -> None:
        if self.policy is None and self.dataset in datasets.names():  # the protocol card's policy
            self.policy = datasets.get(self.dataset).default_policy
        self.validate()

    # ------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise :class:`TrainError` (or ``PolicyError``) naming the first bad option."""

        def choice(option: str, value: Any, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise TrainError(f"--{option}: unknown value {value!r}; choose one of {', '.join(allowed)}")

        choice("dataset", self.dataset, datasets.names())
        choice("model", self.model, MODELS)
        choice("class-weight", self.class_weight, CLASS_WEIGHT_METHODS)
        choice("sampler", self.sampler, SAMPLERS)
        choice("cache", self.cache, CACHE_MODES)
        choice("monitor", self.monitor, MONITORS)
        choice("align", self.align, ALIGN_MODES)
        choice("colour", self.colour, COLOURS)
        spec = datasets.get(self.dataset)
        if self.align == "eyes" and not spec.aligns_by_eyes:
            raise TrainError(
                f"--align eyes needs 68-point landmarks: {', '.join(datasets.having('aligns_by_eyes'))} only, not {self.dataset}"
            )
        labels.get_policy(str(self.policy))  # PolicyError (a ValueError) for unknown names/bad files
        if self.vote_mode is not None:
            if not spec.votes:
                raise TrainError(
                    f"--vote-mode applies to {', '.join(datasets.having('votes'))} only, not {self.dataset}"
                )
            labels.get_vote_mode(self.vote_mode)
        if spec.balanced_view_is_test and self.monitor == "balanced":
            raise TrainError(
                f"--monitor balanced: {self.dataset}'s balanced view is drawn from its test split, which must never "
                "select epochs; use class_frequency (the train hold-out) or auto"
            )
        if self.va_head and not spec.valence_arousal:
            raise TrainError(
                f"--va-head needs valence/arousal labels: {', '.join(datasets.having('valence_arousal'))} only, not {self.dataset}"
            )
        for field, value in ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)):
            if field in NUMERIC_BOUNDS:
                check_number(field, value)
        if self.freeze_epochs and self.freeze_epochs >= self.epochs:
            raise TrainError(
                f"--freeze-epochs must be 0 or fewer than --epochs ({self.epochs}), got {self.freeze_epochs}"
            )
        if self.oof_folds and self.va_head:
            raise TrainError("--oof-folds with --va-head is not supported (out-of-fold predictions are for labels)")
        if self.weights == "imagenet":
            imagenet_alphas = IMAGENET_ALPHAS.get(self.model)
            if imagenet_alphas is None:
                raise WeightsError(
                    f"--weights imagenet: Keras has no ImageNet weights for {self.model}; "
                    f"choose one of {', '.join(IMAGENET_ALPHAS)} or --weights none"
                )
            if self.alpha not in imagenet_alphas:
                raise WeightsError(
                    f"--weights imagenet: Keras' ImageNet weights for {self.model} exist for --alpha "
                    f"{', '.join(map(str, imagenet_alphas))}, not {self.alpha}"
                )
        elif self.weights != "none" and not Path(self.weights).is_file():
            raise WeightsError(
                f"--weights: no such file {self.weights!r} (give 'none', 'imagenet' or a .h5/.weights.h5/.keras file)"
            )
        if self.exclude is not None:
            self.exclusions()  # TrainError for a missing or unreadable file
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", self.name):
            raise TrainError(f"--name {self.name!r}: use letters, digits, '.', '_', '+', '-' only")

    # ------------------------------------------------------------------------------
    @property
    def policy_object(self) -> labels.LabelPolicy:
        return labels.get_policy(str(self.policy))

    @property
    def monitor_view(self) -> str:
        if self.monitor != "auto":
            return self.monitor
        return datasets.get(self.dataset).default_monitor

    @property
    def resolved_align(self) -> str:
        """``eyes`` or ``none`` (``auto`` resolved by the dataset)."""
        if self.align != "auto":
            return self.align
        return "eyes" if datasets.get(self.dataset).aligns_by_eyes else "none"

    @property
    def resolved_vote_mode(self) -> str | None:
        if not datasets.get(self.dataset).votes:
            return None
        return self.vote_mode or labels.DEFAULT_VOTE_MODE

    def exclusions(self) -> tuple[tuple[str, ...], str] | None:
        """``(ids, sha256)`` of ``--exclude`` for this run's dataset, or ``None`` without one.

        Read by :mod:`curate.exclusions` (only rows of ``dataset`` count when the list has a
        ``dataset`` column; ids distinct, in file order); its errors become
        :class:`TrainError`. Read once and kept.
        """
        if self.exclude is None:
            return None
        cached = getattr(self, "_exclusions_cache", None)
        if cached is not None and cached[0] == self.exclude:
            return cached[1]
        from curate.exclusions import ExclusionListError, read_exclusion_list

        try:
            listed = read_exclusion_list(self.exclude, option="--exclude")
        except ExclusionListError as error:
            raise TrainError(str(error)) from None
        result = (listed.ids(self.dataset), listed.sha256)
        object.__setattr__(self, "_exclusions_cache", (self.exclude, result))
        return result

    def run_name(self) -> str:
        """``--name`` or ``<dataset>-<policy>-<model>-<size>px-s<seed>``."""
        if self.name:
            return self.name
        policy = self.policy_object.name
        parts = [self.dataset, policy]
        if self.resolved_vote_mode and self.resolved_vote_mode != labels.DEFAULT_VOTE_MODE:
            parts.append(self.resolved_vote_mode)
        parts += [self.model.replace("_", ""), f"{self.image_size}px", f"s{self.seed}"]
        return "-".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["vote_mode"] = self.resolved_vote_mode
        data["align"] = self.resolved_align
        data["policy_name"] = self.policy_object.name
        data["policy_source"] = self.policy_object.source
        data["monitor_view"] = self.monitor_view
        exclusions = self.exclusions()
        if exclusions is not None:
            data["exclude_sha256"] = exclusions[1]
            data["exclude_count"] = len(exclusions[0])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in fields})

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
