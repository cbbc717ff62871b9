"""Logger: each backend writes a run that is read back from its store, offline."""
import json
import sys

import matplotlib.pyplot as plt
import pytest
from easydict import EasyDict
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from logs.Logger import Logger, NullBackend, flatten, without_secrets
from logs.mlflow_backend import artifact_location, local_artifact_dir
from logs.neptune_backend import api_token, choose_mode
from utils.errors import ConfigError

TOKEN = "nep-secret-0123456789"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HYPERPARAMETERS = {
    "exp_name": "mlp_base",
    "train": {"lr": 0.1, "epochs": 3, "amp": None},
    "data": {"transforms": {"train": [("ToTensor", {})]}, "md5": {}},
    "logger": {"backend": "mlflow", "neptune_api_token": TOKEN},
    "note": f"key={TOKEN}",
}
LOGGED_PARAMETERS = {"exp_name": "mlp_base", "train.lr": 0.1, "train.epochs": 3, "train.amp": "None",
                     "data.transforms.train": "[('ToTensor', {})]", "data.md5": "{}", "logger.backend": "mlflow"}
SUMMARY = {"final_test_accuracy": 0.75, "epochs_completed": 3, "device": "cpu", "train_images_per_second": None}


def logger_cfg(**overrides):
    return EasyDict({"backend": "mlflow", "experiment": "KMNIST-MLP", "tracking_uri": None,
                     "neptune_project": None, "neptune_mode": None, "flush_every": 200, **overrides})


def figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    return fig


def write_run(logger, run_dir):
    """The calls a Trainer makes: 3 steps (loss 0.5, 0.25, 0.125), 1 epoch, a plot, a file, the summary."""
    logger.log_hyperparameters(HYPERPARAMETERS)
    for step in (1, 2, 3):
        logger.log_step_metrics({"train/loss": 2.0 ** -step, "train/lr": 0.1 * step}, step)
    logger.log_epoch_metrics({"test/accuracy": 0.75}, 1)
    fig = figure()
    logger.save_plot(fig, "confusion_matrices/epoch_001.png")
    assert not plt.fignum_exists(fig.number)
    (run_dir / "summary.json").write_text(json.dumps(SUMMARY))
    logger.log_file(run_dir / "summary.json")
    logger.log_summary(SUMMARY)


@pytest.fixture(autouse=True)
def neptune_token(monkeypatch):
    """Every test runs with a Neptune token in the environment, which must never be logged."""
    monkeypatch.setenv("NEPTUNE_API_TOKEN", TOKEN)


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
    """One experiment directory (one mlflow.db, whose creation takes seconds) for the module."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture
def run_dir(exp_dir, request):
    path = exp_dir / request.node.name
    path.mkdir()
    return path


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty working directory: no backend may write into it."""
    path = tmp_path / "cwd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def store(exp_dir):
    return MlflowClient(f"sqlite:///{exp_dir}/mlflow.db")


def history(store, run_id, key):
    return sorted((metric.step, metric.value) for metric in store.get_metric_history(run_id, key))


# ----------------------------------------------------------------- shared behaviour
def test_flatten_makes_dotted_keys_and_strings_of_non_scalars():
    assert flatten({"a": {"b": {"c": 1}}, "l": [1, 2], "e": {}, "n": None, "f": False}) == {
        "a.b.c": 1, "l": "[1, 2]", "e": "{}", "n": "None", "f": False}


def test_secrets_are_dropped_by_key_and_by_token_value():
    assert without_secrets({"logger.api_token": "x", "db.password": "y", "note": f"is {TOKEN}", "lr": 0.1}) == {
        "lr": 0.1}


def test_unknown_backend_and_bad_flush_every_are_config_errors(run_dir):
    with pytest.raises(ConfigError, match="mlflow, neptune, tensorboard, none"):
        Logger(logger_cfg(backend="wandb"), run_dir, "run")
    with pytest.raises(ConfigError, match="Did you mean: mlflow"):
        Logger(logger_cfg(backend="mlfow"), run_dir, "run")
    with pytest.raises(ConfigError, match="flush_every"):
        Logger(logger_cfg(backend="none", flush_every=0), run_dir, "run")


