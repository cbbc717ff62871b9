"""MLflow backend (the default): a local SQLite store next to the runs, or any tracking URI.

Without `tracking_uri` the store is `sqlite:///<exp_dir>/mlflow.db` (exp_dir: the parent
of the run directory). For a SQLite store the artifacts live beside the database in
`mlartifacts/<experiment>/<run id>/artifacts/`, and experiments record them by the relative
URI `mlflow-artifacts:/<experiment>`, which `mlflow ui` resolves against its
`--artifacts-destination` (default `./mlartifacts`): started in exp_dir,

    cd <exp_dir> && mlflow ui --backend-store-uri sqlite:///mlflow.db

it shows every run's files, also after the folder was moved or downloaded to another
machine. Experiments are tagged `mlflow.experimentKind=custom_model_development`, so MLflow 3
opens them in its model-training view rather than the GenAI one.

Everything goes through `MlflowClient` (no global active run), so several runs can be
open in one process. Metrics are written with `log_batch`, at most 1000 per call.
The final summary becomes tags `final/<key>` (it is also the run's summary.json artifact):
single-point metrics would add a chart each.
"""
import logging
import re
import shlex
import urllib.parse
import warnings
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import (MAX_ENTITY_KEY_LENGTH, MAX_METRICS_PER_BATCH, MAX_PARAM_VAL_LENGTH,
                                     MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH)

from logs.mlflow_store import (ARTIFACTS_FOLDER, HTTP_SCHEMES, SQLITE_PREFIX, open_sqlite_store, sqlite_database,
                               sqlite_failure, store_lock)
from utils.atomic_files import copy_file_atomic
from utils.errors import StorageError, storage_error
from utils.urls import redact_url

ARTIFACTS_SCHEME = "mlflow-artifacts:/"
RUN_DIR_TAG = "run_dir"  # the absolute path of the run's folder
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # MLflow 3's model-training view


def tracking_uri_of(cfg, exp_dir: Path) -> str:
    """cfg.tracking_uri, else the default store sqlite:///<absolute exp_dir>/mlflow.db."""
    return cfg.get("tracking_uri") or SQLITE_PREFIX + (Path(exp_dir).resolve() / "mlflow.db").as_posix()


