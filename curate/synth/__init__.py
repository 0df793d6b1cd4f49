"""Synthetic data generation (procedural faces and fake datasets).

* :mod:`curate.synth.faces` -- procedural face images with learnable expressions.
  Its parts: :mod:`~curate.synth.face_expression`, :mod:`~curate.synth.face_geometry`,
  :mod:`~curate.synth.face_pose`, :mod:`~curate.synth.face_render`.
* :func:`generate_affectnet`, :func:`generate_ferplus`, :func:`generate_rafdb` -- fake manual
  dirs in the raw release layouts (written with the :mod:`curate.formats` writers), each
  returning a :class:`SynthReport`; the quirk manifest and the label-noise ledger are
  written next to the output folder (:func:`manifest_path`, :func:`noise_ledger_path`).

The generators are imported lazily, so ``import curate.synth`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate_affectnet": "curate.synth.affectnet",
    "generate_ferplus": "curate.synth.ferplus",
    "generate_rafdb": "curate.synth.rafdb",
    "SynthReport": "curate.synth.common",
    "manifest_path": "curate.synth.common",
    "noise_ledger_path": "curate.synth.common",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'curate.synth' has no attribute {name!r}")
