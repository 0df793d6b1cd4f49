"""Run folders on disk: where they live, how their JSON is written and how a finished one is read.

Shared by the loop that writes run folders (:mod:`train.loop`) and the comparison that reads
them (:mod:`train.compare`), so neither imports the other back.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from curate.workspace import resolve_workspace_dir
from train.config import TrainError

COMPLETE_MARKER = "COMPLETE"
PARTIAL_SUFFIX = ".partial"


def resolve_runs_dir(runs_dir: str | Path | None = None, workspace: str | Path | None = None) -> Path:
    """``runs_dir``, else ``<workspace>/runs`` (workspace: argument, ``$CURATE_WORKSPACE`` or
    ``./curate-workspace``)."""
    if runs_dir:
        return Path(runs_dir)
    return resolve_workspace_dir(workspace) / "runs"


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=_json_default, allow_nan=False) + "\n", encoding="utf-8")


def finite(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def run_path(
    path_or_name: str | Path, *, runs_dir: str | Path | None = None, workspace: str | Path | None = None
) -> Path:
    """The folder of a complete run, given its path or its name (looked up in the runs dir)."""
    path = Path(path_or_name)
    if not path.is_dir():
        path = resolve_runs_dir(runs_dir, workspace) / str(path_or_name)
    if not path.is_dir():
        raise TrainError(f"no run folder {str(path_or_name)!r} (looked in {path.parent})")
    if not (path / COMPLETE_MARKER).exists():
        raise TrainError(f"run folder {path} is not complete (no {COMPLETE_MARKER} marker)")
    return path


def load_run(
    path_or_name: str | Path, *, runs_dir: str | Path | None = None, workspace: str | Path | None = None
) -> dict[str, Any]:
    """``config.json`` and ``metrics.json`` of a complete run folder (a path or a run name)."""
    path = run_path(path_or_name, runs_dir=runs_dir, workspace=workspace)
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    metrics = json.loads((path / "metrics.json").read_text(encoding="utf-8"))
    return {"path": path, "config": config, "metrics": metrics}
