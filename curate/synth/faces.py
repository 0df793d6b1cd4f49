"""Procedural synthetic face images with learnable facial expressions.

Scope
-----
This module is the image source of the fake-dataset generator that writes
AffectNet / FERPlus / RAF-DB lookalike datasets for tests and pipeline
dry-runs, where no real faces may be used.  It draws cartoon-like faces with
Pillow's :mod:`PIL.ImageDraw` (plus numpy for gradients and noise) whose
*facial expression* is encoded in the geometry of mouth, eyes and brows, so a
CNN trained on them learns something label-related rather than noise.

Labels follow the canonical AffectNet order::

    0 Neutral  1 Happy  2 Sad  3 Surprise  4 Fear  5 Disgust  6 Anger
    7 Contempt 8 None   9 Uncertain        10 No-Face

Assumptions and design
----------------------
* The expression is parameterised by a small vector of continuous features
  (:data:`EXPRESSION_FEATURES`: mouth curvature, mouth opening, mouth width,
  brow height, brow slant, brow squeeze, eye opening, mouth asymmetry, upper
  lip raise, cheek raise, lip press).  Each basic class has a target vector;
  an image mixes the target by an intensity in ``[0.25, 1]`` and adds
  per-person jitter, so weak expressions overlap with Neutral and with each
  other (the classes are learnable but not trivially separable).  ``None``
  (8) is a weak blend of two random basic expressions and ``Uncertain`` (9)
  a roughly 50/50 blend of two conflicting ones.
* Geometry is computed in a *face frame* (origin at the face centre, x to
  the image right, y down, half face width = 1).  All points -- outline,
  features, hair -- go through the same pose transform (slight yaw by a
  cylinder warp that squashes one side, in-plane rotation of up to about
  20 degrees, scale, translation) before being drawn, so the returned
  landmarks lie on the drawn features.
* Landmarks are in image pixel coordinates with pixel centres at integer
  positions; ``landmarks68`` follows the iBUG-300W 68-point order, with
  "left" meaning the *image* left (iBUG point 0 and the first brow/eye are on
  the image-left side).  ``landmarks5`` is the RAF-DB manual order (left eye
  centre, right eye centre, nose tip, left mouth corner, right mouth corner,
  image-left first).  ``landmarks37`` (the RAF-DB automatic set) is not a
  documented standard here, so it is defined as the subset
  :data:`LANDMARKS37_FROM_68` of the 68 points.
* ``box`` is the axis-aligned bounding box ``(x, y, width, height)`` of the
  drawn face outline (forehead to chin, ears and hair excluded); it always
  lies inside the image.
* No-Face (10) images contain clutter, simple cartoon objects (house, car,
  geometric shapes) or a broken face-like drawing.  Their ``landmarks68`` are
  the neutral template placed in a box centred in the image (so downstream
  shape checks stay valid), ``box`` is a random box inside the image and
  ``is_face`` is False.
* Drawing happens at the target resolution with cheap supersampling (4x up
  to 80 px, 2x up to 320 px, none above; see :func:`_supersample_factor`)
  and a box-filter reduction.  Everything random is drawn from the
  caller's :class:`numpy.random.Generator`; the same generator state gives
  byte-identical images.  No global random state and no clock are used.

Run ``python -m curate.synth.faces OUT.png`` (or this file directly) to write
a contact sheet of 11 classes x 6 examples for visual inspection.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from curate.labels import CANONICAL_NAMES

__all__ = [
    "DrawnFace",
    "EXPRESSION_FEATURES",
    "LABEL_NAMES",
    "LANDMARKS37_FROM_68",
    "NO_FACE",
    "UNCERTAIN",
    "NONE_LABEL",
    "draw_face",
    "sample_valence_arousal",
    "contact_sheet",
]

#: The canonical names, from the one taxonomy (curate.labels); index = label.
LABEL_NAMES: tuple[str, ...] = CANONICAL_NAMES
NEUTRAL, HAPPY, SAD, SURPRISE, FEAR, DISGUST, ANGER, CONTEMPT = range(8)
NONE_LABEL, UNCERTAIN, NO_FACE = 8, 9, 10

#: Indices into the 68-point set that make up the 37-point RAF-DB-like set:
#: both brows (10), both eyes (12), nose bridge top / middle / tip and the
#: nostril base ends and centre (6), eight mouth points (corners, upper and
#: lower lip centre and four lip mid points) and the chin (1).
LANDMARKS37_FROM_68: np.ndarray = np.array(
    list(range(17, 27)) + list(range(36, 48)) + [27, 29, 30, 31, 33, 35] + [48, 49, 51, 53, 54, 55, 57, 59] + [8],
    dtype=np.intp,
)
LANDMARKS37_FROM_68.setflags(write=False)

#: Names of the continuous expression features, in vector order.
EXPRESSION_FEATURES: tuple[str, ...] = (
    "curve",  # mouth corners up (+) / down (-)
    "open",  # mouth opening (>= 0)
    "width",  # mouth stretched (+) / narrowed, rounded (-)
    "brow_raise",  # brows raised (+) / lowered (-)
    "brow_slant",  # inner brow ends up (+, sad/fear) / down (-, anger)
    "brow_squeeze",  # brows drawn together
    "eye_open",  # eyes wide (+) / narrowed (-)
    "asym",  # one mouth corner raised (>= 0)
    "lip_raise",  # upper lip raised, nose wrinkled (>= 0)
    "cheek",  # cheeks raised, nasolabial folds (>= 0)
    "press",  # lips pressed thin (>= 0)
)
_F = {name: i for i, name in enumerate(EXPRESSION_FEATURES)}


def _target(**kw: float) -> np.ndarray:
    v = np.zeros(len(EXPRESSION_FEATURES), dtype=np.float64)
    for k, x in kw.items():
        v[_F[k]] = x
    return v


# Per-class expression targets at full intensity (Neutral is all zeros).
_TARGETS = np.stack(
    [
        _target(),
        _target(curve=1.0, open=0.25, width=0.45, brow_raise=0.05, eye_open=-0.35, cheek=1.0),
        _target(curve=-0.95, width=-0.05, brow_raise=0.1, brow_slant=1.0, brow_squeeze=0.3, eye_open=-0.3, press=0.25),
        _target(open=1.0, width=-0.4, brow_raise=1.0, eye_open=1.0),
        _target(curve=-0.3, open=0.35, width=0.55, brow_raise=0.6, brow_slant=0.75, brow_squeeze=0.9, eye_open=0.85),
        _target(
            curve=-0.35,
            open=0.05,
            width=-0.2,
            brow_raise=-0.6,
            brow_slant=-0.3,
            brow_squeeze=0.4,
            eye_open=-0.45,
            asym=0.3,
            lip_raise=1.0,
            cheek=0.2,
        ),
        _target(
            curve=-0.2, width=-0.15, brow_raise=-0.75, brow_slant=-1.0, brow_squeeze=0.7, eye_open=-0.35, press=1.0
        ),
        _target(curve=0.05, width=0.05, eye_open=-0.15, asym=1.0),
    ]
)
_TARGETS.setflags(write=False)

# Pairs of "conflicting" basic expressions used for the Uncertain class.
_CONFLICTS = (
    (HAPPY, SAD),
    (HAPPY, ANGER),
    (HAPPY, DISGUST),
    (HAPPY, FEAR),
    (SURPRISE, ANGER),
    (SURPRISE, SAD),
    (SURPRISE, DISGUST),
    (FEAR, ANGER),
    (SAD, ANGER),
    (CONTEMPT, FEAR),
    (CONTEMPT, SURPRISE),
)

# Valence/arousal circumplex regions: mean (v, a) and std (v, a) per label.
_VA_MEAN = np.array(
    [
        (0.0, 0.0),  # Neutral
        (0.7, 0.25),  # Happy
        (-0.65, -0.3),  # Sad
        (0.15, 0.7),  # Surprise
        (-0.6, 0.7),  # Fear
        (-0.65, 0.3),  # Disgust
        (-0.55, 0.65),  # Anger
        (-0.35, 0.2),  # Contempt
        (0.0, 0.05),  # None
    ]
)
_VA_STD = np.array(
    [
        (0.1, 0.1),
        (0.15, 0.2),
        (0.15, 0.15),
        (0.3, 0.15),
        (0.15, 0.15),
        (0.15, 0.2),
        (0.15, 0.15),
        (0.15, 0.15),
        (0.3, 0.3),
    ]
)
_VA_SENTINEL = -2.0

_SKIN_LIGHT = np.array([250.0, 220.0, 198.0])
_SKIN_DARK = np.array([80.0, 50.0, 34.0])
_HAIR_COLOURS = np.array(
    [
        (22, 16, 12),
        (45, 30, 20),
        (80, 52, 30),
        (120, 80, 45),
        (190, 150, 90),
        (150, 70, 30),
        (150, 150, 150),
        (225, 205, 150),
    ],
    dtype=np.float64,
)
_IRIS_COLOURS = ((55, 35, 22), (85, 55, 30), (45, 85, 135), (70, 105, 65), (30, 24, 20), (110, 90, 60))


@dataclasses.dataclass(frozen=True)
class DrawnFace:
    """One synthetic image and its annotations.

    Attributes
    ----------
    image : PIL.Image.Image
        RGB image of the requested ``(width, height)``.
    box : tuple of float
        Face box ``(x, y, width, height)`` in image pixels; inside the image.
        For No-Face images a random box inside the image.
    landmarks68 : numpy.ndarray
        ``(68, 2)`` float32 image coordinates in iBUG-300W order.
    landmarks5 : numpy.ndarray
        ``(5, 2)`` float32: left eye centre, right eye centre, nose tip, left
        mouth corner, right mouth corner ("left" = image left).
    landmarks37 : numpy.ndarray
        ``(37, 2)`` float32: ``landmarks68[LANDMARKS37_FROM_68]``.
    is_face : bool
        False for No-Face images.
    """

    image: Image.Image
    box: tuple[float, float, float, float]
    landmarks68: np.ndarray
    landmarks5: np.ndarray
    landmarks37: np.ndarray
    is_face: bool


# --------------------------------------------------------------------------
# valence / arousal and expression vectors
# --------------------------------------------------------------------------


def _check_label(label: int) -> int:
    lab = int(label)
    if lab != label or not 0 <= lab <= 10:
        raise ValueError(f"label must be an integer in 0..10, got {label!r}")
    return lab


def sample_valence_arousal(rng: np.random.Generator, label: int) -> tuple[float, float]:
    """Sample a plausible (valence, arousal) pair for an expression label.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    label : int
        Canonical AffectNet label 0..10.

    Returns
    -------
    tuple of float
        ``(valence, arousal)`` clipped to ``[-1, 1]``, drawn from a Gaussian
        region of the circumplex typical for the class (Happy: high valence;
        Sad: low valence and arousal; Surprise/Fear: high arousal; Anger: low
        valence, high arousal; Disgust: low valence; Contempt: mildly negative
        valence; Neutral near (0, 0); None mixed near 0).  Labels 9
        (Uncertain) and 10 (No-Face) return AffectNet's "not annotated"
        sentinel ``(-2.0, -2.0)`` without consuming randomness.
    """
    lab = _check_label(label)
    if lab >= UNCERTAIN:
        return (_VA_SENTINEL, _VA_SENTINEL)
    v, a = rng.normal(_VA_MEAN[lab], _VA_STD[lab])
    return (float(np.clip(v, -1.0, 1.0)), float(np.clip(a, -1.0, 1.0)))


def _expression(
    rng: np.random.Generator, label: int, valence: float | None, arousal: float | None
) -> tuple[np.ndarray, int]:
    """Return the expression feature vector and the asymmetry side (+-1)."""
    side = 1 if rng.random() < 0.5 else -1
    if label <= CONTEMPT:
        if valence is None and arousal is None:
            intensity = rng.uniform(0.25, 1.0)
        else:
            v0, a0 = _VA_MEAN[label]
            v = v0 if valence is None else float(valence)
            a = a0 if arousal is None else float(arousal)
            r_class = math.hypot(v0, a0)
            r = math.hypot(v, a)
            intensity = float(np.clip(r / (1.25 * r_class), 0.25, 1.0)) if r_class > 0 else 0.5
        target = _TARGETS[label].copy()
        if label == HAPPY:  # closed smiles and laughs
            target[_F["open"]] = rng.uniform(0.0, 0.7)
        f = intensity * target
    elif label == NONE_LABEL:
        a, b = rng.choice(np.arange(1, 8), size=2, replace=False)
        f = rng.uniform(0.1, 0.35) * _TARGETS[a] + rng.uniform(0.1, 0.35) * _TARGETS[b]
    else:  # UNCERTAIN
        a, b = _CONFLICTS[rng.integers(len(_CONFLICTS))]
        w = rng.uniform(0.4, 0.6)
        intensity = rng.uniform(0.7, 1.0)
        f = intensity * (w * _TARGETS[a] + (1.0 - w) * _TARGETS[b])
    # per-person resting-face variation -> classes overlap at low intensity
    f = f + rng.normal(0.0, 0.09, size=f.shape)
    if valence is not None and label <= NONE_LABEL:
        f[_F["curve"]] += 0.2 * float(valence)
    if arousal is not None and label <= NONE_LABEL:
        f[_F["eye_open"]] += 0.15 * float(arousal)
        f[_F["brow_raise"]] += 0.1 * float(arousal)
    f = np.clip(f, -1.3, 1.3)
    for name in ("open", "asym", "lip_raise", "cheek", "press"):
        f[_F[name]] = max(f[_F[name]], 0.0)
    f[_F["brow_squeeze"]] = max(f[_F["brow_squeeze"]], -0.3)
    return f, side


# --------------------------------------------------------------------------
# face-frame geometry
# --------------------------------------------------------------------------


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, n: int = 20, a0: float = 0.0, a1: float = 2 * math.pi
) -> np.ndarray:
    t = np.linspace(a0, a1, n, endpoint=not math.isclose(a1 - a0, 2 * math.pi))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _identity(rng: np.random.Generator) -> dict:
    """Random person: proportions and colours."""
    u = rng.uniform
    skin_t = u(0.0, 1.0) ** 1.2
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * skin_t + rng.normal(0, 6, 3)
    skin = np.clip(skin, 20, 255)
    hair_style = int(rng.choice(5, p=[0.14, 0.34, 0.3, 0.12, 0.1]))
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * u(0.85, 1.15)
    if hair_style == 0 or rng.random() < 0.3:
        brow = skin * u(0.25, 0.45)
    else:
        brow = hair * u(0.5, 0.9)
    lip = np.clip(skin * np.array([0.82, 0.58, 0.58]) + np.array([30.0, 4.0, 6.0]), 0, 255)
    nose_y = u(0.1, 0.24)
    return {
        "jaw": u(0.05, 0.3),
        "chin": u(1.12, 1.3),
        "forehead": u(1.3, 1.5),
        "ex": u(0.36, 0.46),
        "ey": u(-0.26, -0.14),
        "ew": u(0.16, 0.21),
        "eh": u(0.075, 0.1),
        "gaze": (u(-0.3, 0.3), u(-0.15, 0.15)),
        "brow_gap": u(0.19, 0.26),
        "brow_thick": u(0.035, 0.075),
        "brow_arch": u(0.0, 0.06),
        "nose_y": nose_y,
        "nose_w": u(0.12, 0.19),
        "mouth_y": nose_y + u(0.3, 0.4),
        "mouth_w": u(0.27, 0.37),
        "lip_up": u(0.03, 0.055),
        "lip_lo": u(0.045, 0.08),
        "hair_style": hair_style,
        "hairline": u(-1.05, -0.8),
        "parting": u(-0.4, 0.4),
        "glasses": rng.random() < 0.08,
        "beard": rng.random() < 0.08,
        "skin": skin,
        "lip": lip,
        "hair": np.clip(hair, 0, 255),
        "brow": np.clip(brow, 0, 255),
        "iris": np.array(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], dtype=np.float64),
        "clothes": rng.uniform(20, 235, 3),
        "light_side": 1 if rng.random() < 0.5 else -1,
    }


def _outline(idn: dict, drop: float, t: np.ndarray) -> np.ndarray:
    s, c = np.sin(t), np.cos(t)
    low = np.maximum(s, 0.0)
    x = c * (1.0 - idn["jaw"] * low**2)
    y = np.where(s > 0, s * idn["chin"], s * idn["forehead"]) + drop * low**3
    return np.stack([x, y], axis=1)


def _geometry(idn: dict, f: np.ndarray, side: int) -> dict:
    """All face-frame geometry (points, polylines) for one face."""
    g: dict = {}
    curve, mopen, width = f[_F["curve"]], f[_F["open"]], f[_F["width"]]
    b_raise, b_slant, b_squeeze = f[_F["brow_raise"]], f[_F["brow_slant"]], f[_F["brow_squeeze"]]
    eye_open, asym, lip_raise = f[_F["eye_open"]], f[_F["asym"]], f[_F["lip_raise"]]
    cheek, press = f[_F["cheek"]], f[_F["press"]]

    lm = np.zeros((68, 2))
    z = np.zeros(68)

    # --- outline and jaw (0-16)
    drop = 0.12 * min(mopen, 1.2)
    g["outline"] = _outline(idn, drop, np.linspace(0, 2 * math.pi, 48, endpoint=False))
    lm[0:17] = _outline(idn, drop, np.linspace(math.pi + 0.25, -0.25, 17))

    # --- eyes (36-47)
    ex, ey, ew, eh = idn["ex"], idn["ey"], idn["ew"], idn["eh"]
    h = float(np.clip(eh * (1.0 + 0.75 * eye_open), 0.012, 2.3 * eh))
    lower_k = 0.75 * (1.0 - 0.45 * min(cheek, 1.2))
    u = np.linspace(-1.0, 1.0, 11)
    prof = (1.0 - u**2) ** 0.7
    eyes = []
    for k, cx in enumerate((-ex, ex)):
        xs = cx + u * ew
        up = ey - h * prof
        lo = ey + h * lower_k * prof
        eyes.append((xs, up, lo))
        uu = np.array([-1.0, -0.35, 0.35, 1.0, 0.35, -0.35])
        pp = (1.0 - uu**2) ** 0.7
        yy = np.where(np.arange(6) < 4, ey - h * pp, ey + h * lower_k * pp)
        yy[[0, 3]] = ey
        lm[36 + 6 * k : 42 + 6 * k] = np.stack([cx + uu * ew, yy], axis=1)
        # iris / pupil polygons clipped to the eye opening
        r = 0.5 * ew
        icx = cx + idn["gaze"][0] * 0.4 * ew
        icy = ey + idn["gaze"][1] * h * 0.3
        for name, rr in (("iris", r), ("pupil", 0.42 * r)):
            c = _ellipse(icx, icy, rr, rr, 18)
            c[:, 0] = np.clip(c[:, 0], cx - 0.97 * ew, cx + 0.97 * ew)
            c[:, 1] = np.clip(c[:, 1], np.interp(c[:, 0], xs, up), np.interp(c[:, 0], xs, lo))
            g[f"{name}{k}"] = c
        g[f"glint{k}"] = (icx + 0.3 * r, icy - 0.3 * r, 0.16 * r)
    g["eyes"] = eyes
    g["eye_h"] = h

    # --- brows (17-26): t = 0 outer end, 1 inner end
    t = np.linspace(0.0, 1.0, 9)
    brows = []
    for k, sgn in enumerate((-1.0, 1.0)):
        inner = sgn * max(0.08, ex - ew - 0.03 - 0.07 * b_squeeze)
        outer = sgn * (ex + ew + 0.07)
        bx = outer + t * (inner - outer)
        by = (
            ey
            - idn["brow_gap"]
            - idn["brow_arch"] * 4 * t * (1 - t) ** 1.3
            - 0.13 * b_raise
            - 0.14 * b_slant * t
            + 0.03 * b_slant * (1 - t)
            + 0.02 * max(b_squeeze, 0.0) * t
        )
        by = np.minimum(by, ey - h * 0.9 - 0.045)
        thick = idn["brow_thick"] * (1.0 - 0.45 * np.abs(t - 0.7))
        poly = np.concatenate([np.stack([bx, by - thick / 2], 1), np.stack([bx, by + thick / 2], 1)[::-1]])
        brows.append(poly)
        pts = np.stack([bx, by], 1)[::2]  # 5 points outer -> inner
        lm[17 + 5 * k : 22 + 5 * k] = pts if sgn < 0 else pts[::-1]
    g["brows"] = brows

    # --- nose (27-35)
    ny, nw = idn["nose_y"], idn["nose_w"] * (1.0 + 0.2 * lip_raise)
    top = ey - 0.02
    lm[27:31, 0] = 0.0
    lm[27:31, 1] = top + (ny - top) * np.array([0.0, 1 / 3, 2 / 3, 1.0])
    z[27:31] = [0.1, 0.18, 0.25, 0.32]
    base = ny + 0.06 - 0.035 * lip_raise
    lm[31:36] = np.stack([np.array([-1, -0.5, 0, 0.5, 1]) * nw, base + np.array([-0.01, 0.02, 0.03, 0.02, -0.01])], 1)
    z[31:36] = [0.12, 0.2, 0.24, 0.2, 0.12]
    g["nose_side"] = np.array(
        [
            [0.07 * idn["light_side"], lm[28, 1]],
            [0.09 * idn["light_side"], ny - 0.02],
            [nw * idn["light_side"], base - 0.03],
        ]
    )
    g["nose_z"] = np.array([0.18, 0.28, 0.12])
    g["nostrils"] = [(sgn * nw * 0.5, base - 0.005, nw * 0.28, 0.025) for sgn in (-1, 1)]

    # --- mouth (48-67)
    my = idn["mouth_y"]
    mw = float(np.clip(idn["mouth_w"] * (1.0 + 0.35 * width), 0.16, 0.52))

    def mouth(uu: np.ndarray) -> tuple[np.ndarray, ...]:
        lift = -0.12 * curve
        dl = lift - (0.12 * asym if side < 0 else -0.015 * asym)
        dr = lift - (0.12 * asym if side > 0 else -0.015 * asym)
        x = uu * mw + side * 0.05 * asym * np.maximum(side * uu, 0.0) ** 2
        mid = my + np.where(uu < 0, dl, dr) * uu**2
        gap = 0.3 * mopen * np.sqrt(np.clip(1.0 - uu**2, 0.0, 1.0))
        bell = np.clip(1.0 - (uu / 0.7) ** 2, 0.0, 1.0)
        in_up = mid - 0.3 * gap - 0.05 * lip_raise * bell
        in_lo = mid + 0.7 * gap
        fall = 1.0 - 0.6 * uu**2
        thin = 1.0 - 0.65 * min(press, 1.2) / 1.2
        out_up = in_up - idn["lip_up"] * thin * fall - 0.004 + 0.012 * np.exp(-((uu / 0.15) ** 2))
        out_lo = in_lo + idn["lip_lo"] * thin * fall + 0.004
        return x, mid, in_up, in_lo, out_up, out_lo

    ud = np.linspace(-1.0, 1.0, 17)
    g["mouth"] = mouth(ud)
    x, mid, in_up, in_lo, out_up, out_lo = mouth(np.array([-1, -0.6, -0.25, 0, 0.25, 0.6, 1.0]))
    lm[48:55] = np.stack([x, out_up], 1)
    lm[48] = (x[0], mid[0])
    lm[54] = (x[-1], mid[-1])
    lm[55:60] = np.stack([x[5:0:-1], out_lo[5:0:-1]], 1)
    x, mid, in_up, in_lo, out_up, out_lo = mouth(np.array([-0.9, -0.4, 0, 0.4, 0.9]))
    lm[60] = (x[0], 0.5 * (in_up[0] + in_lo[0]))
    lm[61:64] = np.stack([x[1:4], in_up[1:4]], 1)
    lm[64] = (x[4], 0.5 * (in_up[4] + in_lo[4]))
    lm[65:68] = np.stack([x[3:0:-1], in_lo[3:0:-1]], 1)
    g["mouth_open"] = mopen + 0.5 * lip_raise
    g["curve"], g["lip_raise"] = float(curve), float(lip_raise)

    # --- expression lines
    lines = []
    fold = max(cheek, 0.7 * lip_raise, 0.6 * curve)
    if fold > 0.2:
        for sgn in (-1, 1):
            cx_ = lm[48 if sgn < 0 else 54]
            p0 = np.array([sgn * (nw + 0.06), ny - 0.03])
            p2 = np.array([cx_[0] + sgn * 0.07, cx_[1] + 0.06])
            p1 = 0.5 * (p0 + p2) + np.array([sgn * 0.05, 0.0])
            tt = np.linspace(0, 1, 7)[:, None]
            lines.append(((1 - tt) ** 2 * p0 + 2 * tt * (1 - tt) * p1 + tt**2 * p2, min(fold, 1.0)))
        for sgn in (-1, 1):  # raised cheek crease under the eye
            if cheek > 0.35:
                lines.append(
                    (
                        _ellipse(sgn * ex, ey + 0.12, ew * 0.8, 0.04, 6, 0.25 * math.pi, 0.75 * math.pi),
                        min(cheek, 1.0) * 0.7,
                    )
                )
    if lip_raise > 0.25:
        for j in range(3):
            yy = top + 0.06 + 0.045 * j
            lines.append((_ellipse(0.0, yy, 0.09, 0.025, 6, 1.15 * math.pi, 1.85 * math.pi), min(lip_raise, 1.0)))
    if b_squeeze > 0.3 and b_slant < -0.2:
        for sgn in (-1, 1):
            xg = sgn * 0.045
            lines.append((np.array([[xg, lm[21, 1] - 0.02], [xg * 0.7, lm[21, 1] + 0.09]]), min(b_squeeze, 1.0)))
    if b_raise > 0.4:
        ytop = min(lm[19, 1], lm[24, 1])
        for j in range(3):
            yy = ytop - 0.1 - 0.075 * j
            if yy > idn["hairline"] + 0.08:
                lines.append(
                    (_ellipse(0.0, yy + 0.08, 0.42, 0.08, 9, 1.2 * math.pi, 1.8 * math.pi), min(b_raise, 1.0) * 0.8)
                )
    g["lines"] = lines

    # --- hair, ears, neck, shoulders
    fh = idn["forehead"]
    hl = idn["hairline"]
    st = idn["hair_style"]
    if st:
        tt = np.linspace(math.pi * 1.06, math.pi * 1.94, 18)
        grow = 1.1 if st != 3 else 1.2
        cap_top = np.stack([np.cos(tt) * grow, np.sin(tt) * fh * (grow + 0.02)], 1)
        xs = np.linspace(1.0, -1.0, 11)
        hair_line = hl + 0.3 * (np.abs(xs - idn["parting"] * 0.5) / 1.1) ** 1.5 + 0.05 * np.sin(xs * 9.0)
        if st == 4:  # fringe
            hair_line = hl + 0.22 + 0.06 * np.sin(xs * 17.0)
        cap = np.concatenate([cap_top, np.stack([xs, hair_line], 1)])
        g["hair_cap"] = cap
        if st == 2:  # long hair behind
            g["hair_back"] = np.concatenate(
                [
                    _ellipse(0, -0.05, 1.3, fh * 1.15, 24, math.pi, 2 * math.pi),
                    [[1.35, 1.6], [0.9, 1.9], [-0.9, 1.9], [-1.35, 1.6]],
                ]
            )
        elif st == 3:  # big curly volume
            g["hair_back"] = _ellipse(0, -0.35, 1.55, fh * 1.05, 28)
    g["ears"] = [_ellipse(sgn * 0.98, ey + 0.18, 0.14, 0.26, 12) for sgn in (-1, 1)]
    g["neck"] = np.array([[-0.48, 0.6], [0.48, 0.6], [0.55, 1.9], [-0.55, 1.9]])
    g["shoulders"] = _ellipse(0.0, idn["chin"] + 1.35, 2.3, 0.9, 28)
    if idn["beard"]:
        jaw = lm[2:15]
        g["beard"] = np.concatenate(
            [jaw, np.stack([np.linspace(0.62, -0.62, 9), my + 0.1 + 0.06 * np.cos(np.linspace(0.2, -0.2, 9))], 1)]
        )
    g["lm68"] = lm
    g["z68"] = z
    return g


# --------------------------------------------------------------------------
# pose
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Pose:
    yaw: float  # radians, cylinder warp
    theta: float  # in-plane rotation, radians
    scale: float  # pixels per face unit (target resolution)
    cx: float
    cy: float
    ss: int  # supersampling factor

    def warp(self, p: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        x = p[:, 0]
        xc = np.clip(x, -1.0, 1.0)
        a = np.arcsin(xc)
        a2 = a + self.yaw * (1.0 - (2.0 * a / math.pi) ** 2)
        x2 = x + np.sin(a2) - xc
        if z is not None:
            x2 = x2 + z * math.sin(self.yaw)
        return np.stack([x2, p[:, 1]], 1)

    def image(self, p: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
        q = self.warp(np.asarray(p, dtype=np.float64), z)
        c, s = math.cos(self.theta), math.sin(self.theta)
        x = self.cx + self.scale * (c * q[:, 0] - s * q[:, 1])
        y = self.cy + self.scale * (s * q[:, 0] + c * q[:, 1])
        return np.stack([x, y], 1)

    def draw(self, p: np.ndarray, z: np.ndarray | None = None) -> list[float]:
        return ((self.image(p, z) + 0.5) * self.ss - 0.5).ravel().tolist()

    def px(self, units: float, minimum: int = 1) -> int:
        return max(minimum, int(round(units * self.scale * self.ss)))


def _pose(rng: np.random.Generator, outline: np.ndarray, w: int, h: int, frac: tuple[float, float], ss: int) -> _Pose:
    yaw = float(np.clip(rng.normal(0.0, 0.15), -0.35, 0.35))
    theta = float(np.clip(rng.normal(0.0, math.radians(8.0)), -math.radians(22), math.radians(22)))
    unit = _Pose(yaw, theta, 1.0, 0.0, 0.0, 1).image(outline)
    lo, hi = unit.min(0), unit.max(0)
    ext = hi - lo
    side = rng.uniform(frac[0], frac[1]) * min(w, h)
    scale = side / float(ext.max())
    # keep the box fully inside: x in [0, w-1]
    xmin = -lo[0] * scale
    xmax = (w - 1) - hi[0] * scale
    ymin = -lo[1] * scale
    ymax = (h - 1) - hi[1] * scale
    cx = rng.uniform(xmin, max(xmin, xmax))
    cy = rng.uniform(ymin, max(ymin, ymax))
    return _Pose(yaw, theta, scale, cx, cy, ss)


# --------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------


def _rgb(c: np.ndarray | tuple) -> tuple[int, int, int]:
    a = np.clip(np.asarray(c, dtype=np.float64), 0, 255)
    return (int(a[0]), int(a[1]), int(a[2]))


def _supersample_factor(w: int, h: int) -> int:
    """4x supersampling up to 80 px, 2x up to 320 px, none above."""
    m = max(w, h)
    if m <= 80:
        return 4
    if m <= 320:
        return 2
    return 1


def _gauss_lut() -> np.ndarray:
    """256 equiprobable standard-normal quantiles: a uniform random byte indexes a N(0, 1) sample."""
    nd = statistics.NormalDist()
    lut = np.array([nd.inv_cdf((i + 0.5) / 256.0) for i in range(256)], dtype=np.float32)
    lut /= lut.std()
    lut.setflags(write=False)
    return lut


_GAUSS_LUT = _gauss_lut()


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Fast (quantised) standard-normal noise: ~5x cheaper than ``standard_normal``."""
    idx = np.frombuffer(rng.bytes(math.prod(shape)), dtype=np.uint8)
    return np.take(_GAUSS_LUT, idx).reshape(shape)


