"""`curate review app`: URL and port checks (quick), and the real App in headless Chromium (slow).

The slow test follows the checked recipe (shared docs, recipes.md): the grid has rendered
when elements ``data-cy="looker"`` carry ``canvas-loaded="true"`` and label pills
``title="ground_truth: ..."`` exist. The screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from review_fixtures import fo, free_port, write_affectnet, write_run  # noqa: F401

from curate import labels
from curate.review import app as review_app

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--window-size=1400,900", "--virtual-time-budget=15000",
)  # fmt: skip


def test_app_url_and_port_checks(fo: Any) -> None:  # noqa: F811
    assert review_app.app_url("rv app", 5151) == "http://127.0.0.1:5151/datasets/rv%20app"
    assert review_app.app_url("x", 5152, view="confident-mistakes").endswith("/datasets/x?view=confident-mistakes")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert not review_app.port_is_free(port)
        fo.Dataset("rv-port", persistent=False)
        with pytest.raises(review_app.AppLaunchError, match=f"port {port} on 127.0.0.1 is already in use"):
            review_app.launch("rv-port", port=port, wait=False)
    assert review_app.port_is_free(free_port())


def _listeners(port: int) -> list[tuple[str, list[int]]]:
    """``(local address, pids)`` of every socket listening on ``port`` (from ``ss``)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            rows.append((fields[3], [int(p) for p in re.findall(r"pid=(\d+)", line)]))
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(launcher: subprocess.Popen[bytes], server_pids: set[int], port: int) -> None:
    """Stop the launcher, then the App server by PID (it takes ~30 s after SIGTERM)."""
    if launcher.poll() is None:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=20)
        except subprocess.TimeoutExpired:
            launcher.kill()
    for pid in server_pids:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and (any(_alive(p) for p in server_pids) or _listeners(port)):
        time.sleep(0.5)
    for pid in server_pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _tiles(dom: str) -> tuple[list[str], list[str]]:
    """The grid's tiles (``data-cy="looker"``) and those whose canvas says ``canvas-loaded="true"``."""
    tiles = [part.split("</canvas>", 1)[0] for part in dom.split('data-cy="looker"')[1:]]
    return tiles, [tile for tile in tiles if 'canvas-loaded="true"' in tile]


