"""Shared pytest fixtures. The synthetic manual dirs live in ``fixtures_synth.py``."""

import os
import sys
from pathlib import Path

# Test the checkout these tests live in, in this process and in the CLI subprocesses they
# start, even when the virtualenv's editable install points at another checkout (a git
# worktree sharing one venv).
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, REPO_ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH", "")]))

from fixtures_synth import (  # noqa: E402, F401 - after the path set-up above
    synth_affectnet_cropped,
    synth_affectnet_original,
    synth_ferplus,
    synth_rafdb,
)
