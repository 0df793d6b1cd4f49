"""ArrayRecord builds and ``curate.data_source``: random access, a policy at read time, no TensorFlow.

* Each builder (AffectNet crop224, FERPlus, RAF-DB) built from the synthetic manual dirs as
  TFRecord and as ArrayRecord: every feature of every example equal (stored bytes and
  decoded pixels), and the same metadata, split sizes and rejects ledgers.
* :class:`curate.data_source.PolicySource` read in reverse and shuffled order gives the rows
  and labels of the ``tf.data`` path (``curate.readtime.policy_dataset``) for hard and soft
  targets and valence/arousal; a fresh interpreter doing the same never imports TensorFlow.
* Bad input: a TFRecord build, a missing build, unknown features, indices out of range.
* ``docs/reading.md``: its plain example runs against a build; its PyTorch and Grain
  examples call only names and keywords the module has.
"""

from __future__ import annotations

import ast
import inspect
import json
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import tfds_builders  # noqa: E402, F401  (registers the builders)
from curate import data_source, readtime  # noqa: E402
from tfds_builders import common  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: dataset -> (builder config, manual-dir fixture)
DATASETS = {
    "affectnet": ("crop224", "synth_affectnet_original"),
    "ferplus": (None, "synth_ferplus"),
    "rafdb": (None, "synth_rafdb"),
}


