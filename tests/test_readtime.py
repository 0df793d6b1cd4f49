"""The read-time policy helper: the same labels as the NumPy policy and FER+ vote rules."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from curate import labels, readtime  # noqa: E402

VOTES = np.array(
    [
        [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # neutral
        [0, 6, 0, 0, 0, 0, 0, 4, 0, 0],  # happy 6 / contempt 4
        [0, 0, 0, 0, 0, 0, 0, 0, 10, 0],  # unknown -> dropped by every mode
        [3, 3, 0, 0, 0, 0, 0, 2, 1, 1],  # tie neutral/happy
        [0, 0, 0, 0, 0, 0, 0, 10, 0, 0],  # contempt
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],  # not a face
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # all outliers
    ],
    dtype=np.int32,
)


def ferplus_ds(votes: np.ndarray = VOTES) -> tf.data.Dataset:
    n = len(votes)
    return tf.data.Dataset.from_tensor_slices(
        {
            "id": [f"fer{i:07d}" for i in range(n)],
            "image": np.full((n, 48, 48, 1), 7, np.uint8),
            "votes": votes,
            "fer2013_label": np.zeros(n, np.int64),
            "label": np.zeros(n, np.int64),
        }
    )


def affectnet_ds() -> tf.data.Dataset:
    expression = np.arange(11, dtype=np.int64)
    annotated = expression < 9
    return tf.data.Dataset.from_tensor_slices(
        {
            "id": [f"train_set/{i}" for i in range(11)],
            "image": np.zeros((11, 8, 8, 3), np.uint8),
            "expression": expression,
            "valence": np.where(annotated, np.linspace(-0.9, 0.9, 11), 0.0).astype(np.float32),
            "arousal": np.where(annotated, 0.25, 0.0).astype(np.float32),
            "va_annotated": annotated,
        }
    )


def test_affectnet_matches_numpy_policy() -> None:
    for policy in labels.BUILTIN_POLICIES:
        out = list(readtime.policy_dataset(affectnet_ds(), "affectnet", policy).as_numpy_iterator())
        expected = labels.get_policy(policy).apply(np.arange(11))
        assert [int(label) for _, label in out] == [int(e) for e in expected if e >= 0], policy


def test_rafdb_drops_nothing_under_seven_classes() -> None:
    canonical = np.array([3, 4, 5, 1, 2, 6, 0], np.int64)
    ds = tf.data.Dataset.from_tensor_slices(
        {"id": list("abcdefg"), "image": np.zeros((7, 4, 4, 3), np.uint8), "label": canonical}
    )
    out = [int(label) for _, label in readtime.policy_dataset(ds, "rafdb", "drop-7-plus").as_numpy_iterator()]
    assert out == canonical.tolist()


def test_with_va_masks_unannotated_rows() -> None:
    out = list(readtime.policy_dataset(affectnet_ds(), "affectnet", "keep-all", with_va=True).as_numpy_iterator())
    assert len(out) == 11
    masks = [float(target["va_mask"]) for _, target in out]
    assert masks == [1.0] * 9 + [0.0, 0.0]
    assert out[10][1]["valence"] == 0.0 and out[1][1]["arousal"] == pytest.approx(0.25)
    assert set(out[0][1]) == {"label", "valence", "arousal", "va_mask"}


def test_ferplus_hard_modes_match_numpy() -> None:
    policy = labels.get_policy("drop-8-plus")
    for mode in ("majority", "argmax"):
        reference = labels.ferplus_vote_targets(VOTES, mode)
        classes = policy.apply(reference.label)
        expected = [int(c) for c, k in zip(classes, reference.keep, strict=True) if k and c >= 0]
        out = [int(label) for _, label in readtime.policy_dataset(ferplus_ds(), "ferplus", policy, vote_mode=mode)]
        assert out == expected, mode
        assert readtime.target_kind("ferplus", mode) == "hard"


def test_ferplus_soft_modes_give_policy_distributions() -> None:
    for mode in ("crossentropy", "probability", "multi-target"):
        out = list(readtime.policy_dataset(ferplus_ds(), "ferplus", "drop-7-plus", vote_mode=mode).as_numpy_iterator())
        assert readtime.target_kind("ferplus", mode) == "soft"
        for _, target in out:
            assert target.shape == (7,) and target.dtype == np.float32
            assert target.sum() == pytest.approx(1.0, abs=1e-5)
        # The contempt-only row is dropped by drop-7-plus; unknown / NF / all-outlier rows by the mode.
        assert len(out) == 3, mode
        # Row 1: happy 6 / contempt 4 -> contempt mass removed under drop-7-plus, renormalised.
        assert out[1][1][1] == pytest.approx(1.0)


def test_ferplus_soft_mode_keeps_contempt_mass_under_eight_classes() -> None:
    out = list(readtime.policy_dataset(ferplus_ds(), "ferplus", "drop-8-plus", vote_mode="crossentropy"))
    happy_contempt = out[1][1].numpy()
    assert happy_contempt[1] == pytest.approx(0.6) and happy_contempt[7] == pytest.approx(0.4)


def test_default_vote_mode_is_majority_and_batches_of_unknown_size_work() -> None:
    batch = {"votes": tf.constant(VOTES)}
    static = readtime.policy_targets(batch, "ferplus", "drop-8-plus")
    dynamic = next(
        iter(
            tf.data.Dataset.from_tensor_slices(batch)
            .batch(4)
            .map(lambda b: readtime.policy_targets(b, "ferplus", "drop-8-plus"))
        )
    )
    assert np.array_equal(static["keep"].numpy()[:4], dynamic["keep"].numpy())
    assert np.array_equal(static["label"].numpy()[:4], dynamic["label"].numpy())
    reference = labels.ferplus_vote_targets(VOTES, "majority")
    assert static["canonical"].numpy().tolist() == reference.label.tolist()


def test_numpy_twin_matches_tensorflow() -> None:
    for mode in ("majority", "crossentropy", "multi-target"):
        for policy in ("drop-8-plus", "merge-to-neutral"):
            tf_out = readtime.policy_targets({"votes": tf.constant(VOTES)}, "ferplus", policy, vote_mode=mode)
            np_out = readtime.policy_targets_numpy({"votes": VOTES}, "ferplus", policy, vote_mode=mode)
            assert np.array_equal(tf_out["keep"].numpy(), np_out["keep"])
            assert np.allclose(tf_out["label"].numpy(), np_out["label"], atol=1e-6)
    expression = np.arange(11)
    tf_out = readtime.policy_targets({"expression": tf.constant(expression)}, "affectnet", "drop-7-plus")
    np_out = readtime.policy_targets_numpy({"expression": expression}, "affectnet", "drop-7-plus")
    assert np.array_equal(tf_out["label"].numpy(), np_out["label"]) and np.array_equal(
        tf_out["keep"].numpy(), np_out["keep"]
    )


def test_images_pass_through_untouched() -> None:
    image, _ = next(iter(readtime.policy_dataset(ferplus_ds(), "ferplus", "drop-8-plus")))
    assert image.shape == (48, 48, 1) and int(image[0, 0, 0]) == 7


@pytest.mark.parametrize(
    ("dataset", "kwargs", "message"),
    [
        ("cifar", {}, "unknown dataset"),
        ("affectnet", {"vote_mode": "majority"}, "ferplus only"),
        ("ferplus", {"vote_mode": "loudest"}, "unknown FER\\+ vote mode"),
    ],
)
def test_bad_arguments_raise_value_errors(dataset: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        readtime.policy_dataset(ferplus_ds(), dataset, "drop-8-plus", **kwargs)


def test_unknown_policy_is_a_policy_error() -> None:
    with pytest.raises(labels.PolicyError, match="unknown label policy"):
        readtime.policy_dataset(ferplus_ds(), "ferplus", "drop-everything")


def test_importing_readtime_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, curate.readtime; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_numpy_va_matches_tensorflow() -> None:
    """``policy_targets_numpy(with_va=True)`` (curate.data_source) gives the TF path's V/A and mask."""
    batch = next(affectnet_ds().batch(11).as_numpy_iterator())
    np_out = readtime.policy_targets_numpy(batch, "affectnet", "drop-8-plus", with_va=True)
    tf_out = readtime.policy_targets(batch, "affectnet", "drop-8-plus", with_va=True)
    for key in ("keep", "label", "valence", "arousal", "va_mask"):
        np.testing.assert_allclose(np_out[key], tf_out[key].numpy(), err_msg=key)
    assert np_out["va_mask"].tolist() == [1.0] * 9 + [0.0] * 2
    no_va = readtime.policy_targets_numpy({"label": np.arange(7)}, "rafdb", "keep-all", with_va=True)
    assert no_va["va_mask"].tolist() == [0.0] * 7 and no_va["valence"].dtype == np.float32
