"""The store behind an MLflow tracking URI, checked before a run uses it.

`check_store` (no writes; called before a run directory is made) asks a tracking server for
one experiment with a timeout of SERVER_TIMEOUT seconds (MLflow's own client would retry
for about 4 minutes, silently), and checks an existing SQLite database.

A local store's SQLite database is created whole or not at all.

MLflow makes a new store by creating some 60 tables and running some 50 migrations (2-4 s).
Interrupted there (Ctrl-C, kill -9, a full disk), it leaves a half-migrated database that
every later open fails on with a long SQLAlchemy traceback. `open_sqlite_store` therefore
builds a new store in a temporary file beside the database (`.<name>.<random>.tmp`) and
renames it into place, holding the store lock (`store_lock`) with SIGINT/SIGTERM deferred
(utils.interrupts): the database is either absent or complete. Temporary databases are only
ever written under the store lock, so any found there belong to a creator that died and are
removed. An existing database is checked first (a SQLite file with every table of the
installed MLflow at its schema version); a broken one is a StorageError that says what is
wrong and gives the command that moves it aside. Nothing of the user's is ever deleted.
"""
import contextlib
import os
import secrets
import shlex
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow
from mlflow.store.db.base_sql_model import Base
from mlflow.store.db.utils import _get_latest_schema_revision
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from utils.errors import StorageError, storage_error
from utils.file_lock import exclusive_lock
from utils.interrupts import signals_deferred
from utils.urls import basic_auth_header, redact_url, split_credentials

SQLITE_PREFIX = "sqlite:///"
ARTIFACTS_FOLDER = "mlartifacts"  # mlflow ui's default --artifacts-destination, relative to where it starts
DEFAULT_ARTIFACT_ROOT = "mlflow-artifacts:/"  # experiment "Default" keeps its files in mlartifacts/0, not ./mlruns
TEMP_SUFFIX = ".tmp"
SERVER_TIMEOUT = 5  # seconds a tracking server has to answer before a run starts
HTTP_SCHEMES = ("http", "https")


def check_store(tracking_uri: str) -> None:
    """StorageError when the store of `tracking_uri` cannot take a run: a tracking server that
    does not answer (or refuses), an existing SQLite database that is broken. Writes nothing."""
    database = sqlite_database(tracking_uri)
    if database is not None and database.is_file() and database.stat().st_size > 0:
        check_database(database)
    if urllib.parse.urlsplit(tracking_uri).scheme in HTTP_SCHEMES:
        problem = server_problem(tracking_uri)
        if problem:
            raise StorageError(f"cannot use the MLflow tracking server logger.tracking_uri={redact_url(tracking_uri)}: "
                               f"{problem}. Start the server (mlflow server --host HOST --port PORT), fix "
                               f"logger.tracking_uri (unset, runs go to a local store in exp_dir), or turn "
                               f"tracking off with logger.backend=none.")


