"""Tests for curate.synth.faces: procedural synthetic expression faces."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PIL import Image

from curate.synth.faces import (
    LABEL_NAMES,
    LANDMARKS37_FROM_68,
    DrawnFace,
    draw_face,
    sample_valence_arousal,
)

FACE_LABELS = range(10)  # 0-9 draw a face; 10 is No-Face


def _inside(points: np.ndarray, w: int, h: int) -> bool:
    return bool(
        np.all(points[:, 0] >= 0)
        and np.all(points[:, 0] <= w - 1)
        and np.all(points[:, 1] >= 0)
        and np.all(points[:, 1] <= h - 1)
    )


def _box_inside(box: tuple[float, float, float, float], w: int, h: int) -> bool:
    x, y, bw, bh = box
    return x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h


# --------------------------------------------------------------------------
# fields, shapes, dtypes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("label", range(11))
@pytest.mark.parametrize("size", [(224, 224), (48, 48), (160, 120)])
def test_fields_shapes_and_ranges(label: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(100 + label)
    w, h = size
    for _ in range(8):
        df = draw_face(rng, label, size=size)
        assert isinstance(df, DrawnFace)
        assert isinstance(df.image, Image.Image)
        assert df.image.mode == "RGB" and df.image.size == size
        assert isinstance(df.box, tuple) and len(df.box) == 4
        assert all(isinstance(v, float) for v in df.box)
        assert _box_inside(df.box, w, h)
        for arr, n in ((df.landmarks68, 68), (df.landmarks5, 5), (df.landmarks37, 37)):
            assert isinstance(arr, np.ndarray)
            assert arr.shape == (n, 2) and arr.dtype == np.float32
            assert np.all(np.isfinite(arr))
        np.testing.assert_array_equal(df.landmarks37, df.landmarks68[LANDMARKS37_FROM_68])
        assert df.is_face is (label != 10)
        if label != 10:
            assert _inside(df.landmarks68, w, h)
            x, y, bw, bh = df.box
            lm = df.landmarks68
            # landmarks lie in the face box (small tolerance for rounding/clipping)
            assert lm[:, 0].min() >= x - 1 and lm[:, 0].max() <= x + bw + 1
            assert lm[:, 1].min() >= y - 1 and lm[:, 1].max() <= y + bh + 1


def test_landmark5_definition() -> None:
    df = draw_face(np.random.default_rng(3), 1)
    lm = df.landmarks68
    expected = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    np.testing.assert_allclose(df.landmarks5, expected, atol=1e-4)
    # image-left eye first, mouth corners left to right (pose is within +-22 degrees)
    assert df.landmarks5[0, 0] < df.landmarks5[1, 0]
    assert df.landmarks5[3, 0] < df.landmarks5[4, 0]


def test_landmark68_layout_is_ibug_like() -> None:
    rng = np.random.default_rng(11)
    for label in range(8):
        lm = draw_face(rng, label).landmarks68
        eye_y = (lm[36:48, 1]).mean()
        brow_y = lm[17:27, 1].mean()
        mouth_y = lm[48:68, 1].mean()
        # rotation is bounded, so vertical ordering holds: brows < eyes < nose tip < mouth < chin
        assert brow_y < eye_y < lm[30, 1] < mouth_y < lm[8, 1]
        assert lm[0, 0] < lm[8, 0] < lm[16, 0]
        assert lm[36, 0] < lm[39, 0] < lm[42, 0] < lm[45, 0]


def test_no_face_landmarks_are_centred_template() -> None:
    rng = np.random.default_rng(5)
    w, h = 200, 160
    for _ in range(10):
        df = draw_face(rng, 10, size=(w, h))
        assert df.is_face is False
        centre = df.landmarks68.mean(0)
        assert abs(centre[0] - (w - 1) / 2) < 0.1 * w and abs(centre[1] - (h - 1) / 2) < 0.15 * h
        assert _inside(df.landmarks68, w, h)


def test_grey_has_equal_channels() -> None:
    rng = np.random.default_rng(9)
    for label in (0, 3, 10):
        for size in ((48, 48), (224, 224)):
            a = np.asarray(draw_face(rng, label, size=size, grey=True).image)
            assert a.shape == (size[1], size[0], 3)
            assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    colour = np.asarray(draw_face(rng, 1).image).astype(int)
    assert np.abs(colour[..., 0] - colour[..., 2]).max() > 0


def test_face_fraction_controls_box_size() -> None:
    rng = np.random.default_rng(21)
    for frac in ((0.3, 0.3), (0.8, 0.8)):
        for _ in range(10):
            df = draw_face(rng, 0, size=(128, 96), face_fraction=frac)
            _, _, bw, bh = df.box
            assert max(bw, bh) == pytest.approx(frac[0] * 96, abs=1.5)


def test_invalid_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        draw_face(rng, 11)
    with pytest.raises(ValueError):
        draw_face(rng, -1)
    with pytest.raises(ValueError):
        draw_face(rng, 0, size=(8, 8))
    with pytest.raises(ValueError):
        draw_face(rng, 0, face_fraction=(0.9, 0.5))
    with pytest.raises(ValueError):
        sample_valence_arousal(rng, 12)


# --------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------


@pytest.mark.parametrize("label", [0, 1, 4, 8, 9, 10])
def test_determinism(label: int) -> None:
    kw = dict(size=(96, 80), grey=label == 4)
    a = draw_face(np.random.default_rng(1234), label, **kw)
    b = draw_face(np.random.default_rng(1234), label, **kw)
    c = draw_face(np.random.default_rng(1235), label, **kw)
    assert a.image.tobytes() == b.image.tobytes()
    np.testing.assert_array_equal(a.landmarks68, b.landmarks68)
    np.testing.assert_array_equal(a.landmarks5, b.landmarks5)
    assert a.box == b.box
    assert a.image.tobytes() != c.image.tobytes()
    assert a.box != c.box


def test_determinism_of_a_sequence() -> None:
    def run() -> list[bytes]:
        rng = np.random.default_rng(77)
        return [draw_face(rng, lab % 11, size=(64, 64)).image.tobytes() for lab in range(22)]

    assert run() == run()


# --------------------------------------------------------------------------
# valence / arousal
# --------------------------------------------------------------------------


def test_valence_arousal_sentinel_and_ranges() -> None:
    rng = np.random.default_rng(0)
    assert sample_valence_arousal(rng, 9) == (-2.0, -2.0)
    assert sample_valence_arousal(rng, 10) == (-2.0, -2.0)
    for label in range(9):
        for _ in range(50):
            v, a = sample_valence_arousal(rng, label)
            assert isinstance(v, float) and isinstance(a, float)
            assert -1.0 <= v <= 1.0 and -1.0 <= a <= 1.0


def test_valence_arousal_class_ordering() -> None:
    rng = np.random.default_rng(42)
    va = {lab: np.array([sample_valence_arousal(rng, lab) for _ in range(200)]) for lab in range(9)}
    mv = {lab: float(x[:, 0].mean()) for lab, x in va.items()}
    ma = {lab: float(x[:, 1].mean()) for lab, x in va.items()}
    assert mv[1] > mv[0] > mv[2]  # Happy > Neutral > Sad
    assert abs(mv[0]) < 0.1 and abs(ma[0]) < 0.1
    assert mv[6] < 0 and mv[5] < 0 and mv[4] < 0
    assert -0.6 < mv[7] < 0  # Contempt mildly negative
    assert ma[3] > 0.4 and ma[4] > 0.4 and ma[6] > 0.4  # Surprise, Fear, Anger aroused
    assert ma[2] < 0  # Sad low arousal
    assert abs(mv[8]) < 0.15


def test_draw_face_accepts_valence_arousal() -> None:
    rng = np.random.default_rng(8)
    for label in range(11):
        v, a = sample_valence_arousal(rng, label)
        df = draw_face(rng, label, size=(64, 64), valence=v, arousal=a)
        assert df.image.size == (64, 64)


# --------------------------------------------------------------------------
# landmarks follow the drawn expression
# --------------------------------------------------------------------------


def _upright(lm: np.ndarray) -> np.ndarray:
    """Undo the in-plane rotation using the eye centres."""
    left, right = lm[36:42].mean(0), lm[42:48].mean(0)
    d = right - left
    ang = math.atan2(d[1], d[0])
    c, s = math.cos(-ang), math.sin(-ang)
    rot = np.array([[c, -s], [s, c]])
    return (lm - lm.mean(0)) @ rot.T


def _corner_lift(lm: np.ndarray) -> float:
    """Positive when the mouth corners are above the lip centre (image y points down)."""
    up = _upright(lm.astype(np.float64))
    centre_y = 0.5 * (up[62, 1] + up[66, 1])
    return float(centre_y - 0.5 * (up[48, 1] + up[54, 1]))


def test_mouth_landmarks_follow_expression() -> None:
    rng = np.random.default_rng(2024)
    for _ in range(25):
        happy = draw_face(rng, 1, valence=0.9, arousal=0.3)
        sad = draw_face(rng, 2, valence=-0.9, arousal=-0.4)
        assert _corner_lift(happy.landmarks68) > 0
        assert _corner_lift(sad.landmarks68) < 0


def test_contempt_is_one_sided_and_surprise_opens_mouth() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        up = _upright(draw_face(rng, 7, valence=-0.45, arousal=0.25).landmarks68.astype(np.float64))
        centre_y = 0.5 * (up[62, 1] + up[66, 1])
        lifts = centre_y - up[[48, 54], 1]
        assert abs(lifts[0] - lifts[1]) > 0.1 * abs(up[54, 0] - up[48, 0])
        sur = _upright(draw_face(rng, 3, valence=0.1, arousal=0.9).landmarks68.astype(np.float64))
        neu = _upright(draw_face(rng, 0, valence=0.0, arousal=0.0).landmarks68.astype(np.float64))
        eye_d_s = np.linalg.norm(sur[36:42].mean(0) - sur[42:48].mean(0))
        eye_d_n = np.linalg.norm(neu[36:42].mean(0) - neu[42:48].mean(0))
        assert (sur[66, 1] - sur[62, 1]) / eye_d_s > 0.2  # clearly open
        assert (neu[66, 1] - neu[62, 1]) / eye_d_n < 0.15


def test_landmarks_land_on_drawn_features() -> None:
    """Eye landmarks sit on eye pixels: the eye region differs from the skin just below the eye."""
    rng = np.random.default_rng(31)
    hits = 0
    for _ in range(30):
        df = draw_face(rng, 0, size=(224, 224), face_fraction=(0.75, 0.8))
        a = np.asarray(df.image.convert("L"), dtype=np.float32)
        lm = df.landmarks68
        for sl in (slice(36, 42), slice(42, 48)):
            c = lm[sl].mean(0)
            eye_w = np.ptp(lm[sl][:, 0])
            cheek = c + np.array([0.0, 0.9 * eye_w])
            x0, y0 = np.round(c).astype(int)
            x1, y1 = np.round(cheek).astype(int)
            eye_patch = a[y0 - 1 : y0 + 2, x0 - 1 : x0 + 2].mean()
            cheek_patch = a[y1 - 1 : y1 + 2, x1 - 1 : x1 + 2].mean()
            hits += abs(eye_patch - cheek_patch) > 12
    assert hits >= 50  # of 60 eyes; pupils/iris differ from skin


# --------------------------------------------------------------------------
# learnability and speed
# --------------------------------------------------------------------------


def _hog(x: np.ndarray, cell: int, bins: int) -> np.ndarray:
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    mag = np.hypot(gx, gy)
    b = np.minimum((np.mod(np.arctan2(gy, gx), np.pi) / np.pi * bins).astype(int), bins - 1)
    n, h, w = x.shape
    hist = np.zeros((n, h, w, bins), np.float32)
    np.put_along_axis(hist, b[..., None], mag[..., None], axis=3)
    hist = hist.reshape(n, h // cell, cell, w // cell, cell, bins).sum((2, 4))
    hist /= np.linalg.norm(hist, axis=-1, keepdims=True) + 1e-3
    return hist.reshape(n, -1)


def test_expressions_are_learnable_but_not_trivial() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n_train, n_test = 2000, 500
    xs, ys = [], []
    t0 = time.perf_counter()
    for i in range(n_train + n_test):
        label = i % 8
        df = draw_face(rng, label, size=(64, 64), grey=True)
        x, y, w, h = df.box
        crop = df.image.convert("L").crop((x, y, x + w, y + h)).resize((32, 32), Image.Resampling.BILINEAR)
        xs.append(np.asarray(crop, dtype=np.float32) / 255.0)
        ys.append(label)
    t_gen = time.perf_counter() - t0
    img = np.stack(xs)
    labels = np.array(ys)
    pix = img.reshape(len(img), -1)
    pix = pix - pix.mean(1, keepdims=True)
    feats = np.concatenate([_hog(img, 4, 8), _hog(img, 8, 9), pix], axis=1)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.002, max_iter=300))
    clf.fit(feats[:n_train], labels[:n_train])
    acc = clf.score(feats[n_train:], labels[n_train:])
    print(
        f"\nlearnability: logistic regression on HOG+pixels of 32x32 grey face crops, "
        f"accuracy {acc:.3f} (chance 0.125), generation {t_gen:.1f}s, total {time.perf_counter() - t0:.1f}s"
    )
    assert acc >= 0.35
    assert acc <= 0.97, "classes are trivially separable; add variation/overlap"


@pytest.mark.parametrize("size", [224, 48])
def test_speed_report(size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(10):
        draw_face(rng, i % 11, size=(size, size))
    n = 200
    t0 = time.perf_counter()
    for i in range(n):
        draw_face(rng, i % 11, size=(size, size))
    rate = n / (time.perf_counter() - t0)
    print(f"\ndraw_face speed at {size}x{size}: {rate:.0f} images/s ({LABEL_NAMES[0]}..{LABEL_NAMES[10]} mix)")
    assert rate > 0
