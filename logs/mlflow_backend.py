"""MLflow backend through MlflowClient (no global active-run state).

Default store: `sqlite:///<exp_dir>/mlflow.db`, with the experiment's artifacts pinned to
`<exp_dir>/mlartifacts/` (MLflow would otherwise write them under the current directory's
`mlruns/`). View with `mlflow ui --backend-store-uri sqlite:///runs/mlflow.db`.
"""
import os
import time

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus

MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_PARAM_LENGTH = 6000


class MLflowBackend:
    def __init__(self, cfg, run_dir, run_name, resume_run_id):
        exp_dir = run_dir.parent.resolve()
        uri = cfg.tracking_uri or f"sqlite:///{exp_dir / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(cfg.experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = (exp_dir / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
            experiment_id = self.client.create_experiment(cfg.experiment, artifact_location=location)
        if resume_run_id:
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_params(self, params):
        """Params are immutable in MLflow: on resume, changed values are recorded as tags."""
        logged = self.client.get_run(self.run_id).data.params
        new, changed = [], []
        for key, value in params.items():
            text = str(value)[:MAX_PARAM_LENGTH]
            if key not in logged:
                new.append(Param(key, text))
            elif logged[key] != text:
                changed.append((f"resumed_with.{key}", text))
        for start in range(0, len(new), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=new[start:start + MAX_PARAMS_PER_BATCH])
        for key, text in changed:
            self.client.set_tag(self.run_id, key, text)

    def log_metrics(self, records):
        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for name, value, step in records]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])

    def log_artifact(self, path, artifact_dir):
        self.client.log_artifact(self.run_id, str(path), artifact_dir)

    def log_figure(self, path, name, figure):
        self.client.log_artifact(self.run_id, str(path), os.path.dirname(name) or None)

    def log_summary(self, summary):
        numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.log_metrics([(f"summary/{k}", float(v), 0) for k, v in numbers.items()])
        for key, value in summary.items():
            if key not in numbers:
                self.client.set_tag(self.run_id, f"summary.{key}", str(value))

    def close(self, status):
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.from_string(status)))