def server_problem(tracking_uri: str, timeout: float = SERVER_TIMEOUT):
    """Why the tracking server at `tracking_uri` cannot take runs (one clause), or None. Sends
    GET <uri>/api/2.0/mlflow/experiments/search?max_results=1 with the credentials MLflow would
    use (user:password@ in the URI, MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN)."""
    plain, user, password = split_credentials(tracking_uri)
    parts = urllib.parse.urlsplit(plain)
    url = urllib.parse.urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                                                 query="max_results=1", fragment=""))
    user = user or os.environ.get("MLFLOW_TRACKING_USERNAME")
    headers = {}
    if user:
        headers["Authorization"] = basic_auth_header(user, password or os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"]
    try:
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            return f"it refused the credentials (HTTP {error.code} {error.reason})"
        return f"it answered HTTP {error.code} {error.reason} to {url}: is it an MLflow tracking server?"
    except (OSError, ValueError) as error:  # refused, unknown host, timeout, bad URL
        reason = getattr(error, "reason", None) or error
        if isinstance(reason, TimeoutError):
            return f"it did not answer within {timeout:g} s"
        return f"it cannot be reached ({reason})"
    return None


def sqlite_database(tracking_uri: str):
    """The database file of a `sqlite:///` tracking URI, else None."""
    return Path(tracking_uri[len(SQLITE_PREFIX):]) if tracking_uri.startswith(SQLITE_PREFIX) else None


def sqlite_failure(error: BaseException):
    """The sqlite3 error behind an MLflow or SQLAlchemy exception (disk full, read-only
    database, ...), or None when the failure has another cause."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sqlite3.Error):
            return error
        error = getattr(error, "orig", None) or error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def store_lock(tracking_uri: str):
    """For a SQLite store, hold `mlartifacts/.<database name>.lock` beside it (utils.file_lock)
    during the block: two processes opening a new store at once would both create it. Other
    stores serialise on their server."""
    database = sqlite_database(tracking_uri)
    if database is None:
        yield
        return
    held = contextlib.ExitStack()
    try:
        folder = database.parent / ARTIFACTS_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        held.enter_context(exclusive_lock(folder / f".{database.name}.lock"))
    except OSError as error:
        raise storage_error(error, "lock the MLflow store", database) from None
    with held:
        yield


def open_sqlite_store(tracking_uri: str) -> None:
    """Make sure the SQLite store of `tracking_uri` exists and is whole: create a missing (or
    empty, 0-byte) database atomically, raise StorageError for a broken one. Call it holding
    store_lock(tracking_uri). Does nothing for other stores."""
    database = sqlite_database(tracking_uri)
    if database is None:
        return
    if database.is_file() and database.stat().st_size > 0:
        check_database(database)
        return
    with signals_deferred():
        _create(database)


def check_database(database: Path) -> None:
    """StorageError (what is wrong, what to do) unless the installed MLflow can use `database`."""
    problem = schema_problem(database)
    if problem:
        raise StorageError(broken_store_message(database, problem))


def schema_problem(database: Path):
    """What keeps the installed MLflow from using `database` (one clause), or None."""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = (connection.execute("SELECT version_num FROM alembic_version").fetchone()
                   if "alembic_version" in tables else None)
    except sqlite3.DatabaseError as error:
        return f"it is not a readable SQLite database ({error})"
    missing = sorted(set(Base.metadata.tables) - tables)
    version, head = row[0] if row else None, _get_latest_schema_revision()
    if version == head and not missing:
        return None
    found = f"schema version {version}" if version else "no schema version"
    lacking = f", {len(missing)} of its {len(Base.metadata.tables)} tables missing" if missing else ""
    return f"it has {found}{lacking}; MLflow {mlflow.__version__} needs schema version {head}"


def broken_store_message(database: Path, problem: str) -> str:
    """One paragraph: which store, what is wrong, and what to do (nothing is deleted)."""
    aside = shlex.quote(f"{database}.broken")
    return (f"the MLflow store {database} cannot be used: {problem}. Either its creation was interrupted "
            f"(then it holds no runs) or another MLflow version made it. Nothing was changed. Move it aside, "
            f"and the next run creates a new store: `mv {shlex.quote(str(database))} {aside}`; or, if it holds "
            f"runs you need, back it up and upgrade it with the MLflow version you run: "
            f"`mlflow db upgrade {shlex.quote(SQLITE_PREFIX + database.as_posix())}`.")


def _create(database: Path) -> None:
    """Build the store in a temporary database beside `database`, then rename it into place.
    An error removes the temporary; an OS or SQLite error becomes a StorageError."""
    for stale in database.parent.glob(f".{database.name}.*{TEMP_SUFFIX}*"):  # of creators that died
        stale.unlink(missing_ok=True)
    temporary = database.parent / f".{database.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}"
    uri = SQLITE_PREFIX + temporary.as_posix()
    try:
        try:
            SqlAlchemyStore(uri, DEFAULT_ARTIFACT_ROOT)  # creates the tables and migrates them
        finally:
            engine = SqlAlchemyStore._engine_map.pop(uri, None)  # MLflow caches one engine per URI
            if engine is not None:
                engine.dispose()
        _fsync(temporary)
        os.replace(temporary, database)
        _fsync(database.parent)
    except BaseException as error:
        for leftover in database.parent.glob(f"{temporary.name}*"):  # the database and its -journal
            leftover.unlink(missing_ok=True)
        failure = error if isinstance(error, OSError) else sqlite_failure(error)
        if isinstance(failure, OSError):
            raise storage_error(failure, "create the MLflow store", database) from None
        if failure is not None:
            advice = " Free some space, or set exp_dir to a disk with room." if "full" in str(failure) else ""
            raise StorageError(f"cannot create the MLflow store {database}: {failure}.{advice}") from None
        raise


def _fsync(path: Path) -> None:
    """Flush a file or folder to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
