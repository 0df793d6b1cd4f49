"""curate.review.db: configuration before connecting, and clear errors when no MongoDB is reachable.

The end-to-end case runs in a fresh interpreter: a process connects to one database only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from review_fixtures import fo, free_port  # noqa: F401

from curate.review import db

pytestmark = pytest.mark.timeout(120)


def test_unreachable_database_uri_is_explained() -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}"
    with pytest.raises(db.ReviewDatabaseError) as error:
        db.probe_uri(uri, timeout_s=0.3)
    assert f"no MongoDB reachable at FIFTYONE_DATABASE_URI={uri}" in str(error.value)
    assert "`make setup` installs FiftyOne's bundled MongoDB" in str(error.value)


def test_missing_mongod_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(db, "mongod_path", lambda: tmp_path / "bin" / "mongod")
    with pytest.raises(
        db.ReviewDatabaseError, match=r"bundled mongod is not installed \(expected .*bin/mongod\).*make setup"
    ):
        db.check_mongod()
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "mongod").write_text("")
    with pytest.raises(db.ReviewDatabaseError, match="is not executable"):
        db.check_mongod()


def test_session_database_is_private(fo: Any, tmp_path_factory: pytest.TempPathFactory) -> None:  # noqa: F811
    assert Path(fo.config.database_dir).is_relative_to(tmp_path_factory.getbasetemp())
    assert os.environ["FIFTYONE_DATABASE_DIR"] == fo.config.database_dir
    assert fo.config.do_not_track and not fo.config.database_validation
    assert "no MongoDB" not in db.database_description()


def test_cli_reports_no_database_in_one_line(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    environment |= {"FIFTYONE_DATABASE_URI": f"mongodb://127.0.0.1:{free_port()}", "COLUMNS": "400"}
    completed = subprocess.run(
        [sys.executable, "-m", "curate", "review", "list"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=100,
        cwd=tmp_path,
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    assert "error: no MongoDB reachable" in completed.stderr and "make setup" in completed.stderr


def test_other_database_folders_are_not_shared(fo: Any, tmp_path: Path) -> None:  # noqa: F811
    """FiftyOne attaches to any running mongod of the user; a second folder must get its own."""
    fo.Dataset("rv-session-only", persistent=True)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FIFTYONE_")}
    environment["FIFTYONE_DATABASE_DIR"] = str(tmp_path / "other-db")
    code = (
        "from curate.review import db\n"
        "fo = db.connect()\n"
        "print(sorted(fo.list_datasets()))\n"
        "fo.Dataset('rv-other-only', persistent=True)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=100, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"
    assert "rv-other-only" not in fo.list_datasets() and "rv-session-only" in fo.list_datasets()
    assert (tmp_path / "other-db" / "log" / "mongo.log").is_file()


def test_same_folder_attaches_to_its_running_database(fo: Any, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A second process on the same folder registers with the running mongod and uses its port."""
    port = os.environ["FIFTYONE_PRIVATE_DATABASE_PORT"]
    monkeypatch.delenv("FIFTYONE_PRIVATE_DATABASE_PORT")
    started = []
    monkeypatch.setattr(db, "_own_service", None)
    from fiftyone.core import service as fos

    monkeypatch.setattr(fos.Service, "start", lambda self: started.append(self))
    db._use_own_database(fo.config.database_dir)
    assert os.environ["FIFTYONE_PRIVATE_DATABASE_PORT"] == port and not started
