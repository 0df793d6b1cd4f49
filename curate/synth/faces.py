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

Modules
-------
The work is split by job: :mod:`curate.synth.face_expression` (labels, expression
features, valence/arousal), :mod:`curate.synth.face_geometry` (identity, outline and the
68 landmarks in the face frame), :mod:`curate.synth.face_pose` (yaw, rotation, scale,
placement) and :mod:`curate.synth.face_render` (background, clutter, drawing,
post-processing). This module chains them in :func:`draw_face` and holds the public names
(``__all__``); callers import from here.

Run ``python -m curate.synth.faces OUT.png`` (or this file directly) to write
a contact sheet of 11 classes x 6 examples for visual inspection.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from PIL import Image, ImageDraw

from curate.synth.face_expression import (
    EXPRESSION_FEATURES,
    LABEL_NAMES,
    NO_FACE,
    NONE_LABEL,
    UNCERTAIN,
    _check_label,
    _expression,
    sample_valence_arousal,
)
from curate.synth.face_geometry import LANDMARKS37_FROM_68, _geometry, _identity, _neutral_template_landmarks
from curate.synth.face_pose import _pose
from curate.synth.face_render import (
    _background,
    _clutter,
    _draw_no_face,
    _postprocess,
    _render_face,
    _supersample_factor,
)

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