@functools.lru_cache(maxsize=8)
def _grid(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    m = float(max(w, h))
    gx = ((np.arange(w, dtype=np.float32) - (w - 1) / 2) * (2.0 / m))[None, :]
    gy = ((np.arange(h, dtype=np.float32) - (h - 1) / 2) * (2.0 / m))[:, None]
    gx.setflags(write=False)
    gy.setflags(write=False)
    return gx, gy


def _background(rng: np.random.Generator, w: int, h: int, ss: int) -> Image.Image:
    """Two-colour linear gradient in a random direction at the drawing resolution."""
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * math.pi)
    n = 16  # a linear ramp on a coarse grid, bilinearly upsampled (exact up to edge clamping)
    gx, gy = _grid(n, n)
    m = max(w, h)
    t = np.clip(0.5 + 0.5 * (gx * (math.cos(ang) * w / m) + gy * (math.sin(ang) * h / m)), 0.0, 1.0)
    ramp = Image.fromarray((t * 255.0 + 0.5).astype(np.uint8), "L")
    ramp = ramp.resize((w * ss, h * ss), Image.Resampling.BILINEAR)
    k = np.arange(256) / 255.0
    bands = [ramp.point((c0[i] + (c1[i] - c0[i]) * k).astype(np.uint8).tolist()) for i in range(3)]
    return Image.merge("RGB", bands)


