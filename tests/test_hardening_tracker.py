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


# ----------------------------------------------------------------- item 13: history of resumed, copied, abandoned runs
@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
    """One experiment folder (one mlflow.db, whose creation takes seconds) for the run tests."""
    return tmp_path_factory.mktemp("runs")


def mlflow_trainer(exp_dir, epochs, *overrides):
    from tests.test_trainer import make_trainer, mlp_cfg
    return make_trainer(mlp_cfg(exp_dir, "logger.backend='mlflow'", "logger.experiment='history'",
                                "logger.flush_every=2", f"train.epochs={epochs}", *overrides))


def store(exp_dir):
    from mlflow import MlflowClient
    return MlflowClient(f"sqlite:///{exp_dir}/mlflow.db")


def logged_steps(exp_dir, run_id, key="train/loss"):
    return sorted(metric.step for metric in store(exp_dir).get_metric_history(run_id, key))


def stop_at_step(monkeypatch, step):
    """Make training raise KeyboardInterrupt once `step` steps are done (their metrics logged)."""
    from executors.trainer import Trainer
    train_step = Trainer._train_step

    def stopping(self, batch):
        if self.global_step == step:
            raise KeyboardInterrupt
        train_step(self, batch)
    monkeypatch.setattr(Trainer, "_train_step", stopping)


def test_a_resumed_run_logs_each_step_once_and_says_where_it_is_logged(exp_dir, monkeypatch, capsys):
    run_dir = exp_dir / "resumed"
    run_dir.mkdir()
    first = mlflow_trainer(exp_dir, 2)
    per_epoch = len(first.train_loader)
    stop_at_step(monkeypatch, per_epoch + 5)  # killed in epoch 2, after its first steps were logged
    with pytest.raises(KeyboardInterrupt):
        first.fit(run_dir)
    run_id, before = first.logger_run_id, logged_steps(exp_dir, first.logger_run_id)
    assert before == list(range(1, before[-1] + 1)) and before[-1] > per_epoch + 2  # steps past last.pt
    monkeypatch.undo()
    resumed = mlflow_trainer(exp_dir, 2)
    resumed.load_model(run_dir / "last.pt")  # epoch 1
    resumed.fit(run_dir)
    assert resumed.logger_run_id == run_id
    for key in ("train/loss", "train/accuracy", "train/lr"):
        assert logged_steps(exp_dir, run_id, key) == list(range(1, 2 * per_epoch + 1)), key
    assert logged_steps(exp_dir, run_id, "test/accuracy") == [1, 2]
    assert store(exp_dir).get_run(run_id).info.status == "FINISHED"
    view = f"to view: cd {exp_dir} && mlflow ui --backend-store-uri sqlite:///mlflow.db"
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Tracking:")]
    assert lines == [f"Tracking: MLflow run {run_id} in {exp_dir / 'mlflow.db'}; {view}"] * 2  # once per process


def test_a_copied_run_folder_gets_its_own_tracker_run_and_a_moved_one_keeps_it(exp_dir):
    import json
    import shutil
    original = exp_dir / "original"
    original.mkdir()
    first = mlflow_trainer(exp_dir, 1)
    first.fit(original)
    per_epoch = len(first.train_loader)
    shutil.copytree(original, exp_dir / "copy")
    copy = mlflow_trainer(exp_dir, 2)
    copy.load_model(exp_dir / "copy" / "last.pt")
    copied_from = f"belongs to the run folder {original}, of which {exp_dir / 'copy'} is a copy"
    with pytest.warns(UserWarning, match=copied_from):
        copy.fit(exp_dir / "copy")
    assert copy.logger_run_id != first.logger_run_id
    assert json.loads((exp_dir / "copy" / "tracker.json").read_text()) == {"backend": "mlflow",
                                                                          "run_id": copy.logger_run_id}
    assert logged_steps(exp_dir, first.logger_run_id) == list(range(1, per_epoch + 1))  # the original is untouched
    assert logged_steps(exp_dir, copy.logger_run_id) == list(range(per_epoch + 1, 2 * per_epoch + 1))
    assert store(exp_dir).get_run(copy.logger_run_id).data.tags["run_dir"] == str(exp_dir / "copy")

    original.rename(exp_dir / "moved")
    moved = mlflow_trainer(exp_dir, 2)
    moved.load_model(exp_dir / "moved" / "last.pt")
    moved.fit(exp_dir / "moved")
    assert moved.logger_run_id == first.logger_run_id
    assert logged_steps(exp_dir, first.logger_run_id) == list(range(1, 2 * per_epoch + 1))
    assert store(exp_dir).get_run(first.logger_run_id).data.tags["run_dir"] == str(exp_dir / "moved")


