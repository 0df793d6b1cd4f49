"""Session fixtures: small synthetic manual dirs written by ``curate.synth`` (shared by all tests).

Each fixture returns the manual dir (a ``Path``); the quirk manifest sits next to it at
``<dir>.synth_manifest.json`` (:func:`curate.synth.manifest_path`). Sizes are a few hundred
images so the whole set is generated in seconds:

* ``synth_affectnet_original`` -- original layout, ~220 images (all quirks), seed 101.
* ``synth_affectnet_cropped`` -- cropped "AffectNet-8" layout, ~150 crops, seed 102.
* ``synth_ferplus`` -- fer2013.csv + fer2013new.csv, ~180 rows, seed 103.
* ``synth_rafdb`` -- RAF-DB basic, ~230 images, seed 104.

Treat them as read-only: copy a dir (``shutil.copytree``) before changing it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SYNTH_WORKERS = 2


def read_manifest(manual_dir: Path) -> dict[str, Any]:
    """The generator's manifest of a synthetic manual dir."""
    return json.loads((manual_dir.parent / f"{manual_dir.name}.synth_manifest.json").read_text())


@pytest.fixture(scope="session")
def synth_affectnet_original(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.synth.affectnet import generate_affectnet

    out = tmp_path_factory.mktemp("synth_affectnet") / "original"
    generate_affectnet(out, layout="original", scale=0.0005, seed=101, workers=SYNTH_WORKERS)
    return out


@pytest.fixture(scope="session")
def synth_affectnet_cropped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.synth.affectnet import generate_affectnet

    out = tmp_path_factory.mktemp("synth_affectnet") / "cropped"
    generate_affectnet(out, layout="cropped", scale=0.0005, seed=102, workers=SYNTH_WORKERS)
    return out


@pytest.fixture(scope="session")
def synth_ferplus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.synth.ferplus import generate_ferplus

    out = tmp_path_factory.mktemp("synth_ferplus") / "ferplus"
    generate_ferplus(out, scale=0.005, seed=103, workers=SYNTH_WORKERS)
    return out


@pytest.fixture(scope="session")
def synth_rafdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.synth.rafdb import generate_rafdb

    out = tmp_path_factory.mktemp("synth_rafdb") / "rafdb"
    generate_rafdb(out, scale=0.015, seed=104, workers=SYNTH_WORKERS)
    return out
