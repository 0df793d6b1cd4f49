"""Per-image ``tf.data`` steps: decode, crop or align, resize, and augment.

* :func:`decode_resize`: encoded bytes or a uint8 tensor -> uint8 ``(S, S, 3)``, grey tiled
  to RGB; aligned by the eyes (:func:`align_by_eyes`, ``--align eyes``) when 68-point
  landmarks are given, else cropped to a face box (AffectNet ``original``) when one is given.
* :func:`eye_alignment`: the same alignment's affine map in NumPy (``train.testing.align_face``).
* :func:`augment`: stateless flip, rotation / translation / zoom and colour jitter.

Everything here runs inside ``tf.data`` maps (TensorFlow is imported by the functions).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def decode_resize(
    image: Any, image_size: int, *, face_box: Any = None, landmarks: Any = None, margin: float = 0.2
) -> Any:
    """Encoded bytes or a uint8 tensor -> uint8 ``(S, S, 3)``; grey is tiled to RGB.

    ``landmarks`` (68 points in the stored image's pixels) align the face by its eyes
    (:func:`align_by_eyes`; ``--align``); else ``face_box`` (normalised ymin, xmin, ymax,
    xmax) crops before resizing, grown by ``margin`` of its size on every side and clamped
    (AffectNet ``original`` config; the builder's ``crop224`` uses the same 20% margin)."""
    import tensorflow as tf

    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    else:
        image = tf.cond(
            tf.shape(image)[-1] == 1,
            lambda: tf.tile(image, [1, 1, 3]),
            lambda: image[..., :3],
        )
    image = tf.ensure_shape(image, [None, None, 3])

    def plain() -> Any:
        size = tf.shape(image)[:2]
        return tf.cond(
            tf.reduce_all(size == image_size),
            lambda: tf.cast(image, tf.float32),
            lambda: tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True),
        )

    if landmarks is not None:
        points = tf.reshape(tf.cast(landmarks, tf.float32), [-1, 2])
        usable = tf.logical_and(
            tf.shape(points)[0] >= 48,
            tf.reduce_all(tf.math.is_finite(points)),
        )
        eyes = tf.cond(
            usable,
            lambda: tf.norm(tf.reduce_mean(points[42:48], 0) - tf.reduce_mean(points[36:42], 0)),
            lambda: tf.constant(0.0),
        )
        resized = tf.cond(eyes > 1e-3, lambda: align_by_eyes(image, points, image_size), plain)
    elif face_box is not None:
        box = tf.reshape(tf.cast(face_box, tf.float32), [1, 4])
        valid = tf.logical_and(box[0, 2] > box[0, 0], box[0, 3] > box[0, 1])
        grow = tf.tile((box[:, 2:] - box[:, :2]) * margin, [1, 2]) * tf.constant([[-1.0, -1.0, 1.0, 1.0]])
        box = tf.clip_by_value(box + grow, 0.0, 1.0)
        box = tf.where(valid, box, tf.constant([[0.0, 0.0, 1.0, 1.0]]))
        resized = tf.image.crop_and_resize(
            tf.cast(image[None], tf.float32), box, [0], [image_size, image_size], method="bilinear"
        )[0]
    else:
        resized = plain()
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


#: Where face alignment puts the eye centres, as fractions of the output side: the mean of
#: 68-point landmarks 36-41 (image-left eye) at (0.3, 0.35), of 42-47 at (0.7, 0.35).
ALIGNED_LEFT_EYE = (0.3, 0.35)
ALIGNED_RIGHT_EYE = (0.7, 0.35)


def eye_alignment(left: np.ndarray, right: np.ndarray, size: int) -> tuple[float, ...]:
    """The affine map (output pixel -> input pixel) ``(a0, a1, a2, b0, b1, b2)`` of the
    similarity transform that puts eye centres ``left`` and ``right`` (input pixels) at
    :data:`ALIGNED_LEFT_EYE` / :data:`ALIGNED_RIGHT_EYE` of a ``size`` square (NumPy; the TF
    pipeline computes the same in :func:`align_by_eyes`)."""
    span = np.asarray(right, np.float64) - np.asarray(left, np.float64)
    scale = (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]) * size / float(np.linalg.norm(span))
    angle = float(np.arctan2(span[1], span[0]))
    ca, sa = np.cos(angle) / scale, np.sin(angle) / scale
    u0, v0 = ALIGNED_LEFT_EYE[0] * size, ALIGNED_LEFT_EYE[1] * size
    return (ca, -sa, left[0] - ca * u0 + sa * v0, sa, ca, left[1] - sa * u0 - ca * v0)


