"""Launch the FiftyOne App on a review dataset, bound to the loopback interface only.

The App server listens on ``127.0.0.1`` (never on all interfaces): reach it from another
machine through an SSH tunnel (``ssh -L 5151:127.0.0.1:5151 host``). :func:`launch` checks
the port first so a busy port is one clear error, not a server stack trace.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Callable
from typing import Any

#: The only address the App is served on.
ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5151


class AppLaunchError(RuntimeError):
    """The App cannot be started (busy port, unknown dataset)."""


def app_url(dataset_name: str, port: int, *, view: str | None = None) -> str:
    """The App's URL of a dataset (optionally opening a saved view)."""
    url = f"http://{ADDRESS}:{port}/datasets/{urllib.parse.quote(dataset_name, safe='')}"
    return url + (f"?view={urllib.parse.quote(view, safe='')}" if view else "")


def port_is_free(port: int, address: str = ADDRESS) -> bool:
    """Whether nothing listens on ``address:port`` yet."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def launch(name: str, *, port: int = DEFAULT_PORT, wait: bool = True, announce: Callable[[str], None] = print) -> Any:
    """Serve the App for dataset ``name`` on ``127.0.0.1:port``.

    Prints the URL through ``announce``; with ``wait`` blocks until interrupted (Ctrl-C),
    otherwise returns the FiftyOne session.
    """
    from curate.review import db

    if not 1 <= port <= 65535:
        raise AppLaunchError(f"port {port} is out of range 1-65535")
    fo = db.connect()
    if not fo.dataset_exists(name):
        known = ", ".join(sorted(fo.list_datasets())) or "none"
        raise AppLaunchError(f"no FiftyOne dataset {name!r} (datasets: {known}); run `curate review load` first")
    if not port_is_free(port):
        raise AppLaunchError(f"port {port} on {ADDRESS} is already in use; pick another with --port")
    dataset = fo.load_dataset(name)
    session = fo.launch_app(dataset, remote=True, address=ADDRESS, port=port)
    announce(f"FiftyOne App for {name!r}: {app_url(name, port)}")
    announce(f"saved views: {', '.join(dataset.list_saved_views()) or 'none'} (open one with ?view=NAME)")
    if wait:
        try:
            session.wait(-1)
        except KeyboardInterrupt:
            pass
    return session
