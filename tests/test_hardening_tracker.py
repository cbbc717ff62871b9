"""Experiment tracking under faults (issue 20): the MLflow store is created whole or not at all
and a broken one is one message; an unreachable tracking server is one message within
seconds; the tracker history of resumed, copied and abandoned runs; where a run was logged."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import mlflow.store.db.utils as mlflow_db_utils
import pytest
from easydict import EasyDict

from logs.Logger import Logger, check_logger_config
from logs.mlflow_store import schema_problem
from utils import interrupts
from utils.cli import run
from utils.config import load_config
from utils.errors import Interrupted, StorageError

REPO = Path(__file__).resolve().parents[1]


def logger_cfg(**overrides):
    return EasyDict({"backend": "mlflow", "experiment": "tracker", "tracking_uri": None,
                     "neptune_project": None, "neptune_mode": None, "flush_every": 200, **overrides})


def store_files(exp_dir: Path) -> list:
    """The names beside the database: mlflow.db and any temporary database."""
    return sorted(path.name for path in exp_dir.iterdir() if "mlflow.db" in path.name)


def make_run_dir(exp_dir: Path, name="run") -> Path:
    run_dir = exp_dir / name
    run_dir.mkdir(parents=True)
    return run_dir


def assert_a_later_run_works(exp_dir: Path) -> None:
    with Logger(logger_cfg(), make_run_dir(exp_dir, "later"), "later") as logger:
        logger.log_epoch_metrics({"test/accuracy": 0.5}, 1)
    assert schema_problem(exp_dir / "mlflow.db") is None
    assert store_files(exp_dir) == ["mlflow.db"]


# ----------------------------------------------------------------- item 4: store creation
def test_ctrl_c_while_the_store_is_created_ends_with_a_complete_store(tmp_path, monkeypatch):
    """SIGINT halfway through MLflow's migrations (the tables made, none migrated) is raised
    once the store is complete and in place."""
    upgrade = mlflow_db_utils._upgrade_db

    def interrupted_upgrade(engine):
        os.kill(os.getpid(), signal.SIGINT)
        upgrade(engine)
    monkeypatch.setattr(mlflow_db_utils, "_upgrade_db", interrupted_upgrade)
    previous = signal.signal(signal.SIGINT, interrupts.stop_on_signal)
    try:
        with pytest.raises(Interrupted):
            Logger(logger_cfg(), make_run_dir(tmp_path), "run")
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(mlflow_db_utils, "_upgrade_db", upgrade)
    assert store_files(tmp_path) == ["mlflow.db"] and schema_problem(tmp_path / "mlflow.db") is None
    assert_a_later_run_works(tmp_path)


def test_kill_9_while_the_store_is_created_leaves_no_store(tmp_path):
    """A process killed while it builds the store leaves only its temporary database, which the
    next run removes."""
    code = ("import sys; from pathlib import Path; from easydict import EasyDict; from logs.Logger import Logger; "
            "Logger(EasyDict(backend='mlflow', experiment='tracker'), Path(sys.argv[1]), 'run')")
    make_run_dir(tmp_path)
    creator = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".mlflow.db.*.tmp")) and time.monotonic() < deadline:
            assert creator.poll() is None, "the store was created before it could be killed"
            time.sleep(0.01)
        time.sleep(0.5)  # halfway through creating the tables
    finally:
        creator.kill()
        creator.wait()
    assert not (tmp_path / "mlflow.db").exists() and len(list(tmp_path.glob(".mlflow.db.*.tmp"))) == 1
    assert_a_later_run_works(tmp_path)


def test_a_full_disk_while_the_store_is_created_leaves_no_store(tmp_path, monkeypatch):
    def full_disk(engine):
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(mlflow_db_utils, "_upgrade_db", full_disk)
    with pytest.raises(StorageError) as error:
        Logger(logger_cfg(), make_run_dir(tmp_path), "run")
    assert str(error.value) == (f"cannot create the MLflow store {tmp_path / 'mlflow.db'}: database or disk is "
                                f"full. Free some space, or set exp_dir to a disk with room.")
    assert store_files(tmp_path) == []


def half_made_store(path: Path) -> bytes:
    """A SQLite file with two of MLflow's tables and no schema version: what an interrupted
    creation by an earlier version left. Returns its bytes."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("CREATE TABLE runs (run_uuid TEXT PRIMARY KEY)")
    connection.close()
    return path.read_bytes()