def align_by_eyes(image: Any, landmarks: Any, size: int) -> Any:
    """A float32 ``(size, size, 3)`` face aligned by its 68-point landmarks (TF, in a
    ``tf.data`` map): rotation, scale and shift put the eye centres where
    :func:`eye_alignment` puts them (sampled at twice the size, then reduced by area
    averaging). :func:`decode_resize` calls it only for usable landmarks (both eyes apart)."""
    import tensorflow as tf

    points = tf.reshape(tf.cast(landmarks, tf.float32), [-1, 2])
    left = tf.reduce_mean(points[36:42], axis=0)
    right = tf.reduce_mean(points[42:48], axis=0)
    span = right - left
    distance = tf.norm(span)
    work = 2 * size
    scale = (ALIGNED_RIGHT_EYE[0] - ALIGNED_LEFT_EYE[0]) * work / tf.maximum(distance, 1e-6)
    angle = tf.atan2(span[1], span[0])
    ca, sa = tf.cos(angle) / scale, tf.sin(angle) / scale
    u0, v0 = ALIGNED_LEFT_EYE[0] * work, ALIGNED_LEFT_EYE[1] * work
    transform = tf.stack([ca, -sa, left[0] - ca * u0 + sa * v0, sa, ca, left[1] - sa * u0 - ca * v0, 0.0, 0.0])[None]
    aligned = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None],
        transforms=transform,
        output_shape=tf.constant([work, work]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]
    return tf.image.resize(aligned, [size, size], method="area")


def augment(image: Any, seed: Any) -> Any:
    """Stateless augmentation of one uint8 image -> float32 [0, 255].

    Horizontal flip; rotation up to +-10 degrees, translation up to +-8% and zoom 0.9-1.1
    combined in one projective transform (edge pixels repeated); brightness +-0.1,
    contrast 0.8-1.2 and saturation 0.8-1.2. ``seed`` is an int64 pair-able scalar.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.stack([seed, seed // 7 + 1]), num=8)
    size = tf.cast(tf.shape(image)[0], tf.float32)
    x = tf.cast(image, tf.float32) / 255.0
    x = tf.image.stateless_random_flip_left_right(x, seeds[0])
    angle = tf.random.stateless_uniform([], seeds[1], -math.pi / 18, math.pi / 18)
    zoom = tf.random.stateless_uniform([], seeds[2], 0.9, 1.1)
    shift = tf.random.stateless_uniform([2], seeds[3], -0.08, 0.08) * size
    centre = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # output (x, y) -> input: rotate/scale about the centre, then translate.
    tx = centre - cos * centre + sin * centre - shift[0]
    ty = centre - sin * centre - cos * centre - shift[1]
    transform = tf.stack([cos, -sin, tx, sin, cos, ty, 0.0, 0.0])[None]
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None],
        transforms=transform,
        output_shape=tf.shape(x)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )[0]
    x = tf.image.stateless_random_brightness(x, 0.1, seeds[4])
    x = tf.image.stateless_random_contrast(x, 0.8, 1.2, seeds[5])
    x = tf.image.stateless_random_saturation(x, 0.8, 1.2, seeds[6])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0