def _clutter(rng: np.random.Generator, d: ImageDraw.ImageDraw, W: int, H: int, n: int) -> None:
    m = min(W, H)
    for _ in range(n):
        kind = rng.integers(4)
        col = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        rx, ry = rng.uniform(0.04, 0.3, 2) * m
        if kind == 0:
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
        elif kind == 1:
            d.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=col)
        elif kind == 2:
            k = int(rng.integers(3, 7))
            a = np.sort(rng.uniform(0, 2 * math.pi, k))
            rr = rng.uniform(0.5, 1.0, k)
            pts = np.stack([cx + rx * rr * np.cos(a), cy + ry * rr * np.sin(a)], 1)
            d.polygon(pts.ravel().tolist(), fill=col)
        else:
            x2, y2 = rng.uniform(0, W), rng.uniform(0, H)
            d.line([cx, cy, x2, y2], fill=col, width=max(1, int(rng.uniform(0.005, 0.04) * m)))


def _render_face(rng: np.random.Generator, d: ImageDraw.ImageDraw, g: dict, idn: dict, pose: _Pose) -> None:
    skin = idn["skin"]
    shade = skin * 0.72
    P = pose.draw
    # body
    d.polygon(P(g["shoulders"]), fill=_rgb(idn["clothes"]))
    d.polygon(P(g["neck"]), fill=_rgb(skin * 0.85))
    if "hair_back" in g:
        d.polygon(P(g["hair_back"]), fill=_rgb(idn["hair"] * 0.85))
    for ear in g["ears"]:
        d.polygon(P(ear), fill=_rgb(skin * 0.92))
    # face
    d.polygon(P(g["outline"]), fill=_rgb(skin))
    if "beard" in g:
        d.polygon(P(g["beard"]), fill=_rgb(idn["hair"] * 0.9 + skin * 0.1))
    if "hair_cap" in g:
        d.polygon(P(g["hair_cap"]), fill=_rgb(idn["hair"]))
    # brows
    for poly in g["brows"]:
        d.polygon(P(poly), fill=_rgb(idn["brow"]))
    # eyes
    lid_w = pose.px(0.022)
    for k, (xs, up, lo) in enumerate(g["eyes"]):
        upper = np.stack([xs, up], 1)
        lower = np.stack([xs, lo], 1)
        d.polygon(P(np.concatenate([upper, lower[::-1]])), fill=(238, 234, 228))
        d.polygon(P(g[f"iris{k}"]), fill=_rgb(idn["iris"]))
        d.polygon(P(g[f"pupil{k}"]), fill=(12, 10, 10))
        if g["eye_h"] > 0.05:
            gx, gy, gr = g[f"glint{k}"]
            q = pose.image(np.array([[gx, gy]]))[0]
            r = max(0.5, gr * pose.scale) * pose.ss
            q = (q + 0.5) * pose.ss - 0.5
            d.ellipse([q[0] - r, q[1] - r, q[0] + r, q[1] + r], fill=(250, 250, 250))
        d.line(P(upper), fill=(25, 18, 15), width=lid_w, joint="curve")
        d.line(P(lower), fill=_rgb(shade * 0.9), width=max(1, lid_w // 2))
    # nose
    d.line(P(g["nose_side"], g["nose_z"]), fill=_rgb(shade), width=pose.px(0.02), joint="curve")
    lm = g["lm68"]
    d.line(P(lm[31:36], g["z68"][31:36]), fill=_rgb(shade * 0.9), width=pose.px(0.018), joint="curve")
    for nx, ny_, rx, ry in g["nostrils"]:
        d.polygon(P(_ellipse(nx, ny_, rx, ry, 10), np.full(10, 0.2)), fill=_rgb(skin * 0.4))
    # expression lines
    for pts, strength in g["lines"]:
        col = skin * (1.0 - 0.4 * strength)
        d.line(P(pts), fill=_rgb(col), width=pose.px(0.018), joint="curve")
    # mouth
    x, mid, in_up, in_lo, out_up, out_lo = g["mouth"]
    lip = _rgb(idn["lip"])
    outer = np.concatenate([np.stack([x, out_up], 1), np.stack([x, out_lo], 1)[::-1]])
    d.polygon(P(outer), fill=lip)
    if g["mouth_open"] > 0.08:
        inner = np.concatenate([np.stack([x, in_up], 1), np.stack([x, in_lo], 1)[::-1]])
        d.polygon(P(inner), fill=(60, 20, 22))
        show = min(1.0, 0.3 + 1.5 * max(g["curve"], 0.0) + g["lip_raise"])
        teeth_h = np.minimum(in_lo - in_up, 0.06 * show)
        teeth = np.concatenate([np.stack([x * 0.92, in_up], 1), np.stack([x * 0.92, in_up + teeth_h], 1)[::-1]])
        d.polygon(P(teeth), fill=(240, 236, 226))
    d.line(P(np.stack([x, mid], 1)), fill=_rgb(idn["lip"] * 0.45), width=pose.px(0.016), joint="curve")
    if idn["glasses"]:
        col = _rgb(rng.uniform(0, 80, 3))
        for xs, _, _ in g["eyes"]:
            cx = float(xs.mean())
            d.line(
                P(_ellipse(cx, idn["ey"], idn["ew"] * 1.35, idn["ew"] * 0.95, 20)[list(range(20)) + [0]]),
                fill=col,
                width=pose.px(0.025),
            )
        e0, e1 = g["eyes"][0][0][-1], g["eyes"][1][0][0]
        d.line(
            P(np.array([[e0 + idn["ew"] * 0.3, idn["ey"] - 0.05], [e1 - idn["ew"] * 0.3, idn["ey"] - 0.05]])),
            fill=col,
            width=pose.px(0.025),
        )


def _draw_no_face(rng: np.random.Generator, d: ImageDraw.ImageDraw, W: int, H: int) -> None:
    m = min(W, H)
    kind = int(rng.integers(5))
    cx, cy = rng.uniform(0.3, 0.7) * W, rng.uniform(0.3, 0.7) * H
    s = rng.uniform(0.3, 0.7) * m
    col = lambda: tuple(int(v) for v in rng.integers(0, 256, 3))  # noqa: E731
    lw = max(1, int(0.015 * m))
    if kind == 0:  # clutter only
        _clutter(rng, d, W, H, int(rng.integers(4, 12)))
    elif kind == 1:  # house
        x0, y0 = cx - s / 2, cy - s / 4
        d.rectangle([x0, y0, x0 + s, y0 + s * 0.65], fill=col(), outline=(20, 20, 20), width=lw)
        d.polygon([x0 - s * 0.1, y0, x0 + s * 0.5, y0 - s * 0.45, x0 + s * 1.1, y0], fill=col())
        d.rectangle([x0 + s * 0.42, y0 + s * 0.3, x0 + s * 0.6, y0 + s * 0.65], fill=col())
        for wx in (0.12, 0.72):
            d.rectangle(
                [x0 + s * wx, y0 + s * 0.12, x0 + s * (wx + 0.16), y0 + s * 0.28],
                fill=(200, 220, 240),
                outline=(30, 30, 30),
                width=lw,
            )
    elif kind == 2:  # car silhouette
        x0, y0 = cx - s / 2, cy - s * 0.1
        body = col()
        d.rounded_rectangle([x0, y0, x0 + s, y0 + s * 0.28], radius=s * 0.06, fill=body)
        d.polygon(
            [x0 + s * 0.2, y0, x0 + s * 0.32, y0 - s * 0.2, x0 + s * 0.7, y0 - s * 0.2, x0 + s * 0.82, y0], fill=body
        )
        for wx in (0.22, 0.78):
            r = s * 0.11
            d.ellipse([x0 + s * wx - r, y0 + s * 0.28 - r, x0 + s * wx + r, y0 + s * 0.28 + r], fill=(20, 20, 20))
    elif kind == 3:  # geometric objects
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(3, 9))
            r = rng.uniform(0.1, 0.3) * m
            px, py = rng.uniform(r, W - r), rng.uniform(r, H - r)
            a = np.linspace(0, 2 * math.pi, k, endpoint=False) + rng.uniform(0, math.pi)
            rr = np.where(np.arange(k) % 2 == 0, r, r * rng.uniform(0.4, 1.0)) if k > 5 else r
            pts = np.stack([px + rr * np.cos(a), py + rr * np.sin(a)], 1)
            d.polygon(pts.ravel().tolist(), fill=col(), outline=(20, 20, 20), width=lw)
    else:  # broken face-like drawing
        variant = int(rng.integers(3))
        if variant < 2:
            rx, ry = s * 0.4, s * 0.52
            skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * rng.uniform()
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=_rgb(skin))
        n = 0 if variant == 0 else int(rng.integers(2, 6))
        for _ in range(n if variant else 0):
            r = rng.uniform(0.03, 0.12) * s
            px, py = cx + rng.uniform(-0.5, 0.5) * s, cy + rng.uniform(-0.5, 0.5) * s
            d.ellipse([px - r, py - r, px + r, py + r], fill=col())
        if variant == 2:  # just circles, loosely arranged
            for _ in range(int(rng.integers(2, 5))):
                r = rng.uniform(0.05, 0.2) * s
                px, py = cx + rng.uniform(-0.6, 0.6) * s, cy + rng.uniform(-0.6, 0.6) * s
                d.ellipse([px - r, py - r, px + r, py + r], outline=col(), width=lw)


