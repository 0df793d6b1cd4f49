"""Built TFDS datasets as random-access sources, a label policy applied at read time, without TensorFlow.

Scope
-----
A dataset built with ``tfds build NAME --file_format=array_record`` is served by
``tfds.data_source`` (ArrayRecord: random access by index, no TensorFlow graph). This module
opens such a build and gives PyTorch's ``DataLoader`` or Grain's ``MapDataset.source`` what
they index:

* :class:`PolicySource` -- the examples of one split that a label policy (and, for FERPlus,
  a vote mode) keeps, as NumPy: ``image`` (uint8 ``(H, W, C)``, decoded with Pillow, or the
  encoded bytes with ``decode_images=False``), ``label`` (int64 class index, or float32
  distribution over the policy's classes for soft FER+ vote modes), ``canonical`` (int64),
  ``id`` (str), plus ``valence`` / ``arousal`` / ``va_mask`` (float32) with ``with_va`` and
  any stored features named in ``features``. Index ``i`` is the ``i``-th kept example in
  stored order; ``positions[i]`` is its record index in the split.
* :func:`open_build` / :func:`stored_examples` -- the build itself (every stored feature,
  images decoded with Pillow), for comparisons and tools.

Labels are those of ``curate.readtime`` (``policy_targets_numpy``: ``LabelPolicy.apply`` and
``curate.labels.ferplus_vote_targets``), the NumPy twin of the ``tf.data`` path
(``policy_dataset``): the same policy gives the same rows and labels either way.

Assumptions
-----------
* Neither this module nor what it calls imports TensorFlow: TFDS serves each record's
  stored bytes (``DeserializeMethod.RAW_BYTES``), parsed here with TFDS's own copy of the
  ``tf.train.Example`` message -- only the features asked for, so the pre-pass parses the
  label alone -- and images are decoded with Pillow (not by TFDS, which would pick OpenCV
  when installed). ``tests/test_data_source.py`` checks in a fresh interpreter that
  ``tensorflow`` is never imported.
* JPEG pixels equal TensorFlow's ``decode_jpeg(dct_method="INTEGER_ACCURATE")``; the
  default ``tf.io.decode_image`` (``tfds.load``, the trainer) uses the fast IDCT and
  differs by a few levels. PNG pixels are the same everywhere.
* A TFRecord build (the default of ``tfds build``) has no random access:
  :class:`DataSourceError` gives the command that builds ArrayRecord instead.
* The policy's pre-pass reads every record of the split once (images undecoded) when the
  source is opened.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, SupportsIndex

import numpy as np

from curate import datasets as _datasets
from curate import labels as _labels
from curate import readtime as _readtime

#: The ``tfds build --file_format`` value that gives random access.
ARRAY_RECORD = "array_record"
#: Records read per batch in the policy pre-pass.
_PREPASS_BATCH = 1024


class DataSourceError(ValueError):
    """A build that cannot be opened as a data source; the message names the fix."""


# --------------------------------------------------------------------------------------
# Finding and opening a build
# --------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (where ``tfds build`` writes)."""
    return Path(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets").expanduser()


def build_command(dataset: str, *, config: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The ``tfds build`` command line that writes ``dataset`` as ArrayRecord."""
    name = f"{dataset}/{config}" if config else dataset
    where = data_dir if data_dir is not None else default_data_dir()
    hint = _datasets.get(dataset).manual_dir_hint
    return (
        f"tfds build {name} --imports tfds_builders --file_format={ARRAY_RECORD} --data_dir {where} --manual_dir {hint}"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else -1 for x in path.name.split("."))


def find_build(dataset: str, *, data_dir: str | os.PathLike[str] | None = None, config: str | None = None) -> Path:
    """The newest ``<data_dir>/<dataset>/[<config>/]<version>`` folder holding a ``dataset_info.json``.

    ``data_dir`` may be that version folder itself. Without ``config``, a dataset built in
    several configs (AffectNet's ``crop224`` and ``original``) must be told which.
    """
    _datasets.get(dataset)  # UnknownDatasetError names the known ones
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if (root / "dataset_info.json").is_file():
        return root
    base = root / dataset / config if config else root / dataset
    found = [p.parent for p in base.glob("*/dataset_info.json")]
    if not found and not config:
        configs = sorted({p.parent.parent.name for p in (root / dataset).glob("*/*/dataset_info.json")})
        if len(configs) == 1:
            return find_build(dataset, data_dir=root, config=configs[0])
        if configs:
            raise DataSourceError(f"{root / dataset}: built in configs {', '.join(configs)}; pass config=one of them")
    if not found:
        raise DataSourceError(
            f"{base}: no built dataset {dataset!r} there; build it with: "
            + build_command(dataset, config=config, data_dir=root)
        )
    return max(found, key=_version_key)


def open_build(dataset: str, *, data_dir: str | os.PathLike[str] | None = None, config: str | None = None) -> Any:
    """A read-only TFDS builder of an ArrayRecord build; :class:`DataSourceError` for any other format."""
    import tensorflow_datasets as tfds

    folder = find_build(dataset, data_dir=data_dir, config=config)
    builder = tfds.builder_from_directory(str(folder))
    formats = {f.value for f in builder.info.available_file_formats()}
    if ARRAY_RECORD not in formats:
        built = ", ".join(sorted(formats)) or "no file format"
        config_name = builder.builder_config.name if builder.builder_config else config
        data_root = folder.parents[2] if config_name else folder.parents[1]
        raise DataSourceError(
            f"{folder} is a {built} build (no random access); rebuild it as ArrayRecord (in another --data_dir, "
            f"or after deleting {folder}) with: " + build_command(dataset, config=config_name, data_dir=data_root)
        )
    return builder


def _raw_source(builder: Any, split: str) -> Any:
    """The TFDS ArrayRecord source of ``split``, serving each record's stored bytes (parsed by :class:`_Decoder`)."""
    import tensorflow_datasets as tfds

    if split not in builder.info.splits:
        raise DataSourceError(f"{builder.data_dir}: no split {split!r}; splits: {', '.join(builder.info.splits)}")
    raw = tfds.decode.DeserializeMethod.RAW_BYTES
    return builder.as_data_source(split=split, deserialize_method=raw, file_format=ARRAY_RECORD)


# --------------------------------------------------------------------------------------
# Decoding without TensorFlow
# --------------------------------------------------------------------------------------


def decode_image(data: bytes, channels: int) -> np.ndarray:
    """Encoded JPEG / PNG bytes -> uint8 ``(H, W, channels)`` with Pillow (grey or RGB, as stored)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        mode = "L" if channels == 1 else "RGB"
        array = np.asarray(image if image.mode == mode else image.convert(mode), dtype=np.uint8)
    return array.reshape(*array.shape[:2], channels)


@functools.cache
def _example_class() -> Any:
    """TFDS's copy of the ``tf.train.Example`` message (TFDS parses with it too; not TensorFlow's)."""
    from tensorflow_datasets.proto import tf_example_pb2

    return tf_example_pb2.Example


class _Decoder:
    """Parses stored ``tf.train.Example`` bytes into NumPy features, only those asked for.

    TFDS's own NumPy path (``deserialize_example_np``) decodes every feature of a record;
    parsing only the label in the policy pre-pass is an order of magnitude faster. Each
    top-level feature of the project's builders is an image (bytes), a text (str) or a
    fixed-shape number array, stored as one bytes / int64 / float list.
    """

    def __init__(self, builder: Any) -> None:
        import tensorflow_datasets as tfds

        features = builder.info.features
        self.kinds: dict[str, str] = {}
        self.dtypes: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        for name in features:
            feature = features[name]
            if isinstance(feature, tfds.features.Image):
                self.kinds[name], self.channels = "image", feature.shape[-1]
            elif isinstance(feature, tfds.features.Text):
                self.kinds[name] = "text"
            elif isinstance(feature, tfds.features.Tensor) and None not in feature.shape:
                self.kinds[name], self.dtypes[name], self.shapes[name] = "array", feature.np_dtype, feature.shape
            else:
                raise DataSourceError(
                    f"{builder.data_dir}: feature {name!r} is a {type(feature).__name__}, not an image, text or "
                    "fixed-shape tensor; read this build with tfds.data_source instead"
                )

    def values(self, record: bytes, names: Iterable[str]) -> dict[str, Any]:
        """The stored values of ``names`` (image bytes undecoded)."""
        stored = _example_class().FromString(record).features.feature
        out: dict[str, Any] = {}
        for name in names:
            kind = stored[name].WhichOneof("kind")
            values = getattr(stored[name], kind).value if kind else []
            if self.kinds[name] == "image":
                out[name] = bytes(values[0])
            elif self.kinds[name] == "text":
                out[name] = values[0].decode("utf-8")
            else:
                out[name] = np.asarray(values, dtype=self.dtypes[name]).reshape(self.shapes[name])
        return out

    def __call__(self, record: bytes, names: Iterable[str], *, decode_images: bool = True) -> dict[str, Any]:
        out = self.values(record, names)
        if decode_images and "image" in out:
            out["image"] = decode_image(out["image"], self.channels)
        return out


def stored_examples(
    dataset: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    config: str | None = None,
    indices: Iterable[int] | None = None,
    decode_images: bool = True,
) -> list[dict[str, Any]]:
    """Every stored feature of the records at ``indices`` (default: all, in stored order), no policy."""
    builder = open_build(dataset, data_dir=data_dir, config=config)
    source = _raw_source(builder, split)
    decoder = _Decoder(builder)
    keys = list(range(len(source))) if indices is None else [int(i) for i in indices]
    records = source.__getitems__(keys) if keys else []
    return [decoder(record, decoder.kinds, decode_images=decode_images) for record in records]


# --------------------------------------------------------------------------------------
# The policy source
# --------------------------------------------------------------------------------------


class PolicySource(Sequence):
    """One split of an ArrayRecord build, as the rows a label policy keeps (random access, NumPy).

    Parameters
    ----------
    dataset : {"affectnet", "ferplus", "rafdb"}
        A registered dataset (``curate.datasets``).
    split : str
        A split of the build (``train``, ``validation``, ``test``).
    policy : str or LabelPolicy, optional
        Built-in name, TOML path or policy; default: the dataset's protocol policy.
    data_dir : path, optional
        The ``--data_dir`` of the build, or its version folder (default ``$TFDS_DATA_DIR``
        or ``~/tensorflow_datasets``).
    config : str, optional
        Builder config (AffectNet ``crop224`` / ``original``); needed only when several are built.
    vote_mode : str, optional
        FERPlus only (default ``majority``); ``crossentropy``, ``probability`` and
        ``multi-target`` give soft labels.
    with_va : bool
        Add ``valence``, ``arousal`` and ``va_mask`` (zeros and mask 0 without V/A).
    decode_images : bool
        ``False`` returns the stored JPEG / PNG bytes as ``image`` (decode in your own workers).
    features : sequence of str
        Stored features to return as well (e.g. ``("landmarks", "face_box")``).

    Examples
    --------
    >>> source = PolicySource("rafdb", "train", "drop-7-plus", data_dir="~/tensorflow_datasets")
    >>> example = source[len(source) - 1]          # random access
    >>> example["image"].shape, example["label"]   # ((100, 100, 3), 3)
    """

    def __init__(
        self,
        dataset: str,
        split: str,
        policy: str | _labels.LabelPolicy | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        config: str | None = None,
        vote_mode: str | _labels.VoteMode | None = None,
        with_va: bool = False,
        decode_images: bool = True,
        features: Sequence[str] = (),
    ) -> None:
        spec = _datasets.get(dataset)
        self.dataset, self.split = dataset, split
        self.policy = _labels.get_policy(policy if policy is not None else spec.default_policy)
        self.vote_mode = _readtime.resolve_vote_mode(dataset, vote_mode)
        self.target_kind = _readtime.target_kind(dataset, self.vote_mode)
        self.with_va, self.decode_images = with_va, decode_images
        builder = open_build(dataset, data_dir=data_dir, config=config)
        self.folder = Path(builder.data_dir)
        unknown = [name for name in features if name not in builder.info.features]
        if unknown:
            available = ", ".join(sorted(builder.info.features))
            raise DataSourceError(f"{dataset} has no feature {', '.join(unknown)}; stored features: {available}")
        self.features = tuple(dict.fromkeys(("id", "image", *features)))
        self._source = _raw_source(builder, split)
        self._decoder = _Decoder(builder)
        self._targets = self._prepass(spec)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The policy's class names (``label`` indexes them)."""
        return tuple(self.policy.classes)

    @property
    def positions(self) -> np.ndarray:
        """int64: the record index in the stored split of each kept example."""
        return self._targets["position"]

    def _prepass(self, spec: Any) -> dict[str, np.ndarray]:
        """Labels of every record (images undecoded), the policy applied once with NumPy."""
        wanted = [spec.label_feature]
        if self.with_va:
            wanted += [name for name in ("valence", "arousal", "va_annotated") if name in self._decoder.dtypes]
        columns: dict[str, list[Any]] = {name: [] for name in wanted}
        for start in range(0, len(self._source), _PREPASS_BATCH):
            keys = list(range(start, min(start + _PREPASS_BATCH, len(self._source))))
            for record in self._source.__getitems__(keys):
                for name, value in self._decoder.values(record, wanted).items():
                    columns[name].append(value)
        arrays = {
            name: np.asarray(values, dtype=self._decoder.dtypes[name]).reshape(-1, *self._decoder.shapes[name])
            for name, values in columns.items()
        }
        targets = _readtime.policy_targets_numpy(
            arrays, self.dataset, self.policy, vote_mode=self.vote_mode, with_va=self.with_va
        )
        keep = targets.pop("keep")
        kept = {name: np.asarray(values)[keep] for name, values in targets.items()}
        kept["position"] = np.flatnonzero(keep).astype(np.int64)
        return kept

    def __len__(self) -> int:
        return len(self._targets["position"])

    def _index(self, index: SupportsIndex) -> int:
        if not hasattr(index, "__index__"):
            raise TypeError(f"PolicySource takes integer indices (or a list of them in __getitems__), not {index!r}")
        i = index.__index__()
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} examples of {self.dataset} {self.split}")
        return i % n

    def _example(self, i: int, record: dict[str, Any]) -> dict[str, Any]:
        example = self._decoder(record, self.features, decode_images=self.decode_images)
        for name, values in self._targets.items():
            if name != "position":
                example[name] = values[i]
        return example

    def __getitem__(self, index: SupportsIndex) -> dict[str, Any]:  # type: ignore[override]
        i = self._index(index)
        return self._example(i, self._source[int(self._targets["position"][i])])

    def __getitems__(self, indices: Sequence[SupportsIndex]) -> list[dict[str, Any]]:
        """Several examples in one read (PyTorch's DataLoader and Grain call this for a batch)."""
        rows = [self._index(index) for index in indices]
        records = self._source.__getitems__([int(self._targets["position"][i]) for i in rows]) if rows else []
        return [self._example(i, record) for i, record in zip(rows, records, strict=True)]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without the open ArrayRecord readers (DataLoader / Grain worker processes reopen them)."""
        state = dict(self.__dict__)
        state.pop("_source")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import tensorflow_datasets as tfds

        self.__dict__.update(state)
        self._source = _raw_source(tfds.builder_from_directory(str(self.folder)), self.split)

    def __repr__(self) -> str:
        mode = f", vote_mode={self.vote_mode.name!r}" if self.vote_mode is not None else ""
        return (
            f"PolicySource({self.dataset!r}, {self.split!r}, policy={self.policy.name!r}{mode}, "
            f"{len(self)} of {len(self._source)} examples, {self.folder})"
        )
