"""FERPlus (FER2013 pixels + FER+ annotator votes) as a TFDS dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from curate import labels
from curate.formats import ferplus as ferplus_format
from tfds_builders import common

_SIDE = 48


def pixels_to_image(pixels: str | None) -> np.ndarray:
    """``(48, 48, 1)`` uint8 from FER2013's 2,304 space-separated values; RowReject otherwise.

    Strings of ASCII digits and spaces (every row the reader kept) are parsed by NumPy's C
    text parser; anything else takes the slow path, which names the problem.
    """
    if not pixels:
        raise common.RowReject(common.INVALID_PIXELS, "no pixel string")
    digits = pixels.replace(" ", "")
    if digits.isascii() and digits.isdigit():  # no warning / partial parse possible
        values = np.fromstring(pixels, dtype=np.int64, sep=" ")
    else:
        try:
            values = np.array(pixels.split(), dtype=np.int64)
        except (ValueError, OverflowError):
            raise common.RowReject(common.INVALID_PIXELS, "non-integer pixel value") from None
    if values.size != _SIDE * _SIDE:
        raise common.RowReject(common.INVALID_PIXELS, f"{values.size} values, expected {_SIDE * _SIDE}")
    if values.min() < 0 or values.max() > 255:
        raise common.RowReject(common.INVALID_PIXELS, f"value out of 0..255 ({values.min()}..{values.max()})")
    return values.astype(np.uint8).reshape(_SIDE, _SIDE, 1)


def make_example(row: dict[str, Any]):
    """One annotation row -> ``(key, features)``; raises :class:`common.RowReject`."""
    from PIL import Image

    array = pixels_to_image(row["pixels"])
    votes = row["votes"]
    if votes is None or len(votes) != len(labels.FERPLUS_VOTE_COLUMNS) or any(v is None or v < 0 for v in votes):
        raise common.RowReject(common.INVALID_VOTES, f"votes {votes!r}")
    raw_label = row["raw_label"]
    if raw_label is None or not 0 <= int(raw_label) < len(labels.FER2013_NAMES):
        raise common.RowReject(common.INVALID_LABEL, f"FER2013 emotion {raw_label!r}")
    features = {
        "id": row["id"],
        "image": common.encode_png(Image.frombytes("L", (_SIDE, _SIDE), array.tobytes())),
        "votes": np.asarray(votes, dtype=np.int32),
        "fer2013_label": int(raw_label),
        # The FER+ majority label (canonical; 9 Uncertain / 10 No-Face where the winner is unknown / NF).
        "label": int(labels.ferplus_vote_targets(np.asarray([votes]), labels.DEFAULT_VOTE_MODE).label[0]),
        "image_name": row.get("image_name") or "",
    }
    return row["id"], features


class Builder(common.ManualDownloadBuilder):
    """DatasetBuilder for FERPlus."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Initial release: FER2013 pixels with FER+ votes, rejects ledger.",
        "2.0.0": "`label` is the FER+ majority label (canonical; Uncertain / No-Face where the winner is unknown / "
        "NF), no longer FER2013's, which stays in `fer2013_label`.",
    }
    SPLIT_NAMES = ("train", "validation", "test")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        """\
    FERPlus needs two files, placed directly in the manual dir (`--manual_dir`, by default
    ~/tensorflow_datasets/downloads/manual/):

      <manual_dir>/fer2013.csv     FER2013 pixels (header `emotion,pixels,Usage`), from the
                                   Kaggle "Challenges in Representation Learning: Facial
                                   Expression Recognition Challenge" data page
                                   (https://www.kaggle.com/c/challenges-in-representation-learning-facial-expression-recognition-challenge/data,
                                   inside fer2013.tar.gz).
      <manual_dir>/fer2013new.csv  FER+ votes, from https://github.com/microsoft/FERPlus
                                   (same row order as fer2013.csv).
    """
        + common.EXCLUSIONS_INSTRUCTIONS
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(doc="fer<row index in fer2013.csv, 7 digits>."),
                    "image": tfds.features.Image(shape=(_SIDE, _SIDE, 1), encoding_format="png"),
                    "votes": tfds.features.Tensor(
                        shape=(len(labels.FERPLUS_VOTE_COLUMNS),),
                        dtype=np.int32,
                        doc="Ten FER+ votes: " + ", ".join(labels.FERPLUS_VOTE_COLUMNS) + ".",
                    ),
                    "fer2013_label": tfds.features.ClassLabel(names=labels.FER2013_NAMES),
                    "label": tfds.features.ClassLabel(
                        names=labels.CANONICAL_NAMES,
                        doc="FER+ majority label of `votes` (canonical order); Uncertain / No-Face where the winner "
                        "is unknown / NF, images the FER+ authors leave out. FER2013's label is `fer2013_label`.",
                    ),
                    "image_name": tfds.features.Text(doc="FER+ `Image name`; empty where the annotators rejected it."),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/microsoft/FERPlus",
            metadata=tfds.core.MetadataDict(),
        )

    def _read_tables(self, manual_dir):
        return ferplus_format.read(manual_dir, with_pixels=True)

    def _example_fn(self, manual_dir):
        return make_example, {}
