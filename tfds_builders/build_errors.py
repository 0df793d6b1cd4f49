"""What a failed or doubtful build tells its user: short, actionable, and first and last.

A manual dir that matches no accepted copy, or a split whose every row is rejected, is the
user's data problem, not a bug: the message says what was wrong, what to check in the
manual dir, and where the full list of rejected rows went -- on one line, printed when the
problem is found (so it is on the first screen of ``tfds build``'s output) and again as
the last line (the exception's). :func:`install_excepthook` keeps ``tfds build`` from
burying it under 40 lines of TFDS frames: an uncaught :class:`ManualDirError` prints its
message only (``CURATE_TRACEBACK=1`` prints the traceback as well). Other exceptions are
untouched.

Also here: :func:`sweep_incomplete_dirs`, which removes the ``incomplete.*`` folders that
killed builds leave beside a dataset version (TFDS renames its temporary folder only on
success).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from etils import epath

from curate import processes

log = logging.getLogger(__name__)

#: Warn (not fail) when more than this share of a split's rows is rejected.
REJECT_WARNING_SHARE = 0.10
#: Reasons listed in a message, most frequent first.
TOP_REASONS = 3
#: Entries of the manual dir listed when it matches no accepted copy.
LISTED_ENTRIES = 12
#: Marker a build writes into its temporary folder (host and process id), so a later build
#: can tell a folder of a dead build from one of a build still running.
OWNER_FILE = ".curate-build-owner.json"
MISSING_IMAGE = "missing image file"


class ManualDirError(AssertionError):
    """The manual dir cannot give this dataset (what TFDS raises for manual-dir problems is an
    ``AssertionError`` too, so callers catching that keep working)."""


def top_reasons(reasons: Mapping[str, int], limit: int = TOP_REASONS) -> str:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{count:,} {reason}" for reason, count in ranked[:limit])
    rest = sum(count for _, count in ranked[limit:])
    return text + (f", {rest:,} other" if rest else "")


def missing_folder_hint(records: Iterable[Mapping[str, Any]], manual_dir: epath.PathLike) -> str:
    """What to check in the manual dir, from the rejects' missing-image paths.

    The shallowest folder that the missing files' paths name and the manual dir lacks
    ("basic/Image/original/ is missing"); if every folder exists, how many of the files
    named under the most common folder are absent. Empty when no image was missing.
    """
    root = epath.Path(manual_dir)
    folders: collections.Counter[str] = collections.Counter()
    for record in records:
        if record.get("reason") == MISSING_IMAGE and record.get("detail"):
            folders[str(epath.Path(str(record["detail"])).parent)] += 1
    if not folders:
        return ""
    absent: collections.Counter[str] = collections.Counter()
    for folder, count in folders.items():
        parts = [p for p in folder.split("/") if p and p != "."]
        for depth in range(1, len(parts) + 1):
            candidate = "/".join(parts[:depth])
            if not (root / candidate).is_dir():
                absent[candidate] += count
                break
    if absent:
        folder, count = absent.most_common(1)[0]
        return f"{folder}/ is missing from {root} ({count:,} image paths point into it)"
    folder, count = folders.most_common(1)[0]
    return f"{count:,} image files named under {folder}/ are not in {root}"


def split_failure_message(
    dataset: str,
    split: str,
    rows_in: int,
    reasons: Mapping[str, int],
    hint: str,
    rejects_file: epath.PathLike | None,
) -> str:
    """One line: the split, how many rows were rejected, the top reasons, what to check."""
    rejected = sum(reasons.values())
    text = f"{dataset}: every row of split {split!r} was rejected ({rejected:,} of {rows_in:,}: {top_reasons(reasons)})"
    text += f"; check the manual dir: {hint}" if hint else "; check the manual dir against the layout in the docs"
    if rejects_file:
        text += f"; every rejected row is listed in {rejects_file}"
    return text


def share_warning(dataset: str, split: str, rows_in: int, reasons: Mapping[str, int], hint: str) -> str:
    rejected = sum(reasons.values())
    text = (
        f"{dataset}: {rejected:,} of {rows_in:,} rows of split {split!r} were rejected "
        f"({rejected / rows_in:.0%}, over the {REJECT_WARNING_SHARE:.0%} warning share): {top_reasons(reasons)}"
    )
    return text + (f"; check {hint}" if hint else "") + f"; see rejects-{split}.jsonl in the dataset's folder"


def listing(manual_dir: epath.PathLike, limit: int = LISTED_ENTRIES) -> str:
    """The manual dir's top-level entries (folders with a trailing slash), for "found: ..."."""
    root = epath.Path(manual_dir)
    try:
        entries = sorted(root.iterdir(), key=lambda p: p.name)
    except OSError as error:
        return f"(cannot list {root}: {error.strerror or error})"
    if not entries:
        return "nothing (the folder is empty)"
    names = [entry.name + ("/" if entry.is_dir() else "") for entry in entries[:limit]]
    more = len(entries) - limit
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def manual_dir_message(dataset: str, error: Exception, manual_dir: epath.PathLike) -> str:
    """One line for a manual dir that no reader accepts: the reader's reason and what is there."""
    reason = str(error)
    for prefix in (f"{manual_dir}: ", f"{epath.Path(manual_dir)}: "):  # the reader may name the folder too
        reason = reason.removeprefix(prefix)
    if " found: " in reason:  # the reader listed what it found already
        return f"{dataset}: cannot read the manual dir {manual_dir}: {reason}"
    return f"{dataset}: cannot read the manual dir {manual_dir}: {reason}; found: {listing(manual_dir)}"


