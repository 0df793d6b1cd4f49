"""Faces in ordinary photographs: detect them, cut them out as the builders do.

Detector
--------
OpenCV's frontal-face Haar cascade (``haarcascade_frontalface_default.xml``), which ships
inside the ``opencv-python-headless`` wheel (``cv2.data.haarcascades``): nothing is
downloaded at run time. Compared before choosing:

* MediaPipe's face detector (BlazeFace) is better on profiles and small faces, but the
  ``mediapipe`` wheel (1.2.2) carries no model file: its Tasks API needs a ``.tflite`` it
  downloads, and the legacy ``solutions`` that bundled one are gone from the wheel.
* OpenCV's YuNet (``cv2.FaceDetectorYN``) likewise needs an ONNX file the wheel lacks.
* Of the bundled cascades, ``frontalface_default`` and ``frontalface_alt2`` both find the
  one face of ``skimage.data.astronaut()`` (boxes 95 and 97 px at (177, 66)); ``default``
  is the one OpenCV's own samples use.

A Haar cascade finds upright frontal faces of at least :data:`MIN_FACE` pixels; it misses
strong profiles and tilted heads, which is what the per-image "no face" rows are for.

Crop
----
:func:`crop_face` grows the box by :data:`MARGIN` of its size on every side and clamps it to
the image and resizes it to the model's side, with the builders' own functions
(``tfds_builders.common.margin_crop_box`` / ``crop_resize``: the AffectNet ``crop224`` recipe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Margin added on every side of a detected box, as a share of its size (the builders' 20 %).
MARGIN = 0.2
#: Smallest face side the detector looks for, in pixels.
MIN_FACE = 24
#: The bundled cascade file (``cv2.data.haarcascades``).
CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class FaceBox:
    """A detected face in image pixels (``x, y`` top-left, ``width, height``)."""

    x: int
    y: int
    width: int
    height: int

    def iou(self, other: FaceBox) -> float:
        """Intersection over union with ``other``."""
        ix = max(0, min(self.x + self.width, other.x + other.width) - max(self.x, other.x))
        iy = max(0, min(self.y + self.height, other.y + other.height) - max(self.y, other.y))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union else 0.0


_CASCADE: Any = None


def _cascade() -> Any:
    global _CASCADE
    if _CASCADE is None:
        import cv2

        path = cv2.data.haarcascades + CASCADE
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():
            raise RuntimeError(f"OpenCV could not load its bundled face cascade {path}")
        _CASCADE = cascade
    return _CASCADE


def detect_faces(image: np.ndarray, *, min_face: int = MIN_FACE) -> list[FaceBox]:
    """Faces in an RGB or grey uint8 image, largest first (ties: top-left first)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    grey = cv2.equalizeHist(grey)
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
    boxes = [FaceBox(int(x), int(y), int(w), int(h)) for x, y, w, h in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: (-b.width * b.height, b.y, b.x))


def crop_face(image: np.ndarray, box: FaceBox | None, size: int, *, margin: float = MARGIN) -> np.ndarray:
    """The face (``box`` + margin; the whole image when ``box`` is None) as uint8 ``(size, size, 3)``.

    The builders' own crop (``tfds_builders.common.margin_crop_box`` + ``crop_resize``): the
    box grown by ``margin`` of its size on every side, clamped, resized bilinear with antialiasing.
    """
    from PIL import Image

    from tfds_builders import common

    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    picture = Image.fromarray(np.ascontiguousarray(rgb))
    crop = common.CropBox(0, 0, picture.width, picture.height)
    if box is not None:
        crop = common.margin_crop_box((box.x, box.y, box.width, box.height), picture.size, margin=margin)
    return np.asarray(common.crop_resize(picture, crop, size), dtype=np.uint8)
