"""The review's landmark second opinion (``curate.review.label_scores``): geometry features, the
cross-fitted landmark model and the fusion with a run's probabilities (NumPy only)."""

from __future__ import annotations

import numpy as np
import pytest

from curate.review.label_scores import (
    GEOMETRY_MIN_ROWS,
    confident_learning,
    fuse_probabilities,
    landmark_geometry,
    landmark_probabilities,
    log_loss_skill,
)


def _faces(n: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """68-point faces whose mouth (points 48-67) is raised by an amount set by the class."""
    rng = np.random.default_rng(seed)
    template = rng.uniform(20, 80, size=(68, 2))
    template[36:42] = [30, 40] + rng.normal(0, 1, (6, 2))  # left eye
    template[42:48] = [70, 40] + rng.normal(0, 1, (6, 2))  # right eye
    labels = np.arange(n) % num_classes
    points = np.repeat(template[None], n, axis=0) + rng.normal(0, 0.3, (n, 68, 2))
    points[:, 48:68, 1] -= 4.0 * labels[:, None]
    return points, labels


def test_geometry_ignores_position_size_and_roll() -> None:
    points, _ = _faces(5, 2)
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 2.5 * points @ rotation.T + [100.0, -40.0]
    assert np.allclose(landmark_geometry(points), landmark_geometry(moved))
    features = landmark_geometry(points)
    assert features.shape == (5, 136)
    # The eye centres land at (-0.5, 0) and (0.5, 0).
    shaped = features.reshape(5, 68, 2)
    assert np.allclose(shaped[:, 36:42].mean(axis=1), [-0.5, 0.0])
    assert np.allclose(shaped[:, 42:48].mean(axis=1), [0.5, 0.0])


def test_landmark_probabilities_are_out_of_sample_and_deterministic() -> None:
    points, labels = _faces(120, 3)
    given = labels.copy()
    given[7] = (labels[7] + 1) % 3  # a flipped label: its own model never saw it
    probabilities = landmark_probabilities(points, given, num_classes=5)
    assert probabilities.shape == (120, 5)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.all(probabilities[:, 3:] == 0.0)  # classes without rows
    assert probabilities[7, given[7]] < 0.2 and probabilities[7].argmax() == labels[7]
    assert np.array_equal(probabilities, landmark_probabilities(points, given, num_classes=5))
    quality, _ = confident_learning(given, probabilities[:, :3])
    assert int(np.argmin(quality)) == 7


def test_landmark_probabilities_refuse_too_few_rows_or_one_class() -> None:
    points, labels = _faces(GEOMETRY_MIN_ROWS - 1, 3)
    with pytest.raises(ValueError, match="too few"):
        landmark_probabilities(points, labels, 3)
    points, _ = _faces(60, 3)
    with pytest.raises(ValueError, match="too few"):
        landmark_probabilities(points, np.zeros(60, np.int64), 3)
    points[4, 36:48] = 0.0  # both eyes on one point: no geometry
    with pytest.raises(ValueError, match="not finite"):
        landmark_probabilities(points, np.arange(60) % 3, 3)


def test_fusion_is_the_normalised_geometric_mean() -> None:
    first = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    second = np.array([[0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    fused = fuse_probabilities(first, second)
    expected = np.sqrt(np.clip(first, 1e-6, 1) * np.clip(second, 1e-6, 1))
    assert np.allclose(fused, expected / expected.sum(axis=1, keepdims=True))
    assert np.allclose(fused.sum(axis=1), 1.0)
    # A class one model rules out stays near zero whatever the other says.
    assert fused[1, 2] < 0.01


def test_log_loss_skill_tells_information_from_class_shares() -> None:
    points, labels = _faces(150, 3)
    informed = landmark_probabilities(points, labels, 3)
    assert log_loss_skill(labels, informed) > 0.5
    shares = np.bincount(labels) / len(labels)
    assert log_loss_skill(labels, np.tile(shares, (150, 1))) == pytest.approx(0.0)
    noise = np.random.default_rng(0).permutation(labels)  # geometry unrelated to the labels
    assert log_loss_skill(noise, landmark_probabilities(points, noise, 3)) < 0.0


class _Samples:
    """The one FiftyOne call the landmark fusion makes: ``values([...])`` of four paths."""

    def __init__(self, ids: list[str], points: list, widths: list, heights: list) -> None:
        self._columns = [ids, points, widths, heights]

    def values(self, paths: list[str]) -> list[list]:
        assert paths == ["source_id", "landmarks.keypoints.points", "metadata.width", "metadata.height"]
        return self._columns


def test_fusion_takes_only_rows_with_68_points_and_an_image_size() -> None:
    from curate.review.label_scores import _fuse_landmark_model

    points, labels = _faces(120, 3)
    width, height = 200.0, 160.0
    relative = [[(face / [width, height]).tolist()] for face in points]  # as FiftyOne stores keypoints
    relative[3] = None  # no landmarks
    relative[4] = [relative[4][0][:5]]  # 5 points (RAF-DB basic)
    widths = [width] * 120
    widths[5] = None  # image missing: no metadata
    ids = [f"r{i}" for i in range(120)]
    run = np.full((120, 3), 1 / 3)
    fused = _fuse_landmark_model(_Samples(ids, relative, widths, [height] * 120), ids, labels, run, 3, lambda _: None)
    assert fused.sum() == 117 and not fused[[3, 4, 5]].any()
    assert np.allclose(run[[3, 4, 5]], 1 / 3)  # left as they were
    assert (run[fused].argmax(axis=1) == labels[fused]).mean() > 0.9  # the geometry decided
    # Labels the geometry does not explain: no skill, nothing fused.
    noise = np.random.default_rng(0).permutation(labels)
    flat = np.full((120, 3), 1 / 3)
    none = _fuse_landmark_model(_Samples(ids, relative, widths, [height] * 120), ids, noise, flat, 3, lambda _: None)
    assert not none.any() and np.allclose(flat, 1 / 3)
