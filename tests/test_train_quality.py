"""Quality bar (slow): a short run of the trainer's default recipe on synthetic AffectNet learns.

Synthetic AffectNet at the demo's scale (0.008: ~3,300 training images, original layout;
validation at 0.04: 20 images per label), built as TFDS ``affectnet/crop224``.
MobileNetV3Small from random initialisation with the trainer's default recipe (faces
aligned by their eyes, balanced sampler, Adam 3e-3 after a one-epoch warm-up, cosine decay,
a moving average of the weights (EMA 0.99), epochs selected in the second half of the
budget) plus the demo's ``--colour grey``, 64 px, batch 32, 20 epochs, under
``drop-7-plus`` (7 classes: chance and the majority class score 1/7 = 14.3% balanced
accuracy), the class-frequency hold-out 20% of train by hashed id.

The margins hold for every training seed tried (``CURATE_QUALITY_SEED`` = 0, 1, 2 on the
development machine, 2 shared cores): measured, for seeds 0 / 1 / 2,

* hold-out balanced accuracy 0.712 / 0.737 / 0.787 (431 rows), balanced view 0.714 /
  0.764 / 0.829 (140 rows), epoch kept 20 / 20 / 20 of 20, every class predicted;
* with the V/A head, valence CCC 0.664 / 0.757 / 0.837, arousal CCC 0.657 / 0.671 / 0.669.

The margins sit 0.16-0.36 below the lowest of the three, room for CPUs that round
differently; the V/A margins are the issue's targets.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("CURATE_QUALITY_SEED", "0"))
#: Balanced accuracy on the class-frequency hold-out and on the balanced (validation) view;
#: chance is 0.143; lowest over seeds 0-2: 0.712 and 0.714.
HOLDOUT_MARGIN = 0.55
BALANCED_MARGIN = 0.55
#: Valence / arousal CCC on the hold-out (issue targets 0.4 / 0.3); lowest over seeds 0-2: 0.664 / 0.657.
VALENCE_MARGIN = 0.4
AROUSAL_MARGIN = 0.3
DYNAMIC_AGREEMENT_MARGIN = 0.97
RECIPE = {
    "dataset": "affectnet", "policy": "drop-7-plus", "image_size": 64, "epochs": 20, "batch_size": 32,
    "colour": "grey", "holdout_fraction": 0.2, "export_tflite": False,
}  # fmt: skip


@pytest.fixture(scope="module")
def affectnet_demo(tmp_path_factory):
    tfds = pytest.importorskip("tensorflow_datasets")
    import tfds_builders  # noqa: F401
    from curate.synth.affectnet import generate_affectnet

    root = tmp_path_factory.mktemp("quality")
    generate_affectnet(root / "manual", layout="original", scale=0.008, validation_scale=0.04, seed=0)
    builder = tfds.builder("affectnet/crop224", data_dir=str(root / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
    return root


def test_short_run_learns_every_class_well_above_chance(affectnet_demo) -> None:
    import polars as pl

    from train import TrainConfig, train_run

    config = TrainConfig(data_dir=str(affectnet_demo / "tfds"), name=f"quality-s{SEED}", seed=SEED, **RECIPE)
    result = train_run(config, runs_dir=affectnet_demo / "runs", register=False, verbose=2)
    frequency, balanced = result.metrics["class_frequency"], result.metrics["balanced"]
    print(
        f"seed {SEED}: class-frequency hold-out balanced accuracy {frequency['balanced_accuracy']:.3f} "
        f"({frequency['count']} rows), balanced view {balanced['balanced_accuracy']:.3f} ({balanced['count']} rows), "
        f"best epoch {result.metrics['training']['best_epoch']}"
    )
    assert frequency["balanced_accuracy"] >= HOLDOUT_MARGIN
    assert balanced["balanced_accuracy"] >= BALANCED_MARGIN
    # Not one class for everything: the kept epoch is in the second half and predicts every class.
    assert result.metrics["training"]["best_epoch"] >= result.metrics["training"]["monitor"]["selectable_from_epoch"]
    predicted = pl.read_parquet(result.path / "predictions.parquet").filter(pl.col("view") == "balanced")
    assert set(np.unique(predicted["predicted"].to_numpy())) == set(range(7))


def test_va_head_learns_valence_and_arousal(affectnet_demo) -> None:
    from train import TrainConfig, train_run

    config = TrainConfig(
        data_dir=str(affectnet_demo / "tfds"), name=f"quality-va-s{SEED}", seed=SEED, va_head=True,
        **{**RECIPE, "export_tflite": True},
    )  # fmt: skip
    result = train_run(config, runs_dir=affectnet_demo / "runs", register=False, verbose=2)
    va = result.metrics["class_frequency"]["va"]
    print(
        f"seed {SEED}: valence rmse {va['valence']['rmse']:.3f} ccc {va['valence']['ccc']:.3f}; "
        f"arousal rmse {va['arousal']['rmse']:.3f} ccc {va['arousal']['ccc']:.3f} ({va['count']} rows)"
    )
    assert va["count"] > 0
    assert va["valence"]["ccc"] >= VALENCE_MARGIN and va["arousal"]["ccc"] >= AROUSAL_MARGIN
    assert (result.path / "model_int8.tflite").exists()
    # Dynamic-range int8 keeps float's labels: measured 100.0% / 99.5% of rows (balanced /
    # class-frequency, seed 0; full-integer 95.0% / 95.4%), and 98.6-99.3% on the two other runs
    # benchmarks/bench_quantise.py was tried on. The margin sits below the 98% target.
    for view, entry in result.metrics["export"]["parity"].items():
        assert entry["dynamic"]["top1_agreement_with_float"] >= DYNAMIC_AGREEMENT_MARGIN, view
        assert abs(entry["dynamic"]["balanced_accuracy_change_vs_float"]) <= 2.0, view