def train_cfg(exp_dir: Path, *overrides):
    return load_config("mlp", ["device='cpu'", f"exp_dir='{exp_dir}'", "train.epochs=1",
                               f"data.root='{exp_dir / 'no-data'}'", "data.download=False", *overrides])


def train_status(cfg, capsys) -> tuple:
    """(exit status, stderr) of train.py's main on `cfg`, run in this process."""
    from executors.launch import train_experiment
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exit_:
            run(lambda: train_experiment(cfg))
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    return exit_.value.code, capsys.readouterr().err


def test_a_broken_store_is_one_message_and_exit_2_before_any_run_folder(tmp_path, capsys):
    database = tmp_path / "mlflow.db"
    before = half_made_store(database)
    status, stderr = train_status(train_cfg(tmp_path), capsys)
    assert status == 2 and "Traceback" not in stderr
    head = mlflow_db_utils._get_latest_schema_revision()
    assert stderr == (
        f"error: the MLflow store {database} cannot be used: it has no schema version, "
        f"{len(mlflow_db_utils.Base.metadata.tables) - 2} of its {len(mlflow_db_utils.Base.metadata.tables)} "
        f"tables missing; MLflow {mlflow.__version__} needs schema version {head}. Either its "
        f"creation was interrupted (then it holds no runs) or another MLflow version made it. Nothing was "
        f"changed. Move it aside, and the next run creates a new store: `mv {database} {database}.broken`; or, "
        f"if it holds runs you need, back it up and upgrade it with the MLflow version you run: "
        f"`mlflow db upgrade sqlite:///{database}`.\n")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["mlflow.db"] and database.read_bytes() == before


def test_a_file_that_is_not_a_database_is_named_and_kept(tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_text("my notes\n" * 200)
    with pytest.raises(StorageError, match=r"it is not a readable SQLite database \(file is not a database\)"):
        Logger(logger_cfg(), make_run_dir(tmp_path), "run")
    assert database.read_text() == "my notes\n" * 200


# ----------------------------------------------------------------- item 5: unreachable server
def closed_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_tracking_server_is_one_message_within_seconds(tmp_path, capsys):
    uri = f"http://alice:pa55word@127.0.0.1:{closed_port()}"
    started = time.monotonic()
    status, stderr = train_status(train_cfg(tmp_path / "runs", f"logger.tracking_uri='{uri}'"), capsys)
    assert time.monotonic() - started < 10
    assert status == 2 and "Traceback" not in stderr and "pa55word" not in stderr
    assert stderr == (f"error: cannot use the MLflow tracking server logger.tracking_uri="
                      f"{uri.replace('pa55word', '<hidden>')}: it cannot be reached ([Errno 111] Connection "
                      f"refused). Start the server (mlflow server --host HOST --port PORT), fix logger.tracking_uri "
                      f"(unset, runs go to a local store in exp_dir), or turn tracking off with logger.backend=none.\n")
    assert not (tmp_path / "runs").exists()


def test_a_server_that_refuses_the_credentials_or_is_not_mlflow_is_named(tmp_path):
    import http.server
    import threading
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(401 if self.headers.get("Authorization") else 404)
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(StorageError, match=r"it refused the credentials \(HTTP 401 Unauthorized\)"):
            check_logger_config(logger_cfg(tracking_uri=f"http://bob:s%40cret@{base}/mlflow"))
        with pytest.raises(StorageError, match=rf"it answered HTTP 404 Not Found to http://{base}/mlflow/api/2.0/"
                                               rf"mlflow/experiments/search\?max_results=1: is it an MLflow"):
            check_logger_config(logger_cfg(tracking_uri=f"http://{base}/mlflow/"))
    finally:
        server.shutdown()
    assert seen == [("/mlflow/api/2.0/mlflow/experiments/search?max_results=1", "Basic Ym9iOnNAY3JldA=="),
                    ("/mlflow/api/2.0/mlflow/experiments/search?max_results=1", None)]
