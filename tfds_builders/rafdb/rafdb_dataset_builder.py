"""RAF-DB basic (aligned 100x100 faces) as a TFDS dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from curate import labels
from curate.formats import rafdb as rafdb_format
from tfds_builders import common

_SIDE = 100


#: ``face_box`` where the copy has no original photograph to normalise it by (``has_original`` False).
NO_BOX = tfds.features.BBox(ymin=0.0, xmin=0.0, ymax=0.0, xmax=0.0)
#: ``gender`` / ``race`` / ``age_group`` where the copy has no annotation files (``has_annotations`` False).
NO_ATTRIBUTE = np.int32(-1)


def make_example(row: dict[str, Any], *, manual_dir: str, layout: str):
    """One annotation row -> ``(key, features)``; raises :class:`common.RowReject`.

    The stored image is the aligned 100x100 face. The face box and both landmark sets
    are in pixels of the *original* image (as RAF-DB writes them); ``face_box`` is
    normalised by the original image's size, read from its header (no pixel decode).
    ``layout`` (``ParsedTables.layout``, one per copy) says what the copy holds: without
    original images ``face_box`` is :data:`NO_BOX` and ``has_original`` False; without
    annotation files the landmarks are zeros, the attributes :data:`NO_ATTRIBUTE` and
    ``has_annotations`` False.
    """
    copy = rafdb_format.LAYOUTS[layout]
    decoded = common.load_image(manual_dir, row["source_path"], mode="RGB")
    if decoded.size == (_SIDE, _SIDE) and decoded.format == "JPEG" and decoded.original_mode == "RGB":
        image = decoded.data
    else:
        image = common.encode_jpeg(common.crop_resize(decoded.image, common.CropBox(0, 0, *decoded.size), _SIDE))

    face_box = NO_BOX
    if copy.has_annotations:
        raw_box = (row["face_x"], row["face_y"], row["face_width"], row["face_height"])
        if not common.face_box_is_valid(raw_box):
            raise common.RowReject(common.INVALID_BOX, "x,y,w,h = " + ",".join(str(v) for v in raw_box))
        if copy.has_original:
            width, height = common.image_size(manual_dir, rafdb_format.original_path(row["id"]))
            common.margin_crop_box(raw_box, (width, height), margin=0.0)  # rejects boxes outside the image
            face_box = common.normalized_bbox(raw_box, common.CropBox(0, 0, width, height))
    raw_label = row["raw_label"]
    if raw_label is None or not 1 <= int(raw_label) <= len(labels.RAFDB_NAMES):
        raise common.RowReject(common.INVALID_LABEL, f"RAF-DB label {raw_label!r}")
    features = {
        "id": row["id"],
        "image": image,
        "rafdb_label": int(raw_label) - 1,
        "label": int(row["label"]),
        "face_box": face_box,
        "has_original": copy.has_original,
        "has_annotations": copy.has_annotations,
    }
    if copy.has_annotations:
        features.update(
            landmarks5=common.landmark_array(row["landmarks"], 5, what="manual landmarks"),
            landmarks37=common.landmark_array(row["landmarks_auto"], 37, what="automatic landmarks"),
            **{name: _attribute(row, name) for name in _ATTRIBUTES},
        )
    else:
        features.update(
            landmarks5=np.zeros((5, 2), np.float32),
            landmarks37=np.zeros((37, 2), np.float32),
            **dict.fromkeys(_ATTRIBUTES, NO_ATTRIBUTE),
        )
    return row["id"], features


_ATTRIBUTES = ("gender", "race", "age_group")


def _attribute(row: dict[str, Any], name: str) -> np.int32:
    value = row.get(name)
    if value is None:
        raise common.RowReject(common.INVALID_LABEL, f"{name} missing")
    return np.int32(value)


class Builder(common.ManualDownloadBuilder):
    """DatasetBuilder for RAF-DB basic."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: aligned faces, labels, box, 5 + 37 landmarks, attributes, rejects ledger.",
        "1.1.0": "Builds the copies people hold (basic without originals or annotations, folder-per-label); "
        "features has_original and has_annotations; metadata layout names the copy.",
    }
    SPLIT_NAMES = ("train", "test")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        """\
    RAF-DB is distributed by its authors on request, for non-commercial research: request
    it at http://www.whdeng.cn/raf/model1.html (Li, Deng and Du, 2017). Place one of these
    copies in the manual dir (`--manual_dir`, by default
    ~/tensorflow_datasets/downloads/manual/), unpacked, exactly as held; the copy found is
    recorded as `layout` in the dataset's metadata.

    1. basic -- the release as distributed (every feature):
      <manual_dir>/basic/EmoLabel/list_patition_label.txt
      <manual_dir>/basic/Image/aligned/<stem>_aligned.jpg
      <manual_dir>/basic/Image/original/<stem>.jpg
      <manual_dir>/basic/Annotation/boundingbox/<stem>_boundingbox.txt
      <manual_dir>/basic/Annotation/manual/<stem>_manu_attri.txt
      <manual_dir>/basic/Annotation/auto/<stem>_auto_attri.txt
    2. basic-aligned-only -- the same without basic/Image/original/: face_box is all
       zeros and has_original False (the box cannot be normalised without the photograph).
    3. basic-labels-only -- basic/EmoLabel/ and basic/Image/aligned/ only, no
       basic/Annotation/: also landmarks zeros, gender/race/age_group -1, has_annotations False.
    4. folder-per-label -- aligned faces sorted by RAF label 1-7 (1 Surprise ... 7 Neutral),
       (point --manual_dir at the folder holding train/ and test/; CSVs beside them):
      <manual_dir>/train/<1-7>/train_<digits>_aligned.jpg
      <manual_dir>/test/<1-7>/test_<digits>_aligned.jpg
      <manual_dir>/train_labels.csv, test_labels.csv   (optional; header image,label)
       Features as basic-labels-only. A CSV label that disagrees with the image's folder
       stops the build; CSV rows without an image and images without a CSV row are rejects.
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
                    "face_box": tfds.features.BBoxFeature(
                        doc="Face box, normalised in the original image; all zeros where has_original is False."
                    ),
                    "has_original": tfds.features.Scalar(
                        np.bool_, doc="False when the copy has no original images (face_box is then zeros)."
                    ),
                    "has_annotations": tfds.features.Scalar(
                        np.bool_,
                        doc="False when the copy has no annotation files: landmarks zeros, attributes -1.",
                    ),
                    "landmarks5": tfds.features.Tensor(
                        shape=(5, 2), dtype=np.float32, doc="Manual landmarks, original-image pixels (zeros: none)."
                    ),
                    "landmarks37": tfds.features.Tensor(
                        shape=(37, 2), dtype=np.float32, doc="Automatic landmarks, original-image pixels (zeros: none)."
                    ),
                    "gender": tfds.features.Scalar(np.int32, doc="As in the manual attribute file; -1: none."),
                    "race": tfds.features.Scalar(np.int32, doc="As in the manual attribute file; -1: none."),
                    "age_group": tfds.features.Scalar(np.int32, doc="As in the manual attribute file; -1: none."),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="http://www.whdeng.cn/raf/model1.html",
            metadata=tfds.core.MetadataDict(),
        )

    def _read_tables(self, manual_dir):
        tables = rafdb_format.read(manual_dir)
        self._layout = tables.layout  # one per copy: make_example fills the features it has
        return tables

    def _example_fn(self, manual_dir):
        return make_example, {"manual_dir": str(manual_dir), "layout": self._layout}
