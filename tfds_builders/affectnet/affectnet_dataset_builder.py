"""AffectNet (manually annotated part) as a TFDS dataset, from either release layout."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from curate import labels
from curate.formats import affectnet as affectnet_format
from tfds_builders import common

_NUM_LANDMARKS = 68


@dataclasses.dataclass(eq=False)
class AffectNetConfig(tfds.core.BuilderConfig):
    """``crop_size`` None stores the full source image; else a face crop of that size."""

    crop_size: int | None = 224
    margin: float = 0.2


def make_example(row: dict[str, Any], *, manual_dir: str, crop_size: int | None, margin: float):
    """One annotation row -> ``(key, features)``; raises :class:`common.RowReject`.

    Pure and module-level (Beam pickles it). The face box is grown by ``margin`` of its
    size on every side and clamped to the image, in both configs, so both configs reject
    the same rows; ``crop224`` then resizes that crop to ``crop_size`` squared.
    """
    decoded = common.load_image(manual_dir, row["source_path"], mode="RGB")
    width, height = decoded.size
    source_landmarks = common.landmark_array(row["landmarks"], _NUM_LANDMARKS)
    raw_box = (row["face_x"], row["face_y"], row["face_width"], row["face_height"])
    has_box = any(v is not None for v in raw_box)
    if not has_box:  # the cropped "AffectNet-8" release: the image is the face crop
        source_box = (0.0, 0.0, float(width), float(height))
        crop = common.CropBox(0, 0, width, height)
    elif not common.face_box_is_valid(raw_box):
        raise common.RowReject(common.INVALID_BOX, "x,y,w,h = " + ",".join(str(v) for v in raw_box))
    else:
        source_box = tuple(float(v) for v in raw_box)
        crop = common.margin_crop_box(source_box, (width, height), margin=margin)

    if crop_size:
        full = crop == common.CropBox(0, 0, width, height)
        if (
            full
            and (width, height) == (crop_size, crop_size)
            and decoded.format == "JPEG"
            and decoded.original_mode == "RGB"
        ):
            image = decoded.data  # already the stored form: no second JPEG generation
        else:
            image = common.encode_jpeg(common.crop_resize(decoded.image, crop, crop_size))
        frame = crop
        landmarks = common.points_into_crop(source_landmarks, crop, crop_size)
    else:
        image = common.passthrough_or_encode(decoded)
        frame = common.CropBox(0, 0, width, height)
        landmarks = source_landmarks

    valence, arousal = row["valence"], row["arousal"]
    va_annotated = bool(row["va_annotated"]) and valence is not None and arousal is not None
    features = {
        "id": row["id"],
        "image": image,
        "expression": int(row["label"]),
        "valence": np.float32(valence if va_annotated else 0.0),
        "arousal": np.float32(arousal if va_annotated else 0.0),
        "va_annotated": va_annotated,
        "face_box": common.normalized_bbox(source_box, frame),
        "landmarks": landmarks,
        "source_face_box": np.asarray(source_box, dtype=np.float32),
        "source_landmarks": source_landmarks,
        "source_path": row["source_path"],
    }
    return row["id"], features


class Builder(common.ManualDownloadBuilder):
    """DatasetBuilder for AffectNet (manually annotated images)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: both AffectNet layouts, crop224 and original configs, rejects ledger.",
    }
    BUILDER_CONFIGS = [
        AffectNetConfig(
            name="crop224",
            description="Face crop (box + 20% margin, clamped) resized to 224x224 JPEG; box and landmarks in crop pixels.",
            crop_size=224,
            margin=0.2,
        ),
        AffectNetConfig(
            name="original",
            description="Full source image (JPEG/PNG bytes kept, other formats as PNG); box and landmarks in source pixels.",
            crop_size=None,
            margin=0.2,
        ),
    ]
    SPLIT_NAMES = ("train", "validation")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        """\
    AffectNet is distributed by its authors on request, under a research licence:
    request it at http://mohammadmahoor.com/affectnet/ (Mollahosseini et al., 2017).
    Place ONE of the two releases in the manual dir (`--manual_dir`, by default
    ~/tensorflow_datasets/downloads/manual/), unpacked, exactly as received:

    Original release:
      <manual_dir>/Manually_Annotated_file_lists/training.csv
      <manual_dir>/Manually_Annotated_file_lists/validation.csv
      <manual_dir>/Manually_Annotated_Images/<number>/<56 hex chars>.<jpg|png|bmp|tif|...>

    Cropped "AffectNet-8" release (224x224 crops):
      <manual_dir>/train_set/images/<id>.jpg
      <manual_dir>/train_set/annotations/<id>_exp.npy, <id>_val.npy, <id>_aro.npy, <id>_lnd.npy
      <manual_dir>/val_set/images/<id>.jpg
      <manual_dir>/val_set/annotations/<id>_exp.npy, <id>_val.npy, <id>_aro.npy, <id>_lnd.npy
    """
        + common.EXCLUSIONS_INSTRUCTIONS
    )

    def _info(self) -> tfds.core.DatasetInfo:
        crop_size = self.builder_config.crop_size
        if crop_size:
            image = tfds.features.Image(shape=(crop_size, crop_size, 3), encoding_format="jpeg")
        else:
            image = tfds.features.Image(shape=(None, None, 3))
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(doc="Stable source id: subDirectory_filePath, or train_set/<n>."),
                    "image": image,
                    "expression": tfds.features.ClassLabel(names=labels.CANONICAL_NAMES),
                    "valence": tfds.features.Scalar(np.float32, doc="In [-1, 1]; 0.0 when not annotated."),
                    "arousal": tfds.features.Scalar(np.float32, doc="In [-1, 1]; 0.0 when not annotated."),
                    "va_annotated": tfds.features.Scalar(np.bool_, doc="False where the source wrote -2."),
                    "face_box": tfds.features.BBoxFeature(doc="Face box, normalised in the stored image."),
                    "landmarks": tfds.features.Tensor(
                        shape=(_NUM_LANDMARKS, 2), dtype=np.float32, doc="68 (x, y) in stored-image pixels."
                    ),
                    "source_face_box": tfds.features.Tensor(
                        shape=(4,), dtype=np.float32, doc="x, y, width, height in source-image pixels."
                    ),
                    "source_landmarks": tfds.features.Tensor(
                        shape=(_NUM_LANDMARKS, 2), dtype=np.float32, doc="68 (x, y) in source-image pixels."
                    ),
                    "source_path": tfds.features.Text(doc="Image file relative to the manual dir."),
                }
            ),
            supervised_keys=("image", "expression"),
            homepage="http://mohammadmahoor.com/affectnet/",
            metadata=tfds.core.MetadataDict(),
        )

    def _read_tables(self, manual_dir):
        return affectnet_format.read(manual_dir)

    def _example_fn(self, manual_dir):
        config = self.builder_config
        return make_example, {"manual_dir": str(manual_dir), "crop_size": config.crop_size, "margin": config.margin}