def build(name: str, config: str | None, manual_dir: Path, data_dir: Path, file_format: str) -> Any:
    builder = tfds.builder(name, config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        file_format=file_format, download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder


@pytest.fixture(scope="module")
def builds(request, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """Both builds of every dataset, made once for the module (on first use of each dataset)."""
    made: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in made:
            config, fixture = DATASETS[name]
            manual_dir = request.getfixturevalue(fixture)
            root = tmp_path_factory.mktemp(f"builds_{name}")
            made[name] = {
                "config": config,
                "tfrecord": build(name, config, manual_dir, root / "tfrecord", "tfrecord"),
                "array_record": build(name, config, manual_dir, root / "array_record", "array_record"),
                "array_record_dir": root / "array_record",
            }
        return made[name]

    return get


def tf_examples(builder: Any, split: str) -> list[dict[str, Any]]:
    """A split of a TFRecord build through ``tf.data``, images left as their stored bytes."""
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    return list(tfds.as_numpy(ds))


def tf_accurate_decode(data: bytes, channels: int) -> np.ndarray:
    """TensorFlow's decode with libjpeg's accurate integer IDCT, which Pillow uses.

    ``tf.io.decode_image`` (what ``tfds.load`` and the trainer use) takes TensorFlow's default,
    ``INTEGER_FAST``: its JPEG pixels differ from Pillow's by a few levels (PNG is lossless).
    """
    import tensorflow as tf

    if data[:2] == b"\xff\xd8":
        return tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE").numpy()
    return tf.io.decode_png(data, channels=channels).numpy()


# --------------------------------------------------------------------------------------
# 1. ArrayRecord build == TFRecord build
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_array_record_build_equals_tfrecord_build(builds, name):
    made = builds(name)
    tfrecord, array_record = made["tfrecord"], made["array_record"]
    assert tfrecord.info.file_format.value == "tfrecord"
    assert array_record.info.file_format.value == "array_record"
    for split in tfrecord.info.splits:
        encoded = tf_examples(tfrecord, split)
        channels = tfrecord.info.features["image"].shape[-1]
        kwargs = {"data_dir": made["array_record_dir"], "config": made["config"]}
        stored = data_source.stored_examples(name, split, decode_images=False, **kwargs)
        pixels = data_source.stored_examples(name, split, **kwargs)
        assert len(encoded) == len(stored) == len(pixels) == tfrecord.info.splits[split].num_examples > 0, split
        for tf_bytes, ar_bytes, ar_pixels in zip(encoded, stored, pixels, strict=True):
            assert tf_bytes.keys() == ar_bytes.keys() == ar_pixels.keys()
            assert tf_bytes["image"] == ar_bytes["image"], tf_bytes["id"]  # the stored JPEG / PNG bytes
            tf_pixels = tf_accurate_decode(tf_bytes["image"], channels)
            np.testing.assert_array_equal(ar_pixels["image"], tf_pixels, err_msg=str(tf_bytes["id"]))
            assert ar_pixels["image"].dtype == np.uint8
            for key in tf_bytes.keys() - {"image"}:
                if isinstance(tf_bytes[key], bytes):  # Text features: str here, bytes from tf.data
                    assert ar_bytes[key] == tf_bytes[key].decode("utf-8"), key
                    continue
                assert np.asarray(ar_bytes[key]).dtype == np.asarray(tf_bytes[key]).dtype, key
                np.testing.assert_array_equal(ar_bytes[key], tf_bytes[key], err_msg=f"{key} of {tf_bytes['id']}")
    # Row accounting and metadata are the builder's, whatever the file format.
    assert dict(tfrecord.info.metadata) == dict(array_record.info.metadata)
    counts = tfrecord.info.metadata["counts"]
    for split, info in tfrecord.info.splits.items():
        assert array_record.info.splits[split].num_examples == info.num_examples == counts[split]["examples"]
        assert counts[split]["rows_in"] == counts[split]["examples"] + counts[split]["rejects"]
        assert common.read_ledger(tfrecord.data_path, split) == common.read_ledger(array_record.data_path, split)
    assert tfrecord.info.features.to_json() == array_record.info.features.to_json()


# --------------------------------------------------------------------------------------
# 2. PolicySource == the tf.data path
# --------------------------------------------------------------------------------------

CASES = [
    ("affectnet", "drop-8-plus", None, True),
    ("affectnet", "drop-7-plus", None, False),
    ("ferplus", "drop-8-plus", "majority", False),
    ("ferplus", "drop-7-plus", "crossentropy", False),
    ("rafdb", "merge-to-neutral", None, True),
    ("rafdb", "keep-all", None, False),
]


def shuffled(n: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


@pytest.mark.parametrize(("name", "policy", "vote_mode", "with_va"), CASES)
def test_policy_source_matches_the_tf_data_path(builds, name, policy, vote_mode, with_va):
    made = builds(name)
    split = "train"
    source = data_source.PolicySource(
        name, split, policy, data_dir=made["array_record_dir"], vote_mode=vote_mode, with_va=with_va
    )
    tf_ds = made["tfrecord"].as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    expected = list(tfds.as_numpy(readtime.policy_dataset(tf_ds, name, policy, vote_mode=vote_mode, with_va=with_va)))
    channels = made["tfrecord"].info.features["image"].shape[-1]
    assert len(source) == len(expected) > 0
    n = len(source)
    backwards = [source[i] for i in reversed(range(n))][::-1]  # random access, last example first
    order = shuffled(n, seed=3)
    batch = source.__getitems__(order)
    by_position = dict(zip(order, batch, strict=True))
    for i, (encoded, target) in enumerate(expected):
        image = tf_accurate_decode(encoded, channels)
        label = target["label"] if with_va else target
        for got in (backwards[i], by_position[i], source[i - n]):
            np.testing.assert_array_equal(got["image"], image)
            np.testing.assert_allclose(got["label"], label, rtol=1e-6)
            if with_va:
                for key in ("valence", "arousal", "va_mask"):
                    np.testing.assert_allclose(got[key], target[key], rtol=1e-6, err_msg=key)
    kind = readtime.target_kind(name, vote_mode)
    assert source.target_kind == kind
    assert np.asarray(source[0]["label"]).dtype == (np.int64 if kind == "hard" else np.float32)
    # Ids in stored order, minus exactly the rows the NumPy policy drops.
    stored = data_source.stored_examples(name, split, data_dir=made["array_record_dir"], decode_images=False)
    feature = readtime.label_feature(name)
    keep = readtime.policy_targets_numpy(
        {feature: np.stack([np.asarray(e[feature]) for e in stored])}, name, policy, vote_mode=vote_mode
    )["keep"]
    assert [e["id"] for e, kept in zip(stored, keep, strict=True) if kept] == [e["id"] for e in source]
    np.testing.assert_array_equal(source.positions, np.flatnonzero(keep))


def test_a_policy_that_drops_rows_drops_them(builds):
    made = builds("affectnet")
    everything = data_source.PolicySource("affectnet", "train", "keep-all", data_dir=made["array_record_dir"])
    fewer = data_source.PolicySource("affectnet", "train", "drop-7-plus", data_dir=made["array_record_dir"])
    assert len(fewer) < len(everything) == made["array_record"].info.splits["train"].num_examples
    assert {int(e["canonical"]) for e in fewer}.isdisjoint({7, 8, 9, 10})
    assert fewer.class_names == ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger")


def test_encoded_images_extra_features_and_pickling(builds):
    made = builds("rafdb")
    source = data_source.PolicySource(
        "rafdb", "test", data_dir=made["array_record_dir"], decode_images=False, features=("landmarks5", "face_box")
    )
    example = source[0]
    assert isinstance(example["image"], bytes) and example["image"][:2] == b"\xff\xd8"  # a JPEG
    assert example["landmarks5"].shape == (5, 2) and example["face_box"].shape == (4,)
    copy = pickle.loads(pickle.dumps(source))  # DataLoader / Grain workers
    assert [e["id"] for e in copy] == [e["id"] for e in source]
    assert copy[-1]["image"] == source[-1]["image"]


def _ids_at(source: data_source.PolicySource, indices: list[int]) -> list[str]:
    return [example["id"] for example in source.__getitems__(indices)]


def test_worker_processes_read_the_same_examples(builds):
    """As DataLoader / Grain workers do: the source goes to fresh (spawned) processes and reads there."""
    import concurrent.futures
    import multiprocessing

    made = builds("rafdb")
    source = data_source.PolicySource("rafdb", "train", "drop-7-plus", data_dir=made["array_record_dir"])
    order = shuffled(len(source), seed=5)
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        got = list(pool.map(_ids_at, [source, source], halves))
    assert got[0] + got[1] == [source[i]["id"] for i in order]


def test_reading_never_imports_tensorflow(builds):
    """A fresh interpreter opens, indexes and batch-reads a source: ``tensorflow`` never enters sys.modules."""
    made = builds("ferplus")
    script = textwrap.dedent(
        f"""
        import sys
        from curate.data_source import PolicySource
        source = PolicySource("ferplus", "train", "drop-8-plus", vote_mode="crossentropy",
                              data_dir={str(made["array_record_dir"])!r})
        examples = [source[i] for i in reversed(range(len(source)))] + source.__getitems__([2, 0, 1])
        assert all(e["image"].shape == (48, 48, 1) for e in examples)
        loaded = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith("tensorflow."))
        print(len(examples), loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    count, loaded = result.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) > 3 and loaded == "[]"


# --------------------------------------------------------------------------------------
# 3. Bad input: one line naming the fix
# --------------------------------------------------------------------------------------


def test_a_tfrecord_build_names_the_array_record_command(builds):
    made = builds("ferplus")
    data_dir = Path(made["tfrecord"].data_dir).parents[1]
    with pytest.raises(data_source.DataSourceError) as raised:
        data_source.PolicySource("ferplus", "train", data_dir=data_dir)
    message = str(raised.value)
    assert "\n" not in message and "is a tfrecord build" in message
    command = (
        f"tfds build ferplus --imports tfds_builders --file_format=array_record --data_dir {data_dir} "
        "--manual_dir <folder with fer2013new.csv and fer2013.csv, icml_face_data.csv or train.csv + test.csv>"
    )
    assert message.endswith(command)


def test_missing_build_unknown_feature_split_and_index(builds, tmp_path):
    with pytest.raises(data_source.DataSourceError, match=r"no built dataset 'rafdb'.*--file_format=array_record"):
        data_source.PolicySource("rafdb", "train", data_dir=tmp_path)
    made = builds("rafdb")
    with pytest.raises(
        data_source.DataSourceError, match="no feature nose; stored features: age_group, face_box, gender"
    ):
        data_source.PolicySource("rafdb", "train", data_dir=made["array_record_dir"], features=("nose",))
    with pytest.raises(data_source.DataSourceError, match="no split 'validation'; splits: train, test"):
        data_source.PolicySource("rafdb", "validation", data_dir=made["array_record_dir"])
    with pytest.raises(readtime.ReadTimeError, match="vote mode applies to ferplus only"):
        data_source.PolicySource("rafdb", "train", data_dir=made["array_record_dir"], vote_mode="majority")
    source = data_source.PolicySource("rafdb", "train", data_dir=made["array_record_dir"])
    with pytest.raises(IndexError, match=f"index {len(source)} out of range"):
        source[len(source)]
    with pytest.raises(TypeError, match="integer indices"):
        source[0:2]


def test_tfds_cli_array_record_build_opens(synth_ferplus, tmp_path):
    """The documented command (``tfds build ... --file_format=array_record``) gives a source."""
    from test_tfds_builders import assert_ok, run_tfds

    result = run_tfds(
        ["build", "ferplus", "--imports", "tfds_builders", "--file_format=array_record",
         f"--manual_dir={synth_ferplus}", f"--data_dir={tmp_path}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert_ok(result)
    source = data_source.PolicySource("ferplus", "test", "drop-8-plus", data_dir=tmp_path)
    assert len(source) > 0 and list(source.folder.glob("ferplus-test.array_record-*"))
    assert json.loads((source.folder / "dataset_info.json").read_text())["fileFormat"] == "array_record"


# --------------------------------------------------------------------------------------
# 4. docs/reading.md matches the module
# --------------------------------------------------------------------------------------


def doc_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "docs" / "reading.md").read_text(), flags=re.S)


def test_docs_plain_example_runs(builds):
    made = builds("rafdb")
    plain = next(block for block in doc_blocks() if "import torch" not in block and "import grain" not in block)
    code = plain.replace('"~/tensorflow_datasets"', repr(str(made["array_record_dir"])))
    assert code != plain
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/reading.md", "exec"), namespace)  # noqa: S102
    assert len(namespace["source"]) > 0


def test_docs_torch_and_grain_examples_use_the_real_api():
    blocks = doc_blocks()
    assert any("import torch" in b for b in blocks) and any("grain" in b and "MapDataset.source" in b for b in blocks)
    init = inspect.getsource(data_source.PolicySource.__init__)
    attributes = set(dir(data_source.PolicySource)) | set(re.findall(r"self\.(\w+)", init))
    seen = set()
    for block in blocks:
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module == "curate.data_source":
                for alias in node.names:
                    assert hasattr(data_source, alias.name), alias.name
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and hasattr(data_source, node.func.id):
                signature = inspect.signature(getattr(data_source, node.func.id))
                signature.bind(*[None] * len(node.args), **{k.arg: None for k in node.keywords})
                seen.add(node.func.id)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "source":
                assert node.attr in attributes, node.attr
    assert "PolicySource" in seen