def _neutral_template_landmarks(w: int, h: int) -> np.ndarray:
    """The neutral mean face placed in a box centred in the image."""
    idn = {
        "jaw": 0.17,
        "chin": 1.21,
        "forehead": 1.4,
        "ex": 0.41,
        "ey": -0.2,
        "ew": 0.185,
        "eh": 0.0875,
        "gaze": (0.0, 0.0),
        "brow_gap": 0.225,
        "brow_thick": 0.055,
        "brow_arch": 0.03,
        "nose_y": 0.17,
        "nose_w": 0.155,
        "mouth_y": 0.52,
        "mouth_w": 0.32,
        "lip_up": 0.042,
        "lip_lo": 0.062,
        "hair_style": 0,
        "hairline": -0.9,
        "parting": 0.0,
        "beard": False,
        "light_side": 1,
    }
    g = _geometry(idn, np.zeros(len(EXPRESSION_FEATURES)), 1)
    ol = g["outline"]
    ext = ol.max(0) - ol.min(0)
    scale = 0.6 * min(w, h) / float(ext.max())
    centre = 0.5 * (ol.max(0) + ol.min(0))
    pose = _Pose(0.0, 0.0, scale, (w - 1) / 2 - centre[0] * scale, (h - 1) / 2 - centre[1] * scale, 1)
    return pose.image(g["lm68"])