def test_save_plot_writes_png_and_closes_figure_even_when_logging_fails(run_dir, monkeypatch):
    logger = Logger(logger_cfg(backend="none"), run_dir, "run")
    fig = figure()
    logger.save_plot(fig, "plots/start.png")
    assert not plt.fignum_exists(fig.number)
    assert (run_dir / "plots" / "start.png").read_bytes()[:8] == PNG_MAGIC

    def fail(*args):
        raise OSError("store unreachable")
    monkeypatch.setattr(NullBackend, "log_image", fail)
    fig = figure()
    with pytest.raises(OSError):
        logger.save_plot(fig, "end.png")
    assert not plt.fignum_exists(fig.number)
    assert logger.run_id is None


# ----------------------------------------------------------------- MLflow
def test_mlflow_run_reads_back_with_artifacts_beside_the_database(run_dir, cwd, store, exp_dir):
    with Logger(logger_cfg(), run_dir, "mlp_base") as logger:
        write_run(logger, run_dir)
    run = store.get_run(logger.run_id)
    assert run.info.run_name == "mlp_base" and run.info.status == "FINISHED"
    assert store.get_experiment(run.info.experiment_id).name == "KMNIST-MLP"
    assert run.data.params == {key: str(value) for key, value in LOGGED_PARAMETERS.items()}
    assert history(store, logger.run_id, "train/loss") == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assert history(store, logger.run_id, "train/lr") == [(1, 0.1), (2, 0.2), (3, pytest.approx(0.3))]
    assert history(store, logger.run_id, "test/accuracy") == [(1, 0.75)]
    assert not any(key.startswith("final/") for key in run.data.metrics)  # the summary draws no charts
    assert run.data.tags["final/final_test_accuracy"] == "0.75" and run.data.tags["final/epochs_completed"] == "3"
    assert run.data.tags["final/device"] == "cpu" and "final/train_images_per_second" not in run.data.tags
    experiment = store.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # MLflow 3's training view

    assert run.info.artifact_uri == f"mlflow-artifacts:/KMNIST-MLP/{logger.run_id}/artifacts"  # relative
    artifacts = exp_dir / "mlartifacts" / "KMNIST-MLP" / logger.run_id / "artifacts"
    assert sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*")) == [
        "confusion_matrices", "confusion_matrices/epoch_001.png", "summary.json"]
    assert (artifacts / "confusion_matrices" / "epoch_001.png").read_bytes() == (
        run_dir / "confusion_matrices" / "epoch_001.png").read_bytes()
    assert json.loads((artifacts / "summary.json").read_text()) == SUMMARY
    assert list(cwd.iterdir()) == []


def test_mlflow_step_metrics_wait_for_an_epoch_log(run_dir, store):
    logger = Logger(logger_cfg(flush_every=1000), run_dir, "buffered")
    for step in range(10):
        logger.log_step_metrics({"train/loss": step / 8}, step)
    assert store.get_metric_history(logger.run_id, "train/loss") == []
    logger.log_epoch_metrics({"test/loss": 0.5}, 1)
    assert history(store, logger.run_id, "train/loss") == [(step, step / 8) for step in range(10)]
    logger.close()


def test_mlflow_flushes_every_n_steps_in_batches_of_at_most_1000(run_dir, store, monkeypatch):
    batch_sizes = []
    log_batch = MlflowClient.log_batch

    def counting_log_batch(self, run_id, metrics=(), **kwargs):
        batch_sizes.append(len(metrics))
        return log_batch(self, run_id, metrics=metrics, **kwargs)
    monkeypatch.setattr(MlflowClient, "log_batch", counting_log_batch)
    logger = Logger(logger_cfg(flush_every=4), run_dir, "batched")
    names = [f"train/m{i:03d}" for i in range(300)]
    for step in range(10):
        logger.log_step_metrics({name: step for name in names}, step)
    assert batch_sizes == [1000, 200, 1000, 200]
    assert [step for step, _ in history(store, logger.run_id, "train/m299")] == list(range(8))
    logger.close()
    assert batch_sizes[4:] == [600]
    assert history(store, logger.run_id, "train/m000") == [(step, step) for step in range(10)]