def artifact_location(tracking_uri: str, experiment: str):
    """`mlflow-artifacts:/<experiment as a folder name>` for a SQLite store (see the module
    docstring); None (the tracking server's choice) for other stores."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return ARTIFACTS_SCHEME + re.sub(r"[^\w.-]", "_", experiment)


def local_artifact_dir(tracking_uri: str, artifact_uri: str):
    """The folder beside a SQLite database that holds the files of a run whose artifact URI is
    `mlflow-artifacts:/...`; None for other stores or URIs (MLflow copies those itself)."""
    if not (tracking_uri.startswith(SQLITE_PREFIX) and artifact_uri.startswith(ARTIFACTS_SCHEME)):
        return None
    return Path(tracking_uri[len(SQLITE_PREFIX):]).parent / ARTIFACTS_FOLDER / artifact_uri[len(ARTIFACTS_SCHEME):]


# MLflow logs each failing SQL statement with its traceback before raising; StoreClient reports it once.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


class StoreClient:
    """An MlflowClient whose calls report a failing store as StorageError naming it: a SQLite
    database that cannot be written (disk full, read-only) or artifacts that cannot be copied."""

    def __init__(self, tracking_uri: str):
        self._client, self._uri = MlflowClient(tracking_uri), redact_url(tracking_uri)  # _uri: for messages

    def __getattr__(self, name):
        method = getattr(self._client, name)

        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except OSError as error:
                raise storage_error(error, "write the MLflow artifacts at", error.filename or self._uri) from None
            except Exception as error:
                failure = sqlite_failure(error)
                if failure is None:
                    raise
                advice = "Free some space." if "full" in str(failure) else "Check the store's disk and permissions."
                raise StorageError(f"cannot write the MLflow store {self._uri}: {failure}. {advice}") from None
        return call


def mlflow_key(key: str) -> str:
    """A name MLflow accepts: characters outside [word . / - space :] become "_", at most 250 long."""
    return re.sub(r"[^\w./\- :]", "_", key)[:MAX_ENTITY_KEY_LENGTH]


def chunks(items: list, size: int) -> list:
    """Consecutive slices of at most `size` items."""
    return [items[start:start + size] for start in range(0, len(items), size)]


def end_abandoned_run(tracking_uri: str, run_id: str) -> None:
    """End run `run_id` KILLED if the store still holds it RUNNING: its process died before its
    first checkpoint (see logs.Logger.close_abandoned_run). Creates no store."""
    database = sqlite_database(tracking_uri)
    if database is not None and not (database.is_file() and database.stat().st_size > 0):
        return
    client = StoreClient(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return
    if run.info.status == "RUNNING":
        client.set_terminated(run_id, "KILLED")


class MlflowBackend:
    """One MLflow run: created, or reopened when `resume_run_id` names a run in the store that
    belongs to this run folder. Every run is tagged RUN_DIR_TAG = the absolute path of its
    folder: a copied folder, resumed, gets a run of its own (the original still exists), a
    moved one keeps its run (its tag is updated)."""

    def __init__(self, cfg, run_dir: Path, run_name: str, resume_run_id=None):
        self.tracking_uri = tracking_uri_of(cfg, Path(run_dir).resolve().parent)
        self.run_dir, self.logged_steps = str(Path(run_dir).resolve()), {}
        with store_lock(self.tracking_uri):  # the first process creates the database alone
            open_sqlite_store(self.tracking_uri)
            self.client = StoreClient(self.tracking_uri)
            self.run_id = self._reopen(resume_run_id) if resume_run_id else None
            if self.run_id is None:
                name = cfg.get("experiment") or "Default"
                experiment_id = self._experiment_id(name, artifact_location(self.tracking_uri, name))
                self.run_id = self.client.create_run(experiment_id, run_name=run_name,
                                                     tags={RUN_DIR_TAG: self.run_dir}).info.run_id
            info = self.client.get_run(self.run_id).info
            self.experiment_id, self.artifact_dir = info.experiment_id, local_artifact_dir(self.tracking_uri,
                                                                                           info.artifact_uri)

    def _experiment_id(self, name: str, location) -> str:
        """Id of experiment `name`, creating it (artifacts at `location`) or restoring it if
        deleted; tagged as a model-training experiment (EXPERIMENT_KIND) either way."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            return self.client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        for key, value in EXPERIMENT_KIND.items():
            if experiment.tags.get(key) != value:
                self.client.set_experiment_tag(experiment.experiment_id, key, value)
        return experiment.experiment_id

    def _reopen(self, run_id: str):
        """Mark run `run_id` RUNNING again, note the last step of each of its metrics in
        self.logged_steps, and return its id; None (with a warning) if the store lacks the run
        or it belongs to another run folder that still exists (this one is a copy of it)."""
        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            run = None
        if run is None or run.info.lifecycle_stage == "deleted":
            warnings.warn(f"MLflow run {run_id} is not in this tracking store; logging to a new run.")
            return None
        owner = run.data.tags.get(RUN_DIR_TAG)
        if owner not in (None, self.run_dir) and Path(owner).is_dir():
            warnings.warn(f"MLflow run {run_id} belongs to the run folder {owner}, of which {self.run_dir} is a "
                          f"copy; logging to a new run, from this resume on.")
            return None
        self.client.update_run(run_id, status="RUNNING")
        if owner != self.run_dir:  # the folder was moved (or logged before runs were tagged)
            self.client.set_tag(run_id, RUN_DIR_TAG, self.run_dir)
        self.logged_steps = {key: max(metric.step for metric in self.client.get_metric_history(run_id, key))
                             for key in run.data.metrics}
        return run_id

    def location(self) -> str:
        """Where the run is logged and the command that shows it."""
        database = sqlite_database(self.tracking_uri)
        if database is not None:  # mlflow ui resolves the artifacts against ./mlartifacts: start it beside the database
            return (f"MLflow run {self.run_id} in {database}; to view: cd {shlex.quote(str(database.parent))} && "
                    f"mlflow ui --backend-store-uri {shlex.quote(SQLITE_PREFIX + database.name)}")
        uri = redact_url(self.tracking_uri)
        if urllib.parse.urlsplit(uri).scheme in HTTP_SCHEMES:
            return f"MLflow run {self.run_id}: {uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"MLflow run {self.run_id} in {uri}; to view: mlflow ui --backend-store-uri {shlex.quote(uri)}"

    def log_params(self, params: dict) -> None:
        """Log new parameters. MLflow never changes a logged parameter, so a value that differs
        from the one already logged (e.g. a setting changed on resume) becomes tag `changed.<key>`."""
        logged = self.client.get_run(self.run_id).data.params
        values = {mlflow_key(key): str(value)[:MAX_PARAM_VAL_LENGTH] for key, value in params.items()}
        new = [Param(key, value) for key, value in values.items() if key not in logged]
        changed = [RunTag(f"changed.{key}", value[:MAX_TAG_VAL_LENGTH])
                   for key, value in values.items() if key in logged and logged[key] != value]
        if changed:
            warnings.warn(f"MLflow parameters keep their first value; new values logged as tags: "
                          f"{', '.join(tag.key for tag in changed)}")
        for part in chunks(new, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=part)
        for part in chunks(changed, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=part)

    def log_metrics(self, records: list) -> None:
        metrics = [Metric(name, value, int(seconds * 1000), step) for name, value, step, seconds in records]
        for part in chunks(metrics, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=part)

    def log_image(self, fig, path: Path, name: str) -> None:
        folder = Path(name).parent.as_posix()
        self.log_file(path, None if folder == "." else folder)

    def log_file(self, path: Path, artifact_path) -> None:
        """Copy the file into the run's artifacts: beside a SQLite store by hand (MLflow's client
        cannot write mlflow-artifacts:/ URIs without a server), elsewhere through MLflow."""
        if self.artifact_dir is None:
            self.client.log_artifact(self.run_id, str(path), artifact_path)
            return
        folder = self.artifact_dir / artifact_path if artifact_path else self.artifact_dir
        # temporary file + rename: a link planted at the copy's path is replaced, never written through,
        # and a link among the folders below the store's is refused (utils.atomic_files)
        copy_file_atomic(path, folder / path.name, inside=sqlite_database(self.tracking_uri).parent)

    def log_summary(self, summary: dict) -> None:
        """The summary as tags final/<key> (no charts)."""
        tags = [RunTag(mlflow_key(f"final/{key}"), str(value)[:MAX_TAG_VAL_LENGTH]) for key, value in summary.items()]
        for part in chunks(tags, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=part)

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)
