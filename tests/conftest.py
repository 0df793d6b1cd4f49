"""Shared pytest fixtures. The synthetic manual dirs live in ``fixtures_synth.py``."""

from fixtures_synth import (  # noqa: F401
    synth_affectnet_cropped,
    synth_affectnet_original,
    synth_ferplus,
    synth_rafdb,
)