@pytest.mark.parametrize("error, status", [(ValueError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_mlflow_run_status_follows_how_the_with_block_ends(run_dir, store, error, status):
    with pytest.raises(error):
        with Logger(logger_cfg(), run_dir, "status") as logger:
            logger.log_step_metrics({"train/loss": 1.5}, 7)
            raise error("stopped")
    assert store.get_run(logger.run_id).info.status == status
    assert history(store, logger.run_id, "train/loss") == [(7, 1.5)]
    logger.close("FINISHED")  # already closed: no effect
    assert store.get_run(logger.run_id).info.status == status


def test_mlflow_resume_continues_the_same_run(run_dir, store):
    cfg = logger_cfg(experiment="resume")
    first = Logger(cfg, run_dir, "resumed")
    first.log_hyperparameters({"train": {"epochs": 2, "lr": 0.1}})
    for step in (1, 2):
        first.log_step_metrics({"train/loss": float(step)}, step)
    first.close("KILLED")
    second = Logger(cfg, run_dir, "resumed", resume_run_id=first.run_id)
    assert store.get_run(first.run_id).info.status == "RUNNING"
    with pytest.warns(UserWarning, match="changed.train.epochs"):
        second.log_hyperparameters({"train": {"epochs": 4, "lr": 0.1}})
    for step in (3, 4):
        second.log_step_metrics({"train/loss": float(step)}, step)
    second.close()
    assert second.run_id == first.run_id
    run = store.get_run(first.run_id)
    assert history(store, run.info.run_id, "train/loss") == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)]
    assert run.data.params == {"train.epochs": "2", "train.lr": "0.1"}
    assert run.data.tags["changed.train.epochs"] == "4" and run.info.status == "FINISHED"
    assert len(store.search_runs([run.info.experiment_id])) == 1


def test_mlflow_resume_of_an_unknown_run_starts_a_new_one(run_dir, store):
    with pytest.warns(UserWarning, match="not in this tracking store"):
        logger = Logger(logger_cfg(), run_dir, "fresh", resume_run_id="0" * 32)
    assert logger.run_id != "0" * 32 and store.get_run(logger.run_id).info.run_name == "fresh"
    logger.close()


def test_mlflow_artifacts_sit_beside_a_sqlite_database_only(tmp_path):
    location = artifact_location(f"sqlite:///{tmp_path}/db/mlflow.db", "Oxford IIIT/Pet")
    assert location == "mlflow-artifacts:/Oxford_IIIT_Pet"
    assert local_artifact_dir(f"sqlite:///{tmp_path}/db/mlflow.db", "mlflow-artifacts:/KMNIST/abc/artifacts") == (
        tmp_path / "db" / "mlartifacts" / "KMNIST" / "abc" / "artifacts")
    assert local_artifact_dir(f"sqlite:///{tmp_path}/mlflow.db", "file:///old/mlartifacts/abc/artifacts") is None
    assert artifact_location("http://127.0.0.1:5000", "KMNIST") is None


# ----------------------------------------------------------------- Neptune
def test_neptune_debug_run_reads_back(run_dir, cwd):
    logger = Logger(logger_cfg(backend="neptune", neptune_mode="debug"), run_dir, "neptune-debug")
    write_run(logger, run_dir)
    run = logger._backend.run
    assert run["sys/name"].fetch() == "neptune-debug"
    assert run["parameters"].fetch() == LOGGED_PARAMETERS
    # debug mode keeps values and their order; it reports steps as 0, 1, 2 whatever was logged
    assert run["train/loss"].fetch_values()["value"].tolist() == [0.5, 0.25, 0.125]
    assert run["test/accuracy"].fetch_values()["value"].tolist() == [0.75]
    assert run["summary"].fetch() == {"final_test_accuracy": 0.75, "epochs_completed": 3, "device": "cpu"}
    run["images/confusion_matrices/epoch_001"].download(str(cwd / "image.png"))
    assert (cwd / "image.png").read_bytes() == (run_dir / "confusion_matrices" / "epoch_001.png").read_bytes()
    assert run["files/summary"].fetch_extension() == "json"
    logger.close()
    assert logger.run_id is None


def test_neptune_offline_run_is_written_under_the_run_directory(run_dir, cwd):
    with pytest.raises(RuntimeError):
        with Logger(logger_cfg(backend="neptune"), run_dir, "neptune-offline") as logger:
            write_run(logger, run_dir)
            raise RuntimeError("training failed")
    logs = list((run_dir / ".neptune" / "offline").glob("run__*/data-1.log"))
    assert len(logs) == 1 and list(cwd.iterdir()) == []
    operations = [json.loads(line)["obj"] for line in logs[0].read_text().splitlines()]
    loss = [(point["step"], point["value"]) for op in operations
            if op["type"] == "LogFloats" and op["path"] == ["train", "loss"] for point in op["values"]]
    assert loss == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assigned = {"/".join(op["path"]): op["value"] for op in operations if op["type"].startswith("Assign")}
    assert assigned["sys/name"] == "neptune-offline" and assigned["sys/failed"] is True
    assert assigned["parameters/train.lr"] == 0.1 and assigned["summary/device"] == "cpu"
    assert TOKEN not in logs[0].read_text()


def test_neptune_missing_package_says_how_to_install(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "neptune", None)
    with pytest.raises(ConfigError, match="pip install -r requirements-neptune.txt"):
        Logger(logger_cfg(backend="neptune"), run_dir, "run")


def test_neptune_token_from_dotenv_and_mode_choice(cwd, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    (cwd / ".env").write_text("# neptune\nexport NEPTUNE_API_TOKEN='from-dotenv-42'\nOTHER=1\n")
    assert api_token() == "from-dotenv-42"
    assert without_secrets({"note": "from-dotenv-42", "lr": 1}) == {"lr": 1}
    assert choose_mode(logger_cfg(), "tok") == "offline"
    assert choose_mode(logger_cfg(neptune_project="ws/kmnist"), "tok") == "async"
    assert choose_mode(logger_cfg(neptune_project="ws/kmnist"), None) == "offline"
    with pytest.raises(ConfigError, match="NEPTUNE_API_TOKEN"):
        choose_mode(logger_cfg(neptune_mode="async"), None)
    with pytest.raises(ConfigError, match="offline, debug, async, sync"):
        choose_mode(logger_cfg(neptune_mode="online"), "tok")


# ----------------------------------------------------------------- TensorBoard
def test_tensorboard_run_reads_back(run_dir, cwd):
    with Logger(logger_cfg(backend="tensorboard"), run_dir, "tb") as logger:
        write_run(logger, run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assert [(e.step, e.value) for e in events.Scalars("test/accuracy")] == [(1, 0.75)]
    assert not any(tag.startswith("final/") for tag in events.Tags()["scalars"])  # no single-point charts
    summary = events.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| final_test_accuracy | 0.75 |" in summary
    assert events.Tags()["images"] == ["confusion_matrices/epoch_001"]
    text = events.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| train.lr | 0.1 |" in text and "| logger.backend | mlflow |" in text and TOKEN not in text
    status = events.Tensors("status/text_summary")[0].tensor_proto.string_val[0].decode()
    assert status == "FINISHED" and list(cwd.iterdir()) == []


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_moved_runs_folder_shows_its_artifacts_in_mlflow_ui(tmp_path):
    """Artifact URIs are relative (mlflow-artifacts:/...): `mlflow ui` started in the runs folder
    serves them wherever the folder now is (downloaded from Kaggle, copied to a laptop)."""
    import shutil
    import subprocess
    import time
    import urllib.request
    run_dir = tmp_path / "kaggle" / "runs" / "mlp_base"
    run_dir.mkdir(parents=True)
    with Logger(logger_cfg(), run_dir, "mlp_base") as logger:
        write_run(logger, run_dir)
    moved = tmp_path / "laptop" / "runs"
    shutil.move(str(tmp_path / "kaggle" / "runs"), str(moved))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", "sqlite:///mlflow.db",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=moved,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                listing = json.loads(urllib.request.urlopen(
                    f"{base}/ajax-api/2.0/mlflow/artifacts/list?run_id={logger.run_id}", timeout=5).read())
                break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("mlflow ui did not answer")
        assert sorted(entry["path"] for entry in listing["files"]) == ["confusion_matrices", "summary.json"]
        served = urllib.request.urlopen(f"{base}/get-artifact?path=summary.json&run_uuid={logger.run_id}", timeout=10)
        assert json.loads(served.read()) == SUMMARY
    finally:
        server.terminate()
        server.wait(timeout=30)
