"""Experiment tracking: one interface, several backends (MLflow, Neptune, TensorBoard, none).

The Trainer talks only to `Logger`. Per-step metrics are buffered and written in batches
(one MLflow `log_metric` on SQLite costs 6-8 ms, `log_batch` writes 1,000 values in
0.1-0.2 s); per-epoch metrics, figures and files are written at once. Figures are also
saved under the run directory, then closed. Secrets (keys containing "token") are never logged.
"""
import difflib

from matplotlib import pyplot

from utils.errors import ConfigError

BACKENDS = ("mlflow", "neptune", "tensorboard", "none")


def flatten(params, prefix=""):
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; keys naming a token are dropped."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if "token" in str(key).lower():
            continue
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


class NoTracking:
    """The `none` backend: nothing is sent anywhere (figures still land in the run directory)."""

    run_id = None

    def log_params(self, params):
        pass

    def log_metrics(self, records):
        pass

    def log_artifact(self, path, artifact_dir):
        pass

    def log_figure(self, path, name, figure):
        pass

    def log_summary(self, summary):
        pass

    def close(self, status):
        pass


def make_backend(cfg, run_dir, run_name, resume_run_id):
    """The backend object named by cfg.backend (imported lazily: each is an optional dependency)."""
    if cfg.backend == "mlflow":
        from logs.mlflow_backend import MLflowBackend
        return MLflowBackend(cfg, run_dir, run_name, resume_run_id)
    if cfg.backend == "neptune":
        from logs.neptune_backend import NeptuneBackend
        return NeptuneBackend(cfg, run_dir, run_name, resume_run_id)
    if cfg.backend == "tensorboard":
        from logs.tensorboard_backend import TensorBoardBackend
        return TensorBoardBackend(run_dir)
    if cfg.backend == "none":
        return NoTracking()
    close = difflib.get_close_matches(str(cfg.backend), BACKENDS, n=1)
    hint = f" Did you mean: {close[0]}?" if close else ""
    raise ConfigError(f"Unknown logger.backend '{cfg.backend}'; choose one of {', '.join(BACKENDS)}.{hint}")


class Logger:
    """Tracks one run. Use as a context manager: an exception marks the run FAILED,
    Ctrl-C marks it KILLED.

    Args:
        cfg: the `logger` config section (backend, experiment, tracking_uri, neptune_project,
            neptune_mode, flush_every).
        run_dir: pathlib.Path of the run directory (exists).
        run_name: the run's human-readable name.
        resume_run_id: `run_id` of an earlier Logger of this run, to continue the same tracked run.
    """

    def __init__(self, cfg, run_dir, run_name, resume_run_id=None):
        self.run_dir = run_dir
        self.flush_every = max(1, int(cfg.flush_every))
        self.backend = make_backend(cfg, run_dir, run_name, resume_run_id)
        self._buffer, self._buffered_steps, self._closed = [], 0, False

    @property
    def run_id(self):
        """Backend's id of the tracked run (None for `none` and TensorBoard)."""
        return self.backend.run_id

    def log_hyperparameters(self, params: dict) -> None:
        """Log a nested dict of parameters under dotted names ("train.lr")."""
        self.backend.log_params(flatten(params))

    def log_step_metrics(self, metrics: dict, step: int) -> None:
        """Buffer per-step metrics {name: float}; written every `flush_every` steps."""
        self._buffer.extend((name, float(value), step) for name, value in metrics.items())
        self._buffered_steps += 1
        if self._buffered_steps >= self.flush_every:
            self.flush()

    def log_epoch_metrics(self, metrics: dict, epoch: int) -> None:
        """Write per-epoch metrics {name: float} now (after the buffered step metrics)."""
        self.flush()
        self.backend.log_metrics([(name, float(value), epoch) for name, value in metrics.items()])

    def flush(self) -> None:
        """Write the buffered step metrics."""
        if self._buffer:
            self.backend.log_metrics(self._buffer)
        self._buffer, self._buffered_steps = [], 0

    def save_plot(self, figure, name: str) -> None:
        """Save `figure` as run_dir/name (a .png path such as "confusion_matrix_end.png"),
        log it as an image, then close it."""
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            figure.savefig(path, dpi=100)
            self.backend.log_figure(path, name, figure)
        finally:
            pyplot.close(figure)

    def log_file(self, path, artifact_dir=None) -> None:
        """Log an existing file (config.json, summary.json, ...)."""
        self.backend.log_artifact(path, artifact_dir)

    def log_summary(self, summary: dict) -> None:
        """Log the run's final summary (numbers as metrics or fields, the rest as text)."""
        self.backend.log_summary(flatten(summary))

    def close(self, status: str = "FINISHED") -> None:
        """Flush and end the tracked run with `status` (FINISHED | FAILED | KILLED); idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self.flush()
            finally:
                self.backend.close(status)

    def __enter__(self):
        return self

    def __exit__(self, error_type, error, traceback):
        if error_type is None:
            self.close("FINISHED")
        else:
            self.close("KILLED" if issubclass(error_type, KeyboardInterrupt) else "FAILED")
        return False
