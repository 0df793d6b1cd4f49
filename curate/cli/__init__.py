"""The `curate` command line: a thin Typer layer over the importable library.

Each command group lives in its own module under ``curate.cli`` and registers itself on
``app`` when imported; this module imports them all. Heavy libraries (TensorFlow, FiftyOne,
DuckDB, Polars) are imported inside the command functions so ``curate --help`` stays fast.
Domain errors (``ValueError`` subclasses such as ``PolicyError``) become one red line and
exit code 1 through :func:`fail`, never a traceback.
"""

from __future__ import annotations

# Command modules register their commands on `app` at import time.
from curate.cli import (  # noqa: E402,F401
    audit_cmd,
    demo_cmd,  # noqa: E402,F401
    policies,
    predict_cmd,  # noqa: E402,F401
    protocols_cmd,
    review_cmds,  # noqa: E402,F401
    synth,  # noqa: E402,F401
    train_cmd,  # noqa: E402,F401
    workspace_cmds,
)
from curate.cli.app import app, console, fail  # noqa: F401

__all__ = ["app", "main"]


def main() -> None:
    app()
