"""Launch the FiftyOne App on a review dataset, bound to the loopback interface only.

The App server listens on ``127.0.0.1`` (never on all interfaces): reach it from another
machine through an SSH tunnel (``ssh -L 5151:127.0.0.1:5151 host``). :func:`launch` checks
the port first so a busy port is one clear error, not a server stack trace.

The server runs as FiftyOne runs it (its service wrapper ``fiftyone/service/main.py``, which
puts itself and the server in a process group of their own), but started here as an
:class:`AppServer`, so that

* its output goes to a log file (``--log-file``; by default
  ``<tmp>/curate-review-app-<port>.log``), not over the launcher's terminal;
* the launcher watches it: when the server dies, :func:`launch` stops and raises
  :class:`AppLaunchError` naming the server and its log, instead of showing a dead URL;
* stopping it (Ctrl-C, or the server's death) ends the whole process group within
  :data:`STOP_GRACE_S` seconds (SIGTERM, then SIGKILL) -- FiftyOne's own stop waits for the
  server's graceful shutdown, which keeps the port for 30-50 s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The only address the App is served on.
ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5151
#: Seconds the server gets to exit after SIGTERM before its process group is killed.
STOP_GRACE_S = 3.0
#: Seconds to wait for the server to listen on its port.
START_TIMEOUT_S = 120.0
#: How often the launcher checks that the server is still alive.
WATCH_INTERVAL_S = 0.5


class AppLaunchError(RuntimeError):
    """The App cannot be started (busy port, unknown dataset), or its server died."""


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


def default_log_path(port: int) -> Path:
    """``<tmp>/curate-review-app-<port>.log``: where the App server writes unless told otherwise."""
    return Path(tempfile.gettempdir()) / f"curate-review-app-{port}.log"


class AppServer:
    """The FiftyOne App server on ``127.0.0.1:port``, run by FiftyOne's service wrapper.

    Starting it blocks until the server listens (or raises :class:`AppLaunchError` naming its
    log). :meth:`failure` says whether (and how) it died; :meth:`stop` ends its process group
    quickly and may be called more than once. Register it as the port's server
    (:func:`launch` does) before FiftyOne opens a session, so the session uses it.
    """

    def __init__(self, port: int, log_path: str | os.PathLike[str], *, do_not_track: bool = True) -> None:
        import fiftyone.constants as foc
        import psutil

        self.port = port
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        wrapper = Path(foc.FIFTYONE_DIR) / "service" / "main.py"
        command = [sys.executable, "main.py", "--port", str(port), "--address", ADDRESS]
        with open(self.log_path, "wb") as log:
            self.wrapper = psutil.Popen(
                [sys.executable, str(wrapper), "--51-service", "server", *command],
                cwd=foc.SERVER_DIR,
                stdin=subprocess.PIPE,  # the wrapper stops its server when this pipe closes
                stdout=log,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "FIFTYONE_DISABLE_SERVICES": "1",
                    "FIFTYONE_DO_NOT_TRACK": "1" if do_not_track else "0",
                },
            )
        self.server_pid: int | None = None
        self._stopped = False
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_until_listening(self) -> None:
        import psutil

        deadline = time.monotonic() + START_TIMEOUT_S
        while self.server_pid is None:
            if self.wrapper.poll() is not None:
                raise AppLaunchError(
                    f"the FiftyOne App server for {ADDRESS}:{self.port} exited with code {self.wrapper.returncode} "
                    f"while starting; its log: {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise AppLaunchError(
                    f"the FiftyOne App server did not listen on {ADDRESS}:{self.port} within "
                    f"{START_TIMEOUT_S:.0f} s; its log: {self.log_path}"
                )
            with contextlib.suppress(psutil.Error):
                for child in self.wrapper.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        if any(
                            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == self.port
                            for c in child.net_connections(kind="tcp")
                        ):
                            self.server_pid = child.pid
                            break
            if self.server_pid is None:
                time.sleep(0.25)

    def failure(self) -> str | None:
        """``None`` while the server runs, else one line saying what died and where the log is."""
        import psutil

        if self._stopped:
            return None
        try:
            server = psutil.Process(self.server_pid)
            server_alive = server.is_running() and server.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            server_alive = False
        if server_alive and self.wrapper.poll() is None:
            return None
        what = (
            f"the FiftyOne App server (pid {self.server_pid}) on {ADDRESS}:{self.port} died"
            if not server_alive
            else f"the FiftyOne App server's wrapper (pid {self.wrapper.pid}) exited with code {self.wrapper.returncode}"
        )
        return f"{what}; the App is gone. Its log: {self.log_path}"

    def stop(self) -> None:
        """End the wrapper, the server and their children: SIGTERM to their process group,
        then SIGKILL after :data:`STOP_GRACE_S` seconds."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError, ValueError):
            self.wrapper.stdin.close()
        pids = self._group_pids()
        self._signal(signal.SIGTERM, pids)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and self._alive(pids):
            time.sleep(0.1)
        if self._alive(pids):
            self._signal(signal.SIGKILL, pids)
        with contextlib.suppress(Exception):
            self.wrapper.wait(timeout=STOP_GRACE_S)

    def _group(self) -> int | None:
        """The wrapper's process group, unless it is still ours (the wrapper has not called
        ``setpgrp`` yet): never signal the launcher's own group."""
        try:
            group = os.getpgid(self.wrapper.pid)
        except OSError:
            return None
        return None if group == os.getpgrp() else group

    def _group_pids(self) -> set[int]:
        import psutil

        pids = {self.wrapper.pid} | ({self.server_pid} if self.server_pid else set())
        with contextlib.suppress(psutil.Error):
            pids |= {child.pid for child in self.wrapper.children(recursive=True)}
        return pids

    def _signal(self, signum: int, pids: set[int]) -> None:
        group = self._group()
        if group is not None:
            with contextlib.suppress(OSError):
                os.killpg(group, signum)
        for pid in pids:  # also those that left the group, or all of them before setpgrp
            with contextlib.suppress(OSError):
                os.kill(pid, signum)

    def _alive(self, pids: set[int]) -> bool:
        import psutil

        self.wrapper.poll()  # reap the wrapper (our child) so it does not linger as a zombie
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    return True
        return False


