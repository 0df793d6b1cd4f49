"""Built TFDS datasets read back as annotation tables (``curate ingest --tfds-dir``, review).

Only the non-image features are read (images are skipped undecoded); each dataset's own
features become annotation columns through its registry entry (``curate.datasets``).
TensorFlow Datasets is imported by :func:`read_tfds` only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curate import datasets as registry
from curate.workspace import WorkspaceError, check_dataset


def find_tfds_dir(data_dir: str | os.PathLike[str], dataset: str, config: str | None = None) -> Path:
    """The newest ``<data_dir>/<dataset>/[<config>/]<version>`` folder with a ``dataset_info.json``.

    ``data_dir`` may also be that folder itself.
    """
    root = Path(data_dir)
    if (root / "dataset_info.json").is_file():
        return root
    base = root / dataset
    if not base.is_dir():
        raise WorkspaceError(f"{root}: no built TFDS dataset {dataset!r} (expected {base}/[CONFIG/]VERSION)")
    found = sorted(p.parent for p in base.glob("**/dataset_info.json"))
    if config:
        found = [p for p in found if config in p.relative_to(base).parts]
    if not found:
        raise WorkspaceError(f"{base}: no dataset_info.json under it" + (f" for config {config!r}" if config else ""))

    def version_key(p: Path) -> tuple[int, ...]:
        return tuple(int(x) if x.isdigit() else -1 for x in p.name.split("."))

    return max(found, key=version_key)


def read_tfds(
    data_dir: str | os.PathLike[str], dataset: str, *, config: str | None = None, batch_size: int = 4096
) -> Any:
    """Read a built TFDS dataset's non-image features into :class:`ParsedTables`.

    Images are not decoded (``SkipDecoding``, then dropped). Imports TensorFlow Datasets.
    """
    import polars as pl

    from curate.formats.schema import ParsedTables, empty_rejects

    check_dataset(dataset)
    folder = find_tfds_dir(data_dir, dataset, config)
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(folder))
    try:
        source = str(folder.relative_to(Path(data_dir)))
    except ValueError:
        source = folder.name
    source = source if source != "." else folder.name
    decoders = {name: tfds.decode.SkipDecoding() for name in ("image",) if name in builder.info.features}
    frames = []
    for split in builder.info.splits:
        ds = builder.as_dataset(split=split, decoders=decoders, batch_size=batch_size, shuffle_files=False)
        ds = ds.map(lambda ex: {k: v for k, v in ex.items() if k != "image"})
        for batch in tfds.as_numpy(ds):
            frames.append(tfds_batch_to_frame(dataset, split, batch, source=source))
    annotations = pl.concat(frames, how="vertical") if frames else tfds_batch_to_frame(dataset, "train", {}, source="")
    return ParsedTables(annotations=annotations, rejects=empty_rejects(), files={}, layout=f"tfds:{folder.name}")


def tfds_batch_to_frame(dataset: str, split: str, batch: Mapping[str, Any], *, source: str) -> Any:
    """One batch of TFDS examples (NumPy arrays, as ``tfds.as_numpy`` yields) in the annotation schema.

    The dataset's own columns come from its registry entry (``DatasetSpec.tfds_columns``;
    feature names follow ``docs/contracts.md``); the other columns stay null.
    """
    import polars as pl

    from curate.formats.schema import ANNOTATION_SCHEMA

    n = len(batch["id"]) if "id" in batch else 0
    data: dict[str, Any] = {name: pl.Series(name, [None] * n, dtype=dtype) for name, dtype in ANNOTATION_SCHEMA.items()}
    data["dataset"] = pl.Series("dataset", [dataset] * n, dtype=pl.String)
    data["split"] = pl.Series("split", [split] * n, dtype=pl.String)
    data["source_file"] = pl.Series("source_file", [source] * n, dtype=pl.String)
    if n:
        data["id"] = pl.Series("id", registry.as_text(batch["id"]))
        data.update(registry.get(dataset).tfds_columns(batch, n))
    data["va_annotated"] = data["valence"].is_not_null() & data["arousal"].is_not_null()
    return pl.DataFrame({name: data[name].alias(name).cast(dtype) for name, dtype in ANNOTATION_SCHEMA.items()})
