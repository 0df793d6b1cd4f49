"""Pose of a synthetic face: yaw (cylinder warp), in-plane rotation, scale and placement.

Part of the procedural face drawing (:mod:`curate.synth.faces`): :class:`_Pose` maps
face-frame points to image pixels (and to the supersampled drawing canvas).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


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
