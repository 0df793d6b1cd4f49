"""Face-frame geometry of a synthetic face: identity, outline, the 68 landmarks and polylines.

Part of the procedural face drawing (:mod:`curate.synth.faces`). The face frame has its
origin at the face centre, x to the image right, y down, half face width = 1; the
:mod:`curate.synth.face_pose` transform takes its points to the image.
"""

from __future__ import annotations

import math

import numpy as np

from curate.synth.face_expression import _F, EXPRESSION_FEATURES
from curate.synth.face_pose import _Pose

#: Indices into the 68-point set that make up the 37-point RAF-DB-like set:
#: both brows (10), both eyes (12), nose bridge top / middle / tip and the
#: nostril base ends and centre (6), eight mouth points (corners, upper and
#: lower lip centre and four lip mid points) and the chin (1).
LANDMARKS37_FROM_68: np.ndarray = np.array(
    list(range(17, 27)) + list(range(36, 48)) + [27, 29, 30, 31, 33, 35] + [48, 49, 51, 53, 54, 55, 57, 59] + [8],
    dtype=np.intp,
)
LANDMARKS37_FROM_68.setflags(write=False)

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
    lm = np.zeros((68, 2))
    z = np.zeros(68)
    _jaw(g, lm, idn, f)
    eye_h = _eyes(g, lm, idn, f)
    _brows(g, lm, idn, f, eye_h)
    nose = _nose(g, lm, z, idn, f)
    _mouth(g, lm, idn, f, side)
    g["lines"] = _expression_lines(lm, idn, f, nose)
    _hair_and_body(g, lm, idn)
    g["lm68"] = lm
    g["z68"] = z
    return g


def _jaw(g: dict, lm: np.ndarray, idn: dict, f: np.ndarray) -> None:
    """Outline and jaw (landmarks 0-16); an open mouth drops the chin."""
    mopen = f[_F["open"]]
    drop = 0.12 * min(mopen, 1.2)
    g["outline"] = _outline(idn, drop, np.linspace(0, 2 * math.pi, 48, endpoint=False))
    lm[0:17] = _outline(idn, drop, np.linspace(math.pi + 0.25, -0.25, 17))


def _eyes(g: dict, lm: np.ndarray, idn: dict, f: np.ndarray) -> float:
    """Eyes (landmarks 36-47), iris, pupil and glint; returns the eye opening height."""
    eye_open, cheek = f[_F["eye_open"]], f[_F["cheek"]]
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
    return h


def _brows(g: dict, lm: np.ndarray, idn: dict, f: np.ndarray, h: float) -> None:
    """Brows (landmarks 17-26), kept above eyes of opening height ``h``; t = 0 outer end, 1 inner end."""
    b_raise, b_slant, b_squeeze = f[_F["brow_raise"]], f[_F["brow_slant"]], f[_F["brow_squeeze"]]
    ex, ey, ew = idn["ex"], idn["ey"], idn["ew"]
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


def _nose(g: dict, lm: np.ndarray, z: np.ndarray, idn: dict, f: np.ndarray) -> tuple[float, float, float]:
    """Nose (landmarks 27-35, with depth), side shading line and nostrils; returns
    ``(nose_y, nose_w, top)`` (tip height, half width, bridge top) for the expression lines."""
    lip_raise = f[_F["lip_raise"]]
    ey = idn["ey"]
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
    return ny, nw, top


def _mouth(g: dict, lm: np.ndarray, idn: dict, f: np.ndarray, side: int) -> None:
    """Mouth (landmarks 48-67): lips as curves of ``u`` in [-1, 1] (corner to corner)."""
    curve, mopen, width = f[_F["curve"]], f[_F["open"]], f[_F["width"]]
    asym, lip_raise, press = f[_F["asym"]], f[_F["lip_raise"]], f[_F["press"]]
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


def _expression_lines(
    lm: np.ndarray, idn: dict, f: np.ndarray, nose: tuple[float, float, float]
) -> list[tuple[np.ndarray, float]]:
    """Expression lines as ``(polyline, strength)``: nasolabial folds, cheek creases, nose
    wrinkles, frown lines, forehead lines. ``lm`` holds the brows and the mouth corners."""
    curve, lip_raise, cheek = f[_F["curve"]], f[_F["lip_raise"]], f[_F["cheek"]]
    b_raise, b_slant, b_squeeze = f[_F["brow_raise"]], f[_F["brow_slant"]], f[_F["brow_squeeze"]]
    ex, ey, ew = idn["ex"], idn["ey"], idn["ew"]
    ny, nw, top = nose
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
    return lines


def _hair_and_body(g: dict, lm: np.ndarray, idn: dict) -> None:
    """Hair (cap, long or curly volume behind), ears, neck, shoulders and beard (along the jaw)."""
    ey, my = idn["ey"], idn["mouth_y"]
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