def test_a_run_killed_before_its_first_checkpoint_is_closed_and_its_folder_reused(exp_dir, monkeypatch):
    from executors.run_folders.run_dir import claim_run_dir
    monkeypatch.setattr(Logger, "__exit__", lambda *args: False)  # kill -9: the run is never ended
    stop_at_step(monkeypatch, 3)
    killed = mlflow_trainer(exp_dir, 1, "exp_name='abandoned'")
    with pytest.raises(KeyboardInterrupt):
        with claim_run_dir(exp_dir, "abandoned", killed.cfg.logger) as run_dir:
            killed.fit(run_dir)
    monkeypatch.undo()
    assert store(exp_dir).get_run(killed.logger_run_id).info.status == "RUNNING"
    assert sorted(path.name for path in run_dir.iterdir()) == [
        ".lock", "config.json", "confusion_matrix_start.png", "tracker.json"]

    restarted = mlflow_trainer(exp_dir, 1, "exp_name='abandoned'")
    with claim_run_dir(exp_dir, "abandoned", restarted.cfg.logger) as reused:
        assert reused == run_dir and sorted(path.name for path in run_dir.iterdir()) == [".lock"]
        assert store(exp_dir).get_run(killed.logger_run_id).info.status == "KILLED"
        with claim_run_dir(exp_dir, "abandoned", restarted.cfg.logger) as other:  # held: not reused
            assert other == exp_dir / "abandoned_1"
        restarted.fit(reused)
    assert store(exp_dir).get_run(restarted.logger_run_id).info.status == "FINISHED"
    assert restarted.logger_run_id != killed.logger_run_id
    (exp_dir / "abandoned_1" / "notes.txt").write_text("mine")  # a folder with anything else is never reused
    with claim_run_dir(exp_dir, "abandoned", restarted.cfg.logger) as third:
        assert third == exp_dir / "abandoned_2"
    assert (exp_dir / "abandoned_1" / "notes.txt").read_text() == "mine"


def test_every_backend_says_where_the_run_is_and_how_to_view_it(tmp_path):
    run_dir = make_run_dir(tmp_path / "exp", "tb")
    with Logger(logger_cfg(backend="tensorboard"), run_dir, "tb") as logger:
        assert logger.location == (f"Tracking: TensorBoard events in {run_dir / 'tensorboard'}; to view (every run "
                                   f"of the experiment): tensorboard --logdir {tmp_path / 'exp'}")
    with Logger(logger_cfg(backend="neptune"), run_dir, "offline") as logger:
        assert logger.location == (f"Tracking: neptune offline run in {run_dir / '.neptune'}; to upload it to a "
                                   f"server: neptune sync --path {run_dir} --project WORKSPACE/PROJECT")
    with Logger(logger_cfg(backend="none"), run_dir, "none") as logger:
        assert logger.location == "Tracking: logger.backend='none': nothing is logged besides the run folder"


# ----------------------------------------------------------------- item 1: links planted in a run folder
def test_figures_and_artifact_copies_replace_planted_links_instead_of_writing_through_them(tmp_path):
    import matplotlib.pyplot as plt
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("plot.txt", "summary.txt"):
        (outside / name).write_text("the user's own file\n")
    exp_dir = tmp_path / "exp"
    run_dir = make_run_dir(exp_dir)
    (run_dir / "confusion_matrix_end.png").symlink_to(outside / "plot.txt")
    (run_dir / "summary.json").write_text('{"epochs_completed": 1}')
    with Logger(logger_cfg(), run_dir, "run") as logger:
        artifacts = exp_dir / "mlartifacts" / "tracker" / logger.run_id / "artifacts"
        artifacts.mkdir(parents=True)
        (artifacts / "summary.json").symlink_to(outside / "summary.txt")
        fig, axes = plt.subplots(figsize=(1, 1))
        logger.save_plot(fig, "confusion_matrix_end.png")
        logger.log_file(run_dir / "summary.json")
    assert [(outside / name).read_text() for name in ("plot.txt", "summary.txt")] == ["the user's own file\n"] * 2
    png = run_dir / "confusion_matrix_end.png"
    assert not png.is_symlink() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    copied = artifacts / "summary.json"
    assert not copied.is_symlink() and copied.read_text() == '{"epochs_completed": 1}'
    assert (artifacts / "confusion_matrix_end.png").read_bytes() == png.read_bytes()
