"""Rendering of a synthetic image: background, clutter, face, No-Face drawings, post-processing.

Part of the procedural face drawing (:mod:`curate.synth.faces`). Drawing happens on a
supersampled canvas (:func:`_supersample_factor`) that :func:`_postprocess` reduces to the
target size before lighting, colour cast, noise and blur.
"""

from __future__ import annotations

import functools
import math
import statistics

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from curate.synth.face_geometry import _SKIN_DARK, _SKIN_LIGHT, _ellipse
from curate.synth.face_pose import _Pose


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
