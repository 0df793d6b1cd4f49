"""train.plan: a `curate train` invocation resolved without the CLI (no training, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.protocols import ProtocolError, card_for_training
from train.config import TrainError
from train.plan import plan_training


def test_a_protocol_card_fixes_dataset_policy_and_vote_mode() -> None:
    plan = plan_training(protocol="ferplus-8-probability", image_size=48)
    assert (plan.config.dataset, plan.config.policy, plan.config.vote_mode) == ("ferplus", "drop-8-plus", "probability")
    assert plan.config.image_size == 48 and not plan.compares
    same = plan_training(protocol="affectnet-8", dataset="affectnet", policy="drop-8-plus")
    assert same.config.policy == "drop-8-plus"
    with pytest.raises(ProtocolError, match="--policy drop-7-plus contradicts protocol affectnet-8@1"):
        plan_training(protocol="affectnet-8", policy="drop-7-plus")
    with pytest.raises(ProtocolError, match="valence-arousal protocol"):
        card_for_training("affectnet-va")
    with pytest.raises(ProtocolError, match="--policies cannot be combined with --protocol"):
        plan_training(protocol="rafdb-7", policies=["keep-all"])


def test_option_conflicts_are_refused() -> None:
    with pytest.raises(TrainError, match="--dataset is required"):
        plan_training()
    with pytest.raises(TrainError, match="either --policy or --policies"):
        plan_training(dataset="rafdb", policy="drop-7-plus", policies=["keep-all"])
    with pytest.raises(TrainError, match=r"--seeds: value 0 is out of range; allowed an integer in \[1, 100\]"):
        plan_training(dataset="rafdb", seeds=0)
    with pytest.raises(TrainError, match="--model: unknown value"):
        plan_training(dataset="rafdb", model="resnet50")


def test_policies_seeds_paths_and_registration(tmp_path) -> None:
    plan = plan_training(
        dataset="rafdb", policies=["drop-7-plus", "keep-all"], seeds=2, runs_dir=tmp_path / "runs",
        data_dir=tmp_path / "tfds", config="aligned",
    )  # fmt: skip
    assert plan.compares and plan.policies == ("drop-7-plus", "keep-all") and plan.seeds == 2
    assert plan.config.policy == "drop-7-plus"  # the first policy until the runs replace it
    assert plan.config.data_dir == str(tmp_path / "tfds") and plan.config.runs_dir == str(tmp_path / "runs")
    assert plan.config.config == "aligned"
    assert plan.runs_dir == tmp_path / "runs"
    assert not plan.register  # --out without --workspace: not registered
    with_workspace = plan_training(dataset="rafdb", runs_dir=tmp_path / "runs", workspace=tmp_path / "ws")
    assert with_workspace.register and with_workspace.workspace == Path(tmp_path / "ws")
    assert plan_training(dataset="rafdb").register and not plan_training(dataset="rafdb", register=False).register
    assert plan_training(dataset="rafdb", seeds=3).compares
