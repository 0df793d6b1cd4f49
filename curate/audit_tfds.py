"""The duplicate audit's hashes taken from a built TFDS dataset (``curate audit duplicates --tfds-dir``).

The builder has already decoded every source image, cut the face out and stored it small
(AffectNet ``crop224``: the face box plus a 20 % margin at 224x224; FERPlus 48x48; RAF-DB
the aligned 100x100 face). Decoding those stored images is a fraction of the work of
decoding the sources again, so an audit of a built dataset reads them, undecoded, through
``tf.data`` and hashes them on the same process pool as :func:`curate.audit.hash_images`.

What differs from an audit of the manual dir:

* the exact digest is of the stored image's pixels, so two sources are exact copies when
  the builder stored the same pixels for both (it is deterministic);
* AffectNet faces are cut from the stored crop by its ``face_box`` feature
  (:class:`curate.audit.RelativeBox`), at the stored resolution rather than the source's.
  Hashes of one built dataset are comparable with each other; mixing a built dataset and a
  manual dir in one audit compares a resized face with a full-size one, which pHash
  tolerates (the resized copies of ``benchmarks/bench_audit.py`` sit at 6-28 bits of 256).

The images stream: at most two chunks per worker are held in memory, whatever the size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from curate import audit
from curate import datasets as registry


def _chunks(folder: Path, dataset: str, meta: list[dict[str, Any]]) -> Iterator[list[tuple[Any, ...]]]:
    """Tasks for :func:`curate.audit.hash_chunks`, one batch of stored images at a time; fills ``meta``."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(folder))
    features = builder.info.features
    if "image" not in features:
        raise ValueError(f"{folder}: the built dataset has no image feature to hash")
    # only datasets whose stored image holds more than the face carry a box to cut by
    crop = bool(registry.get(dataset).face_box_layouts) and "face_box" in features
    keep = ("id", "image", "face_box") if crop else ("id", "image")
    for split in sorted(builder.info.splits):
        ds = builder.as_dataset(
            split=split,
            decoders={"image": tfds.decode.SkipDecoding()},
            batch_size=audit.HASH_CHUNK,
            shuffle_files=False,
        ).map(lambda ex: {k: ex[k] for k in keep})
        # one reader thread: the worker processes hash on every core, and tf.data's own pools
        # (sized to the machine, busy-waiting) would otherwise take cores from them
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        options.autotune.enabled = False
        ds = ds.with_options(options)
        for batch in tfds.as_numpy(ds):
            ids = registry.as_text(batch["id"])
            meta.extend({"id": i, "dataset": dataset, "split": split} for i in ids)
            boxes = [audit.RelativeBox(*map(float, b)) for b in batch["face_box"]] if crop else [None] * len(ids)
            yield [(bytes(image), box, None) for image, box in zip(batch["image"], boxes, strict=True)]


def hash_tfds(
    data_dir: str | os.PathLike[str], dataset: str, *, config: str | None = None, workers: int | None = None
) -> pl.DataFrame:
    """:func:`curate.audit.hash_images`' frame for every example of a built dataset, all splits.

    ``data_dir`` is a TFDS data dir (``<data_dir>/<dataset>/[<config>/]<version>``, the newest
    version is read) or that version folder itself.
    """
    from curate.tfds_tables import find_tfds_dir

    folder = find_tfds_dir(data_dir, dataset, config)
    meta: list[dict[str, Any]] = []
    results = [r for part in audit.hash_chunks(_chunks(folder, dataset, meta), workers=workers) for r in part]
    frame = pl.DataFrame(meta, schema={"id": pl.String, "dataset": pl.String, "split": pl.String})
    return audit.hashed_frame(frame, results)
