"""Slices, calibration and FER+ vote-aware metrics (train.slices, train.calibration, train.vote_metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curate import labels, slicing
from train import calibration, slices, vote_metrics

#: Seeds tried for the statistical checks below; each margin holds for every one of them.
SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_temperature_recovers_a_known_overconfidence(seed):
    # labels drawn from softmax(z / 2): a model reporting z is overconfident by T = 2
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(20_000, 7))
    truth = calibration.softmax(logits, 2.0)
    labels_ = np.array([rng.choice(7, p=p) for p in truth])
    t = calibration.fit_temperature(logits, labels_)
    assert 1.8 <= t <= 2.2  # seeds 0-2: 1.965, 1.999, 2.019
    before = calibration.expected_calibration_error(calibration.softmax(logits), labels_)
    after = calibration.expected_calibration_error(calibration.softmax(logits, t), labels_)
    assert after < 0.03 < 0.1 < before  # seeds 0-2: before 0.197-0.208, after 0.007-0.013


def test_ece_of_a_known_table():
    # two bins: 0.9-confidence rows right 9 times in 10, 0.55 rows right 3 times in 10
    probabilities = np.array([[0.9, 0.1]] * 10 + [[0.55, 0.45]] * 10)
    labels_ = np.array([0] * 9 + [1] + [0] * 3 + [1] * 7)
    ece = calibration.expected_calibration_error(probabilities, labels_)
    assert ece == pytest.approx(0.5 * abs(0.9 - 0.9) + 0.5 * abs(0.3 - 0.55))


@pytest.mark.parametrize("seed", (4, 5, 6))
def test_ece_noise_floor_separates_noise_from_miscalibration(seed):
    # 600 rows (a demo view): labels drawn from the model's own probabilities are perfectly
    # calibrated, so their ECE is sampling noise and sits under the floor (a 95th percentile)
    rng = np.random.default_rng(seed)
    under = 0
    for trial in range(40):
        probabilities = calibration.softmax(rng.normal(0, 2, size=(600, 7)))
        drawn = np.array([rng.choice(7, p=p) for p in probabilities])
        floor = calibration.ece_noise_floor(probabilities, seed=trial)
        under += calibration.expected_calibration_error(probabilities, drawn) <= floor
        if trial == 0:
            # the same model 2x overconfident: its true labels follow softmax(z / 2)
            truth = np.array([rng.choice(7, p=p) for p in calibration.softmax(np.log(probabilities), 2.0)])
            assert calibration.expected_calibration_error(probabilities, truth) > 2 * floor  # 2.7-2.9x
    assert under >= 34  # seeds 4 / 5 / 6: 40, 39, 39 of 40
    many = calibration.softmax(rng.normal(0, 2, size=(20_000, 7)))
    # shrinks about as 1/sqrt(rows): 0.17-0.18 of the 600-row floor at 20,000 rows
    assert calibration.ece_noise_floor(many) < calibration.ece_noise_floor(many[:600]) / 3


def test_one_class_predictions_are_flagged():
    from train.evaluate import one_class_warning

    names = ["Neutral", "Happy", "Sad"]
    collapsed = {"confusion_matrix": [[50, 0, 0], [48, 2, 0], [50, 0, 0]]}  # 148 of 150 predicted Neutral
    warning = one_class_warning("balanced", collapsed, names)
    assert warning.startswith("balanced: 98.7% of the rows predicted Neutral;") and "\n" not in warning
    learning = {"confusion_matrix": [[40, 5, 5], [10, 35, 5], [20, 0, 30]]}
    assert one_class_warning("balanced", learning, names) is None
    assert one_class_warning("balanced", {"confusion_matrix": [[0, 0], [0, 0]]}, names) is None


def test_a_small_holdout_fits_no_temperature(tmp_path):
    with pytest.raises(calibration.CalibrationError) as error:
        calibration.fit_temperature(np.zeros((40, 3)), np.zeros(40, dtype=int))
    assert "\n" not in str(error.value) and "40 rows, fewer than the 100" in str(error.value)
    rng = np.random.default_rng(0)
    small = {"logits": rng.normal(size=(40, 3)), "label": rng.integers(0, 3, 40)}
    out = calibration.calibrate_views({"class_frequency": small, "balanced": small}, tmp_path, run="r")
    assert out["temperature"] is None and "fewer than the 100" in out["not_fitted"]
    assert "ece_after" not in out["views"]["balanced"] and (tmp_path / "reliability_balanced.png").is_file()


def test_slices_with_intervals_and_the_gap():
    rng = np.random.default_rng(4)
    n = 3000
    group = np.where(np.arange(n) < 1500, "a", "b").astype(object)
    group[:20] = "tiny"
    labels_ = rng.integers(0, 3, n)
    right = np.where(group == "a", rng.random(n) < 0.8, rng.random(n) < 0.5)
    predicted = np.where(right, labels_, (labels_ + 1) % 3)
    out = slices.slice_metrics(labels_, predicted, {"group": group})["group"]
    a, b = out["values"]["a"], out["values"]["b"]
    assert a["rows"] == 1480 and not out["values"]["tiny"]["ranked"]
    for entry in (a["accuracy"], b["accuracy"], a["balanced_accuracy"]):
        low, high = entry["ci95"]
        assert low <= entry["value"] <= high and high - low < 0.1
    gap = out["accuracy_gap"]
    assert (gap["best"], gap["worst"]) == ("a", "b")
    assert gap["value"] == pytest.approx(a["accuracy"]["value"] - b["accuracy"]["value"])
    assert 0.2 < gap["ci95"][0] < gap["value"] < gap["ci95"][1] < 0.4
    again = slices.slice_metrics(labels_, predicted, {"group": group})["group"]
    assert again == out  # seeded bootstrap: the same intervals every time
    text = slices.slices_markdown({"group": out})
    assert "tiny (under 30 rows: not ranked)" in text and "…" not in text


def test_unknown_slicing_attribute_is_one_line():
    with pytest.raises(slices.SliceError, match="ferplus has no slicing attribute gender"):
        slices.check_attributes("ferplus", ["gender"])
    assert slices.check_attributes("rafdb") == ("gender", "race", "age_group")


def test_vote_agreement():
    votes = np.array([[10, 0, 0, 0, 0, 0, 0, 0, 0, 0], [6, 4, 0, 0, 0, 0, 0, 0, 0, 0], [5, 5, 0, 0, 0, 0, 0, 0, 0, 0]])
    assert slices.vote_agreement(votes).tolist() == ["unanimous", "clear majority", "contested"]


def test_vote_metrics_tell_a_distribution_from_a_label():
    policy = labels.get_policy("merge-to-neutral")
    rng = np.random.default_rng(2)
    votes = np.zeros((400, 10), dtype=np.int64)
    for row in votes:  # two emotions share the ten votes 6-4 or 5-5
        a, b = rng.choice(8, 2, replace=False)
        split = int(rng.choice([5, 6]))
        row[a], row[b] = split, 10 - split
    canonical = np.zeros((400, labels.NUM_CANONICAL))
    for column, target in enumerate(labels.FERPLUS_VOTE_TO_CANONICAL):
        canonical[:, target] += votes[:, column]
    from curate.readtime import policy_distribution_matrix

    shares = canonical @ policy_distribution_matrix(policy)
    shares /= shares.sum(axis=1, keepdims=True)
    like_voters = vote_metrics.vote_metrics(votes, shares, policy)
    one_hot = vote_metrics.vote_metrics(votes, np.eye(shares.shape[1])[shares.argmax(axis=1)] * 0.9 + 0.1 / 8, policy)
    assert like_voters["kl_divergence"] == pytest.approx(0.0, abs=1e-5)
    assert one_hot["kl_divergence"] > 0.3 > like_voters["kl_divergence"]
    # both put the top vote first: equal on the majority label, and right under the 30 % rule
    assert like_voters["multi_target_accuracy"] == one_hot["multi_target_accuracy"] == 1.0
    assert like_voters["majority_rows"] < 400  # 5-5 rows have no majority


@pytest.mark.parametrize(("dataset", "config"), [("rafdb", None), ("affectnet", "crop224"), ("ferplus", None)])
def test_every_dataset_gives_its_slices_from_a_build(dataset, config, tmp_path):
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401
    from curate.slicing import ATTRIBUTE_NAMES
    from train.sources import TFDSSource

    dummy = Path(tfds_builders.__file__).parent / dataset / "dummy_data"
    builder = tfds.builder(dataset, config=config, data_dir=str(tmp_path))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(dummy)))
    source = TFDSSource(dataset, data_dir=str(tmp_path), config=config)
    split = sorted(builder.info.splits)[0]
    facts = slices.read_facts(source, split, dataset)
    assert set(facts.attributes) == set(slicing.attributes_of(dataset)) and not facts.notes["missing"]
    assert len(facts.ids) == builder.info.splits[split].num_examples
    known = list(facts.ids[:3])
    attributes, votes = facts.for_ids([*known, "no-such-id"])
    for name, values in attributes.items():
        assert values[-1] is None and len(values) == len(known) + 1
        allowed = {
            "gender": ATTRIBUTE_NAMES["gender"], "race": ATTRIBUTE_NAMES["race"],
            "age_group": ATTRIBUTE_NAMES["age_group"], "vote_agreement": ("unanimous", "clear majority", "contested"),
            "va_quadrant": ("V+A+", "V+A-", "V-A+", "V-A-"), "face_size": ("small", "medium", "large"),
        }[name]  # fmt: skip
        assert {v for v in values[:-1] if v is not None} <= set(allowed)
    assert votes is None  # an unknown id: no votes for the whole request
    if dataset == "ferplus":
        _, votes = facts.for_ids(known)
        assert votes.shape == (len(known), 10)
    if dataset == "affectnet":
        assert len(facts.notes["face_size_cuts_px"]) == 2


def test_exports_carry_the_temperature():
    # the exported graph divides the logits by T before the softmax: calibrated probabilities, same top-1
    from train import export, models
    from train.config import TrainConfig

    model = models.build_model(TrainConfig(dataset="ferplus", model="small_cnn", image_size=32), 8)
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype(np.float32)
    logits = np.asarray(model.predict_on_batch(images), dtype=np.float64)
    for temperature in (None, 2.5):
        probabilities = np.asarray(export.inference_model(model, temperature).predict_on_batch(images))
        expected = calibration.softmax(logits, temperature or 1.0)
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        np.testing.assert_allclose(export.keras_runner(model, temperature)(images)["label"], expected, atol=1e-5)
