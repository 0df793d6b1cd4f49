"""Expression labels, the continuous expression features and valence/arousal sampling.

Part of the procedural face drawing (:mod:`curate.synth.faces`): the per-class targets of
the :data:`EXPRESSION_FEATURES` vector, the conflicting pairs of the Uncertain class, the
valence/arousal circumplex regions and :func:`_expression`, which turns a label (and an
optional valence/arousal) into one feature vector.
"""

from __future__ import annotations

import math

import numpy as np

from curate.labels import CANONICAL_NAMES

#: The canonical names, from the one taxonomy (curate.labels); index = label.
LABEL_NAMES: tuple[str, ...] = CANONICAL_NAMES
NEUTRAL, HAPPY, SAD, SURPRISE, FEAR, DISGUST, ANGER, CONTEMPT = range(8)
NONE_LABEL, UNCERTAIN, NO_FACE = 8, 9, 10

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
