"""Whether the process that left a file behind is still running (temporary files of killed writers)."""

from __future__ import annotations

import os
import socket


def alive(pid: int) -> bool:
    """True while process ``pid`` of this host runs (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def gone(host: str | None, pid: int) -> bool:
    """True when ``pid`` was a process of this host and has ended (of another host: unknown, False)."""
    return host == socket.gethostname() and not alive(pid)
