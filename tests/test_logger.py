"""Each tracking backend writes a run that can be read back."""
import sys

import pytest
from easydict import EasyDict
from matplotlib import pyplot
from matplotlib.figure import Figure

from logs.Logger import Logger, flatten
from utils.errors import ConfigError


def logger_cfg(backend, **changes):
    cfg = EasyDict(backend=backend, experiment="tests", tracking_uri=None, neptune_project=None,
                   neptune_mode=None, flush_every=1000)
    cfg.update(changes)
    return cfg


def small_figure():
    figure = Figure()
    figure.add_subplot().plot([0, 1], [1, 0])
    return figure


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.joinpath("cwd").mkdir() or tmp_path / "cwd")
    path = tmp_path / "exp" / "run_a"
    path.mkdir(parents=True)
    return path


def test_flatten_drops_tokens():
    assert flatten({"train": {"lr": 0.1}, "logger": {"api_token": "secret", "backend": "neptune"}}) == {
        "train.lr": 0.1, "logger.backend": "neptune"}


def test_mlflow_run_reads_back_and_resumes(run_dir, tmp_path):
    from mlflow import MlflowClient

    logger = Logger(logger_cfg("mlflow"), run_dir, "run_a")
    logger.log_hyperparameters({"train": {"lr": 0.1, "layers": [1, 2]}, "neptune_api_token": "secret"})
    client = MlflowClient(f"sqlite:///{tmp_path / 'exp' / 'mlflow.db'}")
    for step in range(1, 11):
        logger.log_step_metrics({"train/loss": 1.0 / step}, step)
    assert client.get_metric_history(logger.run_id, "train/loss") == []  # still buffered
    logger.log_epoch_metrics({"test/accuracy": 0.5}, 1)
    logger.save_plot(small_figure(), "confusion_matrix_start.png")
    logger.close()
    run = client.get_run(logger.run_id)
    assert run.data.params == {"train.lr": "0.1", "train.layers": "[1, 2]"}
    assert run.info.run_name == "run_a" and run.info.status == "FINISHED"
    history = client.get_metric_history(logger.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / s) for s in range(1, 11)]
    assert [a.path for a in client.list_artifacts(logger.run_id)] == ["confusion_matrix_start.png"]
    assert (tmp_path / "exp" / "mlartifacts").is_dir() and list((tmp_path / "cwd").iterdir()) == []

    resumed = Logger(logger_cfg("mlflow"), run_dir, "run_a", resume_run_id=logger.run_id)
    resumed.log_hyperparameters({"train": {"lr": 0.2, "layers": [1, 2]}})
    resumed.log_epoch_metrics({"test/accuracy": 0.75}, 2)
    resumed.close()
    history = client.get_metric_history(logger.run_id, "test/accuracy")
    assert [(m.step, m.value) for m in history] == [(1, 0.5), (2, 0.75)]
    assert client.get_run(logger.run_id).data.tags["resumed_with.train.lr"] == "0.2"


def test_mlflow_failed_run_is_marked(run_dir, tmp_path):
    from mlflow import MlflowClient

    with pytest.raises(RuntimeError):
        with Logger(logger_cfg("mlflow"), run_dir, "run_a") as logger:
            raise RuntimeError("boom")
    assert MlflowClient(f"sqlite:///{tmp_path / 'exp' / 'mlflow.db'}").get_run(logger.run_id).info.status == "FAILED"


def test_neptune_debug_mode_reads_back(run_dir):
    logger = Logger(logger_cfg("neptune", neptune_mode="debug"), run_dir, "run_a")
    logger.log_hyperparameters({"train": {"lr": 0.1}, "api_token": "secret"})
    for step in range(1, 4):
        logger.log_step_metrics({"train/loss": float(step)}, step)
    logger.log_epoch_metrics({"test/accuracy": 0.5}, 1)
    run = logger.backend.run
    run.wait()
    assert list(run["train/loss"].fetch_values()["value"]) == [1.0, 2.0, 3.0]
    assert run["parameters"].fetch() == {"train.lr": 0.1}
    logger.close()


def test_neptune_offline_writes_under_the_run_directory(run_dir, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    with Logger(logger_cfg("neptune"), run_dir, "run_a") as logger:
        logger.log_epoch_metrics({"test/accuracy": 0.5}, 1)
    assert any((run_dir / ".neptune").rglob("*"))


def test_neptune_missing_package_is_a_config_error(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "neptune", None)
    with pytest.raises(ConfigError, match="requirements-neptune.txt"):
        Logger(logger_cfg("neptune"), run_dir, "run_a")


def test_tensorboard_reads_back(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with Logger(logger_cfg("tensorboard", flush_every=2), run_dir, "run_a") as logger:
        for step in range(1, 6):
            logger.log_step_metrics({"train/loss": float(step)}, step)
        logger.save_plot(small_figure(), "confusion_matrix_end.png")
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(s, float(s)) for s in range(1, 6)]
    assert events.Tags()["images"] == ["confusion_matrix_end"]


def test_none_backend_still_saves_figures_and_closes_them(run_dir):
    figure = pyplot.figure()
    with Logger(logger_cfg("none"), run_dir, "run_a") as logger:
        logger.save_plot(figure, "confusion_matrices/epoch_001.png")
    assert (run_dir / "confusion_matrices" / "epoch_001.png").read_bytes()[:4] == b"\x89PNG"
    assert not pyplot.fignum_exists(figure.number)


def test_unknown_backend():
    with pytest.raises(ConfigError, match="Did you mean: mlflow"):
        Logger(logger_cfg("mlfow"), None, "run")
