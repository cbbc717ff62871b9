"""Logger: one interface for experiment tracking, several backends.

    with Logger(cfg.logger, run_dir, run_name, resume_run_id) as logger:
        logger.log_hyperparameters(config_dict)
        logger.log_step_metrics({"train/loss": 0.3}, step)     # buffered
        logger.log_epoch_metrics({"test/accuracy": 0.9}, epoch)  # written at once
        logger.save_plot(figure, "confusion_matrix_end.png")
        logger.log_summary(summary)

`cfg.backend` picks the store: "mlflow" (default; logs/mlflow_backend.py), "neptune"
(logs/neptune_backend.py), "tensorboard" (logs/tensorboard_backend.py) or "none".

The Logger does what every backend shares: flattening hyperparameters to dotted keys and
dropping secrets from them, buffering per-step metrics (written every `cfg.flush_every`
steps in one batch: one MLflow `log_metric` on SQLite costs 6-8 ms, `log_batch` writes
1000 values in about 0.1 s), saving figures as png files under the run directory,
ending the run exactly once with FINISHED, FAILED or KILLED, and logging each (metric,
step) once: a resumed run repeats the steps it had logged after its checkpoint before it was
stopped (identical values: resuming is exact), and those the store already holds are skipped.
A backend is an object with the methods of `NullBackend` below and its attributes `run_id`
and `logged_steps`.

A run folder records its tracker run in TRACKER_FILE (written by the Trainer once the Logger
is open), so that a folder abandoned before its first checkpoint can be reused with its
tracker run closed (close_abandoned_run).
"""
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt

from logs.neptune_backend import api_token
from utils.atomic_files import save_figure_atomic
from utils.config import is_secret_key, redact, to_plain
from utils.errors import ConfigError, did_you_mean
from utils.validation import BACKENDS

TRACKER_FILE = "tracker.json"  # {"backend": "mlflow", "run_id": "..."}
STATUSES = ("FINISHED", "FAILED", "KILLED")


class NullBackend:
    """Backend "none": logs nothing. Its methods define what every backend implements."""

    run_id = None
    logged_steps = {}  # {metric name: the last step the store holds}, for a reopened run

    def location(self) -> str:
        """Where the run is logged and the command that shows it (one line)."""
        return "logger.backend='none': nothing is logged besides the run folder"

    def log_params(self, params: dict) -> None:
        """params: flat {"train.lr": 0.1, ...}; values are str, int, float or bool."""

    def log_metrics(self, records: list) -> None:
        """records: [(name, value, step, unix_time_seconds), ...] in the order logged."""

    def log_image(self, fig, path: Path, name: str) -> None:
        """fig: the open Figure, already saved as png at `path`; name: e.g. "cm/epoch_001.png"."""

    def log_file(self, path: Path, artifact_path) -> None:
        """Copy the file at `path` into the run, under the folder `artifact_path` (None: top level)."""

    def log_summary(self, summary: dict) -> None:
        """summary: flat {"final_test_accuracy": 0.93, "device": "cpu", ...}, None values removed."""

    def close(self, status: str) -> None:
        """End the run with status FINISHED, FAILED or KILLED."""


def check_logger_config(cfg, exp_dir=None) -> None:
    """Raise ConfigError for a logger section that could not open a run (an unknown backend, a
    flush_every below 1, a backend whose package is missing, a neptune mode without what it
    needs), and StorageError for an MLflow store that could not take it (a tracking server
    that does not answer within seconds, a broken SQLite database: logs/mlflow_store.py; the
    default store is <exp_dir>/mlflow.db when exp_dir is given), before any run directory is
    made. Creates nothing."""
    name = cfg.get("backend", "mlflow")
    if name not in BACKENDS:
        raise ConfigError(f"logger.backend={name!r} is not a logger backend: use one of {', '.join(BACKENDS)}."
                          + did_you_mean(name, BACKENDS))
    flush_every = cfg.get("flush_every", 200)
    if not isinstance(flush_every, int) or isinstance(flush_every, bool) or flush_every < 1:
        raise ConfigError(f"logger.flush_every={flush_every!r} must be a whole number of steps >= 1.")
    if name == "neptune":
        from logs.neptune_backend import choose_mode, import_neptune
        import_neptune()
        choose_mode(cfg, api_token())
    if name == "tensorboard":
        from logs.tensorboard_backend import import_summary_writer
        import_summary_writer()
    if name == "mlflow" and (cfg.get("tracking_uri") or exp_dir is not None):
        from logs.mlflow_backend import tracking_uri_of
        from logs.mlflow_store import check_store
        check_store(tracking_uri_of(cfg, exp_dir))


def open_backend(cfg, run_dir: Path, run_name: str, resume_run_id):
    """The backend named by cfg.backend (checked by check_logger_config); its package is
    imported only when chosen."""
    check_logger_config(cfg)
    name = cfg.get("backend", "mlflow")
    if name == "mlflow":
        from logs.mlflow_backend import MlflowBackend
        return MlflowBackend(cfg, run_dir, run_name, resume_run_id)
    if name == "neptune":
        from logs.neptune_backend import NeptuneBackend
        return NeptuneBackend(cfg, run_dir, run_name, resume_run_id)
    if name == "tensorboard":
        from logs.tensorboard_backend import TensorBoardBackend
        return TensorBoardBackend(run_dir)
    return NullBackend()


