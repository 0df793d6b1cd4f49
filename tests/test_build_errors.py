"""Manual-dir mistakes under ``tfds build``: one actionable line, first and last, and nothing lost.

Cases (issue #18): a split whose every row the builder rejects (AffectNet without its image
folder), a split whose every row the reader rejects (a hand-written FERPlus copy), a split
with more than the warning share rejected, the Beam path, the ``tfds build`` command line
(message on the first screen and on the last line, no traceback), and the ``incomplete.*``
folders of killed builds.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tfds = pytest.importorskip("tensorflow_datasets")

import tfds_builders  # noqa: E402, F401  (registers the builders)
from tfds_builders import build_errors  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TFDS_BIN = Path(sys.executable).with_name("tfds")
FIRST_SCREEN = 24


def build(name: str, manual_dir: Path, data_dir: Path, config: str | None = None, **download_kwargs):
    builder = tfds.builder(name, config=config, data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir), **download_kwargs)
    )
    return builder


def run_tfds(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [str(TFDS_BIN), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def affectnet_without_images(synth_affectnet_original, tmp_path) -> Path:
    """The original release's file lists, without ``Manually_Annotated_Images/``."""
    manual = tmp_path / "manual"
    shutil.copytree(
        synth_affectnet_original / "Manually_Annotated_file_lists", manual / "Manually_Annotated_file_lists"
    )
    return manual


PIXELS = " ".join(["128"] * 2304)
VOTES = "0,10,0,0,0,0,0,0,0,0"


def write_ferplus(manual: Path, rows: list[tuple[int, str, str]]) -> Path:
    """A FERPlus copy written by hand: (emotion, pixels, Usage) rows, votes all "happiness"."""
    manual.mkdir(parents=True, exist_ok=True)
    (manual / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows))
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    (manual / "fer2013new.csv").write_text(
        header + "".join(f"{u},fer{i:07d}.png,{VOTES}\n" for i, (_, _, u) in enumerate(rows))
    )
    return manual


def test_every_row_rejected_by_the_builder_names_the_missing_folder(affectnet_without_images, tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger=build_errors.__name__)
    with pytest.raises(build_errors.ManualDirError) as error:
        build("affectnet", affectnet_without_images, tmp_path / "data", config="crop224")
    message = str(error.value)
    assert "\n" not in message
    assert "affectnet: every row of split 'train' was rejected" in message
    assert "missing image file" in message
    assert "Manually_Annotated_Images/ is missing" in message
    # Logged when found (the first screen), raised as the last line.
    assert [r.getMessage() for r in caplog.records] == [message]
    # Nothing lost: every row of the split is listed in the file the message names.
    listed = tmp_path / "data" / "affectnet" / "crop224" / "rejects-train.failed.jsonl"
    assert str(listed) in message
    rows_in = (
        len((affectnet_without_images / "Manually_Annotated_file_lists" / "training.csv").read_text().splitlines()) - 1
    )
    records = [json.loads(line) for line in listed.read_text().splitlines()]
    assert len(records) == rows_in and "missing image file" in {r["reason"] for r in records}
    assert f"{rows_in:,} of {rows_in:,}" in message
    assert not list((tmp_path / "data" / "affectnet" / "crop224").glob("incomplete.*"))


def test_every_row_rejected_by_the_reader_fails_before_generating(tmp_path):
    rows = [(3, PIXELS, "Training")] * 3 + [(3, PIXELS, "PublicTest")] * 2 + [(3, "1 2 3", "PrivateTest")] * 2
    manual = write_ferplus(tmp_path / "manual", rows)
    with pytest.raises(
        build_errors.ManualDirError, match=r"every row of split 'test' was rejected \(2 of 2: 2 pixel count\)"
    ):
        build("ferplus", manual, tmp_path / "data")
    records = (tmp_path / "data" / "ferplus" / "rejects-test.failed.jsonl").read_text().splitlines()
    assert [json.loads(r)["source_row"] for r in records] == [7, 8]