def _chromium(*args: str, timeout: int = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [shutil.which("chromium") or "chromium", *CHROMIUM_FLAGS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get install chromium)")
def test_app_renders_in_headless_chromium(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "affectnet"
    frame = write_affectnet(root, n_train=24, n_validation=12, seed=7)
    policy = labels.get_policy("merge-to-neutral")
    mapped = policy.apply(frame["label"].to_numpy())
    run = write_run(tmp_path / "runs" / "app-run", ids=frame["id"].to_list(), given=mapped, policy=policy.name)
    from curate.review import load as rl

    rl.load("affectnet", manual_dir=root, run=run, name="rv-app", cache_dir=tmp_path / "cache")
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "curate", "review", "app", "--name", "rv-app", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200"},
            cwd=tmp_path,
        )
    server_pids: set[int] = set()
    try:
        url = review_app.app_url("rv-app", port)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/fiftyone", timeout=2) as response:
                    # The server can answer before the launcher has printed the URL.
                    if response.status == 200 and url in log.read_text():
                        break
            except OSError:
                pass
            assert launcher.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the App did not answer within 120 s:\n" + log.read_text()
            time.sleep(1)
        listeners = _listeners(port)
        server_pids = {pid for _, pids in listeners for pid in pids}
        assert listeners and all(address == f"127.0.0.1:{port}" for address, _ in listeners), listeners

        for _attempt in range(4):  # a page load on a busy machine may outrun the grid
            dom = _chromium(f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", url)
            assert dom.returncode == 0, dom.stderr[-2000:]
            lookers, loaded = _tiles(dom.stdout)
            if len(loaded) >= max(8, len(lookers) - 1):  # all but the one missing image
                break
            time.sleep(3)
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "review_app_dom.html").write_text(dom.stdout)  # for diagnosing a failure
        pills = re.findall(r'title="ground_truth: ([^"]+)"', dom.stdout)
        assert len(loaded) >= 8, f"{len(loaded)} of {len(lookers)} tiles loaded"
        assert len(loaded) >= len(lookers) - 1  # the one missing image may not load
        assert set(pills) <= set(labels.CANONICAL_NAMES) and len(pills) >= 8
        assert re.search(r'title="pred_app_run: [^"]+"', dom.stdout)

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "review_app.png"
        for _attempt in range(4):  # as for the DOM: a busy machine may shoot the "Pixelating..." splash
            picture = _chromium(f"--user-data-dir={tmp_path / 'chrome'}", f"--screenshot={shot}", url)
            if picture.returncode == 0 and shot.stat().st_size > 50_000:
                break
            time.sleep(3)
        assert picture.returncode == 0 and shot.stat().st_size > 50_000, "the screenshot shows no grid"
        docs_image = ROOT / "docs" / "img" / "review_app.png"
        if not docs_image.exists():  # the docs keep their (richer) picture once there is one
            docs_image.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, docs_image)

        # The App keeps the current view server-side, so open saved views explicitly (last).
        for _attempt in range(8):  # under load the saved view's grid can take several page loads
            view_dom = _chromium(f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", url + "?view=merged-by-policy")
            merged = set(re.findall(r'title="ground_truth: ([^"]+)"', view_dom.stdout))
            if merged:
                break
            time.sleep(3)
        assert merged and merged <= {"Contempt", "None", "Uncertain", "No-Face"}, merged
    finally:
        _stop(launcher, server_pids, port)
    assert not _listeners(port)


def _start_launcher(fo: Any, tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], int, Path, Path, set[int]]:  # noqa: F811
    """Start `curate review app` on an empty persistent dataset; return once the server answers:
    ``(launcher, port, launcher output, server log, server pids)``."""
    if not fo.dataset_exists(name):
        fo.Dataset(name, persistent=True)
    port = free_port()
    output, server_log = tmp_path / "launcher.out", tmp_path / "server.log"
    with output.open("wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "curate", "review", "app", "--name", name, "--port", str(port),
             "--log-file", str(server_log)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "300"}, cwd=tmp_path,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while "App server log:" not in output.read_text():
        assert launcher.poll() is None, output.read_text()
        assert time.monotonic() < deadline, "the App did not start within 120 s:\n" + output.read_text()
        time.sleep(0.5)
    server_pids = {pid for _, pids in _listeners(port) for pid in pids}
    assert server_pids, output.read_text()
    return launcher, port, output, server_log, server_pids


@pytest.mark.timeout(300)
def test_launcher_exits_with_an_error_when_the_server_dies(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    launcher, port, output, server_log, server_pids = _start_launcher(fo, tmp_path, "rv-app-dies")
    try:
        for pid in server_pids:
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        code = launcher.wait(timeout=30)
        assert time.monotonic() - killed < 10, "the launcher noticed the dead server too late"
        assert code == 1, output.read_text()
        last = output.read_text().strip().splitlines()[-1]
        assert "error: the FiftyOne App server" in last and f"127.0.0.1:{port} died" in last, output.read_text()
        assert f"Its log: {server_log}" in last and server_log.is_file()
        assert "Traceback" not in output.read_text()
    finally:
        _stop(launcher, server_pids, port)
    assert not _listeners(port)


@pytest.mark.timeout(300)
def test_ctrl_c_stops_the_server_within_seconds(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    launcher, port, output, _, server_pids = _start_launcher(fo, tmp_path, "rv-app-stop")
    try:
        launcher.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and (launcher.poll() is None or any(_alive(p) for p in server_pids)):
            time.sleep(0.2)
        assert launcher.poll() == 0, output.read_text()
        assert not any(_alive(p) for p in server_pids), "the App server outlived the launcher by over 5 s"
        assert not _listeners(port)
    finally:
        _stop(launcher, server_pids, port)