def fail(message: str, instructions: str = "") -> ManualDirError:
    """Log ``message`` now (first screen) and return the exception to raise (last line).

    ``instructions`` (the builder's MANUAL_DOWNLOAD_INSTRUCTIONS) go between the two, so the
    expected layout is on screen without hiding the reason.
    """
    log.error(message)
    body = message
    if instructions:
        from tensorflow_datasets.core.utils import dedent

        body = f"{message}\nExpected layout (MANUAL_DOWNLOAD_INSTRUCTIONS):\n{dedent(instructions).rstrip()}\n{message}"
    return ManualDirError(body)


# --------------------------------------------------------------------------------------
# Uncaught ManualDirError: the message, not the frames
# --------------------------------------------------------------------------------------


def install_excepthook() -> None:
    """Make an uncaught :class:`ManualDirError` print its message only (idempotent; other
    exceptions go to the hook that was there before)."""
    previous = sys.excepthook
    if getattr(previous, "_curate_manual_dir_hook", False):
        return

    def hook(kind, value, traceback):
        if isinstance(value, ManualDirError) and not os.environ.get("CURATE_TRACEBACK"):
            sys.stderr.write(f"\nerror: {value}\n")
            return
        previous(kind, value, traceback)

    hook._curate_manual_dir_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook


# --------------------------------------------------------------------------------------
# incomplete.* folders of killed builds
# --------------------------------------------------------------------------------------


def claim(temporary_dir: epath.PathLike) -> None:
    """Mark ``temporary_dir`` (TFDS's ``incomplete.*`` folder of this build) as this process's."""
    owner = {"host": socket.gethostname(), "pid": os.getpid()}
    (epath.Path(temporary_dir) / OWNER_FILE).write_text(json.dumps(owner))


def sweep_incomplete_dirs(temporary_dir: epath.PathLike) -> list[str]:
    """Remove the ``incomplete.*_<version>`` siblings of this build's temporary folder that a
    dead build left: those whose owner marker names a process of this host that is gone, and
    empty ones. Others (a build running elsewhere, or folders without a marker) are kept and
    named in a warning. Returns the removed folders' names."""
    current = epath.Path(temporary_dir)
    name = current.name
    version = name.split("_", 1)[1] if name.startswith("incomplete.") and "_" in name else None
    if version is None or not current.parent.is_dir():
        return []
    removed, kept = [], []
    for sibling in current.parent.iterdir():
        if (
            sibling.name == name
            or not sibling.name.startswith("incomplete.")
            or not sibling.name.endswith(f"_{version}")
        ):
            continue
        if not sibling.is_dir():
            continue
        marker = sibling / OWNER_FILE
        dead = False
        if marker.exists():
            try:
                owner = json.loads(marker.read_text())
                dead = processes.gone(owner.get("host"), int(owner.get("pid", -1)))
            except (ValueError, OSError):
                dead = False
        elif not any(sibling.iterdir()):
            dead = True
        if dead:
            sibling.rmtree(missing_ok=True)
            removed.append(sibling.name)
        else:
            kept.append(sibling.name)
    if removed:
        log.info("removed %d folder(s) of killed builds: %s", len(removed), ", ".join(sorted(removed)))
    if kept:
        log.warning(
            "kept %s beside this build: another build may be writing there; delete it if none is running",
            ", ".join(sorted(kept)),
        )
    return sorted(removed)
