"""RAF-DB basic (aligned 100x100 faces) as a TFDS dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from curate import labels
from curate.formats import rafdb as rafdb_format
from tfds_builders import common

_SIDE = 100


def make_example(row: dict[str, Any], *, manual_dir: str):
    """One annotation row -> ``(key, features)``; raises :class:`common.RowReject`.

    The stored image is the aligned 100x100 face. The face box and both landmark sets
    are in pixels of the *original* image (as RAF-DB writes them); ``face_box`` is
    normalised by the original image's size, read from its header (no pixel decode).
    """
    decoded = common.load_image(manual_dir, row["source_path"], mode="RGB")
    if decoded.size == (_SIDE, _SIDE) and decoded.format == "JPEG" and decoded.original_mode == "RGB":
        image = decoded.data
    else:
        image = common.encode_jpeg(common.crop_resize(decoded.image, common.CropBox(0, 0, *decoded.size), _SIDE))

    raw_box = (row["face_x"], row["face_y"], row["face_width"], row["face_height"])
    if not common.face_box_is_valid(raw_box):
        raise common.RowReject(common.INVALID_BOX, "x,y,w,h = " + ",".join(str(v) for v in raw_box))
    width, height = common.image_size(manual_dir, rafdb_format.original_path(row["id"]))
    frame = common.margin_crop_box(raw_box, (width, height), margin=0.0)  # rejects boxes outside the image
    del frame
    raw_label = row["raw_label"]
    if raw_label is None or not 1 <= int(raw_label) <= len(labels.RAFDB_NAMES):
        raise common.RowReject(common.INVALID_LABEL, f"RAF-DB label {raw_label!r}")
    features = {
        "id": row["id"],
        "image": image,
        "rafdb_label": int(raw_label) - 1,
        "label": int(row["label"]),
        "face_box": common.normalized_bbox(raw_box, common.CropBox(0, 0, width, height)),
        "landmarks5": common.landmark_array(row["landmarks"], 5, what="manual landmarks"),
        "landmarks37": common.landmark_array(row["landmarks_auto"], 37, what="automatic landmarks"),
        "gender": _attribute(row, "gender"),
        "race": _attribute(row, "race"),
        "age_group": _attribute(row, "age_group"),
    }
    return row["id"], features


def _attribute(row: dict[str, Any], name: str) -> np.int32:
    value = row.get(name)
    if value is None:
        raise common.RowReject(common.INVALID_LABEL, f"{name} missing")
    return np.int32(value)


class Builder(common.ManualDownloadBuilder):
    """DatasetBuilder for RAF-DB basic."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: aligned faces, labels, box, 5 + 37 landmarks, attributes, rejects ledger.",
    }
    SPLIT_NAMES = ("train", "test")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        """\
    RAF-DB is distributed by its authors on request, for non-commercial research: request
    it at http://www.whdeng.cn/raf/model1.html (Li, Deng and Du, 2017). Place the `basic`
    folder in the manual dir (`--manual_dir`, by default
    ~/tensorflow_datasets/downloads/manual/), unpacked, exactly as received:

      <manual_dir>/basic/EmoLabel/list_patition_label.txt
      <manual_dir>/basic/Image/aligned/<stem>_aligned.jpg
      <manual_dir>/basic/Image/original/<stem>.jpg
      <manual_dir>/basic/Annotation/boundingbox/<stem>_boundingbox.txt
      <manual_dir>/basic/Annotation/manual/<stem>_manu_attri.txt
      <manual_dir>/basic/Annotation/auto/<stem>_auto_attri.txt
    """
        + common.EXCLUSIONS_INSTRUCTIONS
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(doc="File stem, e.g. train_00001."),
                    "image": tfds.features.Image(shape=(_SIDE, _SIDE, 3), encoding_format="jpeg"),
                    "rafdb_label": tfds.features.ClassLabel(names=labels.RAFDB_NAMES),
                    "label": tfds.features.ClassLabel(names=labels.CANONICAL_NAMES),
                    "face_box": tfds.features.BBoxFeature(doc="Face box, normalised in the original image."),
                    "landmarks5": tfds.features.Tensor(
                        shape=(5, 2), dtype=np.float32, doc="Manual landmarks, original-image pixels."
                    ),
                    "landmarks37": tfds.features.Tensor(
                        shape=(37, 2), dtype=np.float32, doc="Automatic landmarks, original-image pixels."
                    ),
                    "gender": tfds.features.Scalar(np.int32, doc="As in the manual attribute file."),
                    "race": tfds.features.Scalar(np.int32, doc="As in the manual attribute file."),
                    "age_group": tfds.features.Scalar(np.int32, doc="As in the manual attribute file."),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://www.whdeng.cn/raf/model1.html",
            metadata=tfds.core.MetadataDict(),
        )

    def _read_tables(self, manual_dir):
        return rafdb_format.read(manual_dir)

    def _example_fn(self, manual_dir):
        return make_example, {"manual_dir": str(manual_dir)}