def test_a_large_rejected_share_warns_and_builds(tmp_path, caplog):
    rows = [(3, PIXELS, "Training")] * 8 + [(3, "1 2 3", "Training")] * 2 + [(3, PIXELS, "PublicTest")] * 2
    rows += [(3, PIXELS, "PrivateTest")] * 2
    manual = write_ferplus(tmp_path / "manual", rows)
    caplog.set_level(logging.WARNING, logger=build_errors.__name__)
    builder = build("ferplus", manual, tmp_path / "data")
    assert builder.info.splits["train"].num_examples == 8
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["ferplus: 2 of 10 rows of split 'train' were rejected (20%, over the 10% warning share): "
                        "2 pixel count; see rejects-train.jsonl in the dataset's folder"]  # fmt: skip


def test_beam_build_with_every_row_rejected_gives_the_same_error(affectnet_without_images, tmp_path):
    with pytest.raises(build_errors.ManualDirError, match="Manually_Annotated_Images/ is missing"):
        build(
            "affectnet",
            affectnet_without_images,
            tmp_path / "data",
            config="crop224",
            beam_options=__import__("apache_beam").options.pipeline_options.PipelineOptions(["--runner=DirectRunner"]),
        )


@pytest.mark.parametrize("case", ["no layout", "every row rejected", "empty"])
def test_tfds_build_prints_the_reason_first_and_last_without_a_traceback(case, affectnet_without_images, tmp_path):
    manual = {"every row rejected": affectnet_without_images, "no layout": tmp_path / "other", "empty": tmp_path / "e"}[
        case
    ]
    manual.mkdir(exist_ok=True)
    if case == "no layout":
        (manual / "README.txt").write_text("not AffectNet")
        (manual / "photos").mkdir()
    args = ["build", "affectnet", "--imports", "tfds_builders", "--config", "crop224"]
    result = run_tfds([*args, f"--manual_dir={manual}", f"--data_dir={tmp_path / 'data'}"], cwd=tmp_path)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    last = lines[-1]
    assert last.startswith("affectnet: ") or last.startswith("error: affectnet: "), last
    assert "Traceback" not in result.stderr
    reason = last.removeprefix("error: ")
    first = next(i for i, line in enumerate(lines) if reason in line)
    assert first < FIRST_SCREEN, lines[: first + 1]
    expected = {
        "no layout": ("no AffectNet layout found", "found: README.txt, photos/"),
        "every row rejected": ("Manually_Annotated_Images/ is missing",),
        "empty": ("does not exist or is empty",),
    }[case]
    for text in expected:
        assert text in reason


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_rebuild_removes_the_folders_of_killed_builds(synth_ferplus, tmp_path, caplog):
    version_parent = tmp_path / "data" / "ferplus"
    version = str(tfds.builder("ferplus", data_dir=str(tmp_path / "data")).info.version)
    dead = version_parent / f"incomplete.DEAD01_{version}"
    empty = version_parent / f"incomplete.EMPTY1_{version}"
    unknown = version_parent / f"incomplete.OTHER1_{version}"
    for folder in (dead, empty, unknown):
        folder.mkdir(parents=True)
    (dead / "ferplus-train.tfrecord-00000-of-00001").write_bytes(b"partial")
    (dead / build_errors.OWNER_FILE).write_text(
        json.dumps({"host": __import__("socket").gethostname(), "pid": _dead_pid()})
    )
    (unknown / "ferplus-train.tfrecord-00000-of-00001").write_bytes(b"someone else's")
    caplog.set_level(logging.INFO, logger=build_errors.__name__)
    build("ferplus", synth_ferplus, tmp_path / "data")
    assert not dead.exists() and not empty.exists() and unknown.exists()
    assert any(unknown.name in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    leftovers = sorted(p.name for p in version_parent.iterdir())
    assert leftovers == [version, unknown.name]
