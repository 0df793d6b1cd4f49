"""Where a run's examples come from: the project's TFDS datasets, or arrays in memory.

:class:`TFDSSource` reads the project's TFDS datasets (``import tfds_builders`` registers
them); :class:`InMemorySource` serves builder-shaped examples from NumPy arrays (tests,
notebooks). Both yield unbatched dicts with the features of ``docs/contracts.md`` through
``load(split, images=..., features=...)``, list their ``splits()`` and ``describe()``
themselves for the data fingerprint. TensorFlow (Datasets) is imported when a source is
opened or read, not with this module.
"""

from __future__ import annotations

from typing import Any

from curate import datasets
from train.config import MissingDatasetError, TrainConfig, TrainError


class TFDSSource:
    """The project's TFDS datasets in ``data_dir`` (default: TFDS's own default)."""

    def __init__(self, dataset: str, *, data_dir: str | None = None, config: str | None = None) -> None:
        import tensorflow_datasets as tfds

        try:
            import tfds_builders  # noqa: F401  (registers affectnet, ferplus, rafdb)
        except ImportError as error:  # pragma: no cover - the package ships with the project
            raise TrainError(f"cannot import the project's TFDS builders (tfds_builders): {error}") from None
        self.dataset = dataset
        self.config = config
        name = f"{dataset}/{config}" if config else dataset
        try:
            self.builder = tfds.builder(name, data_dir=data_dir)
        except Exception as error:  # unknown name or config
            raise TrainError(f"cannot open TFDS dataset {name!r}: {error}") from None
        if not self.builder.is_prepared():
            where = data_dir or "~/tensorflow_datasets"
            raise MissingDatasetError(
                f"TFDS dataset {name!r} is not built in {where}; build it with: "
                f"tfds build {name} --imports tfds_builders --data_dir {where} "
                f"--manual_dir {datasets.get(dataset).manual_dir_hint}"
            )
        self.config = self.builder.builder_config.name if self.builder.builder_config else None

    def splits(self) -> list[str]:
        return list(self.builder.info.splits.keys())

    def describe(self) -> dict[str, Any]:
        """Dataset version, config and annotation-file hashes (for the data fingerprint)."""
        metadata = dict(self.builder.info.metadata or {})
        return {
            "source": "tfds",
            "name": self.builder.name,
            "config": self.config,
            "version": str(self.builder.info.version),
            "data_dir": str(self.builder.data_dir),
            "layout": metadata.get("layout"),
            "annotation_sha256": dict(metadata.get("annotation_files_sha256") or {}),
        }

    def load(self, split: str, *, images: bool, features: tuple[str, ...] = ()) -> Any:
        import tensorflow_datasets as tfds

        if images:
            decoders: Any = {"image": tfds.decode.SkipDecoding()}
        else:
            wanted = {f: True for f in features if f in self.builder.info.features}
            decoders = tfds.decode.PartialDecoding(wanted)
        read_config = tfds.ReadConfig(shuffle_seed=0, interleave_cycle_length=1)
        return self.builder.as_dataset(split=split, decoders=decoders, shuffle_files=False, read_config=read_config)


class InMemorySource:
    """Builder-shaped examples from arrays: ``{split: {feature: array}}``.

    Images may be uint8 arrays (``(N, H, W, C)``) or encoded bytes; used by tests and for
    trying the trainer on data that is not built as TFDS.
    """

    def __init__(self, dataset: str, splits: dict[str, dict[str, Any]], *, config: str | None = None) -> None:
        self.dataset = dataset
        self.config = config
        self._splits = splits

    def splits(self) -> list[str]:
        return list(self._splits)

    def describe(self) -> dict[str, Any]:
        return {
            "source": "in-memory",
            "name": self.dataset,
            "config": self.config,
            "version": "in-memory",
            "annotation_sha256": {},
        }

    def load(self, split: str, *, images: bool, features: tuple[str, ...] = ()) -> Any:
        import tensorflow as tf

        data = self._splits[split]
        if images:
            selected = dict(data)
        else:
            selected = {key: value for key, value in data.items() if key in features}
        return tf.data.Dataset.from_tensor_slices(selected)


def open_source(config: TrainConfig) -> Any:
    return TFDSSource(config.dataset, data_dir=config.data_dir, config=config.config)