def close_abandoned_run(cfg, run_dir) -> None:
    """End KILLED the tracker run recorded in run_dir/TRACKER_FILE if the store still holds it
    RUNNING (its process was killed before the first checkpoint), in the store that `cfg` (the
    logger section) names. Only MLflow runs can be ended after the fact; a failure is a warning."""
    try:
        record = json.loads((Path(run_dir) / TRACKER_FILE).read_text())
    except (OSError, ValueError):
        return
    if record.get("backend") != "mlflow" or cfg.get("backend", "mlflow") != "mlflow":
        return
    from logs.mlflow_backend import end_abandoned_run, tracking_uri_of
    try:
        end_abandoned_run(tracking_uri_of(cfg, Path(run_dir).resolve().parent), record["run_id"])
    except Exception as error:  # the new run goes on; the old one stays RUNNING in the store
        print(f"warning: could not mark the abandoned tracker run {record.get('run_id')} KILLED: "
              f"{(str(error) or type(error).__name__).splitlines()[0]}", file=sys.stderr)


def flatten(params: Mapping, prefix: str = "") -> dict:
    """Nested mapping -> {"a.b.c": value}; lists, None and other objects become strings."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (str, int, float, bool)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def without_secrets(flat: dict) -> dict:
    """Drop entries whose key names a secret (utils.config.is_secret_key) or whose value contains
    the Neptune API token; passwords in URLs are masked."""
    token = api_token()
    return {key: redact(value) for key, value in flat.items()
            if not is_secret_key(key) and not (token and token in str(value))}


def public_config(cfg) -> dict:
    """The config as plain values with every secret hidden (utils.config.redact, the Neptune
    token included): what config.json and the checkpoints hold."""
    return redact(to_plain(cfg), [api_token()])


class Logger:
    """Tracks one training run; see the module docstring. Also a context manager:
    an exception ends the run FAILED, Ctrl-C (KeyboardInterrupt) ends it KILLED."""

    def __init__(self, cfg, run_dir, run_name: str, resume_run_id=None):
        """cfg: the `logger` config section; run_dir: this run's existing directory;
        resume_run_id: a previous Logger's `run_id`, to continue that tracked run."""
        self.run_dir = Path(run_dir)
        self.flush_every = cfg.get("flush_every", 200)
        self.backend_name = cfg.get("backend", "mlflow")
        self._backend = open_backend(cfg, self.run_dir, run_name, resume_run_id)
        self._buffer, self._buffered_steps, self._closed = [], 0, False

    @property
    def location(self) -> str:
        """'Tracking: <where the run is logged; the command that shows it>' (one line)."""
        return f"Tracking: {self._backend.location()}"

    @property
    def tracker_record(self) -> dict:
        """What TRACKER_FILE holds for this run: {"backend", "run_id"}."""
        return {"backend": self.backend_name, "run_id": self.run_id}

    @property
    def run_id(self):
        """The backend's id of this run (pass it as resume_run_id to continue the run), or None."""
        return self._backend.run_id

    def log_hyperparameters(self, params: Mapping) -> None:
        """Log a nested dict as flat dotted parameters ("train.lr"), secrets left out."""
        self._backend.log_params(without_secrets(flatten(params)))

    def log_step_metrics(self, metrics: Mapping, step: int) -> None:
        """Buffer one training step's metrics; written every `flush_every` steps and on close."""
        now = time.time()
        self._buffer += [(name, float(value), step, now) for name, value in metrics.items()]
        self._buffered_steps += 1
        if self._buffered_steps >= self.flush_every:
            self.flush()

    def log_epoch_metrics(self, metrics: Mapping, epoch: int) -> None:
        """Write one epoch's metrics now, at step `epoch`, after the buffered step metrics."""
        self.flush()
        now = time.time()
        self._log([(name, float(value), epoch, now) for name, value in metrics.items()])

    def flush(self) -> None:
        """Write the buffered step metrics in one batch."""
        self._log(self._buffer)
        self._buffer, self._buffered_steps = [], 0

    def _log(self, records: list) -> None:
        """Write the records (name, value, step, time) whose step is past the last one the store
        holds for that name (see the module docstring)."""
        logged = self._backend.logged_steps
        new = [record for record in records if record[0] not in logged or record[2] > logged[record[0]]]
        if new:
            self._backend.log_metrics(new)

    def save_plot(self, fig, name: str) -> None:
        """Save `fig` as run_dir/<name> (png, written atomically: utils.atomic_files), log it as
        an image named `name`, and close it."""
        path = self.run_dir / name
        try:  # a link planted at `path` is replaced, one among run_dir's folders refused (utils.atomic_files)
            save_figure_atomic(fig, path, inside=self.run_dir, bbox_inches="tight")
            self._backend.log_image(fig, path, name)
        finally:
            plt.close(fig)

    def log_file(self, path, artifact_path: str = None) -> None:
        """Attach an existing file (config.json, summary.json, ...) to the run."""
        self._backend.log_file(Path(path), artifact_path)

    def log_summary(self, summary: Mapping) -> None:
        """Log the final results, None values left out (MLflow: `final/<key>` metrics and tags)."""
        present = {key: value for key, value in summary.items() if value is not None}
        self._backend.log_summary(without_secrets(flatten(present)))

    def close(self, status: str = "FINISHED") -> None:
        """Flush and end the run with `status`; later calls do nothing."""
        if status not in STATUSES:
            raise ValueError(f"status={status!r}: use one of {STATUSES}")
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
        finally:
            self._backend.close(status)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close("FINISHED")
            return False
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.close(status)
        except Exception as error:  # e.g. the store is on the disk that is full: report the first error
            print(f"warning: the tracker run could not be marked {status}: "
                  f"{(str(error) or type(error).__name__).splitlines()[0]}", file=sys.stderr)
        return False