def _postprocess(rng: np.random.Generator, img: Image.Image, w: int, h: int, ss: int, grey: bool) -> Image.Image:
    if ss > 1:
        img = img.reduce(ss)
    gx, gy = _grid(w, h)
    ang = rng.uniform(0, 2 * math.pi)
    amp = rng.uniform(0.0, 0.35)
    gain = rng.uniform(0.75, 1.15)
    light = (gain * (1.0 + amp * (gx * math.cos(ang) + gy * math.sin(ang)))).astype(np.float32)
    cast = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    bias = np.float32(rng.uniform(-15, 15))
    sigma = rng.uniform(0.0, 10.0)
    blur = rng.uniform(0.3, 1.2) * max(w, h) / 224.0 if rng.random() < 0.25 else 0.0
    arr = np.asarray(img, dtype=np.float32)
    if grey:
        arr = arr @ (np.array([0.299, 0.587, 0.114], dtype=np.float32) * cast)
        arr = arr * light + bias
        arr += _gaussian_noise(rng, arr.shape) * np.float32(sigma)
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")
    else:
        arr = arr * light[..., None] * cast + bias
        arr += _gaussian_noise(rng, arr.shape) * np.float32(sigma)
        out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if blur > 0.2:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    return out.convert("RGB") if grey else out