def launch(
    name: str,
    *,
    port: int = DEFAULT_PORT,
    wait: bool = True,
    announce: Callable[[str], None] = print,
    log_path: str | os.PathLike[str] | None = None,
) -> Any:
    """Serve the App for dataset ``name`` on ``127.0.0.1:port``.

    Prints the URL through ``announce``. With ``wait``, blocks until interrupted (Ctrl-C) or
    until the server dies, and stops the server either way (within a few seconds); a dead
    server raises :class:`AppLaunchError` naming it and its log (``log_path``, default
    :func:`default_log_path`). Without ``wait``, returns the FiftyOne session (the server
    stops when the session closes).
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
    import fiftyone.core.session.session as fos_session

    dataset = fo.load_dataset(name)
    server = AppServer(port, log_path or default_log_path(port), do_not_track=fo.config.do_not_track)
    fos_session._server_services[port] = server  # the session uses this server (and stops it on close)
    try:
        session = fo.launch_app(dataset, remote=True, address=ADDRESS, port=port)
    except BaseException:
        fos_session._server_services.pop(port, None)
        server.stop()
        raise
    announce(f"FiftyOne App for {name!r}: {app_url(name, port)}")
    announce(f"saved views: {', '.join(dataset.list_saved_views()) or 'none'} (open one with ?view=NAME)")
    announce(f"App server log: {server.log_path}")
    if not wait:
        return session
    failure = None
    try:
        while (failure := server.failure()) is None:
            time.sleep(WATCH_INTERVAL_S)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    if failure is not None:
        raise AppLaunchError(failure)
    return session
