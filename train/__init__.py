"""Compact Keras baselines for the toolkit's facial-expression datasets.

``tfds.load`` (:mod:`train.sources`) -> label policy at read time (:mod:`curate.readtime`)
-> which rows train and evaluate (:mod:`train.rows`) -> decode / resize / cache / augment
(:mod:`train.data`, :mod:`train.images`) -> MobileNet (:mod:`train.models`) -> fit with
early stopping on a balanced metric (:mod:`train.fit`) -> metrics on the balanced and
class-frequency views (:mod:`train.evaluate`) -> TFLite (:mod:`train.export`) -> a run
folder registered in the workspace (:mod:`train.loop`). With ``TrainConfig(oof_folds=K)`` the run also holds
out-of-fold predictions of its training rows from K cross-fitted models (:mod:`train.oof`),
for confident learning in ``curate review``. The command line is ``curate train`` or
``python -m train`` (resolved by :mod:`train.plan`); see ``docs/training.md``.

TensorFlow is imported by the submodules' functions, not by this package.
"""

from train.config import MissingDatasetError, TrainConfig, TrainError, WeightsError

__all__ = [
    "MissingDatasetError",
    "TrainConfig",
    "TrainError",
    "WeightsError",
    "compare_runs",
    "train_policies",
    "train_run",
]


def train_run(*args, **kwargs):  # noqa: ANN002, ANN003 - thin lazy wrapper
    """See :func:`train.loop.train_run`."""
    from train.loop import train_run as run

    return run(*args, **kwargs)


def train_policies(*args, **kwargs):  # noqa: ANN002, ANN003
    """See :func:`train.loop.train_policies`."""
    from train.loop import train_policies as run

    return run(*args, **kwargs)


def compare_runs(*args, **kwargs):  # noqa: ANN002, ANN003
    """See :func:`train.compare.compare_runs`."""
    from train.compare import compare_runs as run

    return run(*args, **kwargs)