def _derived(lm68: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm5 = np.stack([lm68[36:42].mean(0), lm68[42:48].mean(0), lm68[30], lm68[48], lm68[54]])
    return lm5.astype(np.float32), lm68[LANDMARKS37_FROM_68].astype(np.float32)


def draw_face(
    rng: np.random.Generator,
    label: int,
    *,
    size: tuple[int, int] = (224, 224),
    valence: float | None = None,
    arousal: float | None = None,
    face_fraction: tuple[float, float] = (0.45, 0.8),
    grey: bool = False,
) -> DrawnFace:
    """Draw one synthetic image showing the given expression label.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness; equal states give identical output.
    label : int
        Canonical AffectNet label 0..10 (see :data:`LABEL_NAMES`).
    size : tuple of int, optional
        Output ``(width, height)`` in pixels, each at least 16.
    valence, arousal : float or None, optional
        If given (labels 0-8), they set the expression intensity (distance
        from the origin relative to the class's typical region) and nudge
        mouth curvature (valence) and eye/brow opening (arousal).  A missing
        one of the two is taken as the class mean.  When both are None the
        intensity is random.  Ignored for labels 9 and 10.
    face_fraction : tuple of float, optional
        ``(lo, hi)``: the longer side of the face box is a uniform fraction in
        this range of the shorter image side.  ``0 < lo <= hi <= 1``.
    grey : bool, optional
        Return an RGB image whose three channels are equal.

    Returns
    -------
    DrawnFace
        Image, face box, 68/5/37-point landmarks and the face flag.
    """
    lab = _check_label(label)
    w, h = (int(v) for v in size)
    if w < 16 or h < 16:
        raise ValueError(f"size must be at least 16x16, got {size!r}")
    lo, hi = (float(v) for v in face_fraction)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"face_fraction must satisfy 0 < lo <= hi <= 1, got {face_fraction!r}")
    ss = _supersample_factor(w, h)
    canvas = _background(rng, w, h, ss)
    d = ImageDraw.Draw(canvas)
    _clutter(rng, d, w * ss, h * ss, int(rng.integers(1, 7)))
    if lab == NO_FACE:
        _draw_no_face(rng, d, w * ss, h * ss)
        lm68 = _neutral_template_landmarks(w, h)
        bw = rng.uniform(0.2, 0.8) * w
        bh = rng.uniform(0.2, 0.8) * h
        box = (float(rng.uniform(0, w - 1 - bw)), float(rng.uniform(0, h - 1 - bh)), float(bw), float(bh))
        is_face = False
    else:
        f, side = _expression(rng, lab, valence if lab <= NONE_LABEL else None, arousal if lab <= NONE_LABEL else None)
        idn = _identity(rng)
        g = _geometry(idn, f, side)
        pose = _pose(rng, g["outline"], w, h, (lo, hi), ss)
        _render_face(rng, d, g, idn, pose)
        lm68 = pose.image(g["lm68"], g["z68"])
        ol = pose.image(g["outline"])
        mn = np.clip(ol.min(0), 0.0, None)
        mx = np.minimum(ol.max(0), [w - 1, h - 1])
        box = (float(mn[0]), float(mn[1]), float(mx[0] - mn[0]), float(mx[1] - mn[1]))
        is_face = True
    image = _postprocess(rng, canvas, w, h, ss, grey)
    lm68 = lm68.astype(np.float32)
    lm5, lm37 = _derived(lm68)
    return DrawnFace(image=image, box=box, landmarks68=lm68, landmarks5=lm5, landmarks37=lm37, is_face=is_face)


def contact_sheet(seed: int = 0, *, per_class: int = 6, cell: int = 128, landmarks: bool = False) -> Image.Image:
    """Grid of ``11 x per_class`` drawings (one row per label) for inspection."""
    rng = np.random.default_rng(seed)
    label_w = 80
    sheet = Image.new("RGB", (label_w + per_class * cell, 11 * cell), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for lab in range(11):
        d.text((4, lab * cell + cell // 2 - 6), f"{lab} {LABEL_NAMES[lab]}", fill=(0, 0, 0))
        for j in range(per_class):
            df = draw_face(rng, lab, size=(cell, cell), grey=(j == per_class - 1))
            tile = df.image
            if landmarks:
                td = ImageDraw.Draw(tile)
                for x, y in df.landmarks68:
                    td.point((float(x), float(y)), fill=(0, 255, 0))
                bx, by, bw, bh = df.box
                td.rectangle([bx, by, bx + bw, by + bh], outline=(255, 0, 0))
            sheet.paste(tile, (label_w + j * cell, lab * cell))
    return sheet


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "faces_grid.png"
    contact_sheet(0, landmarks=len(sys.argv) > 2 and sys.argv[2] == "--landmarks").save(out)
    print(f"wrote {out}")
