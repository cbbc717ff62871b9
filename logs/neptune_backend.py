"""Neptune backend, kept for the original course API (`pip install -r requirements-neptune.txt`).

The hosted neptune.ai service shut down on 2026-03-05, so by default a run is written in
`offline` mode to `<run_dir>/.neptune/` (write-only; `neptune sync` can upload it to a
server that accepts it). `async` is used when `logger.neptune_project` and an API token
are both given; `debug` keeps the run in memory, where it can be read back.

The token comes from the environment variable NEPTUNE_API_TOKEN or a `NEPTUNE_API_TOKEN=...`
line in a `.env` file in the working directory or the repository root. It is passed to
neptune only, and the Logger keeps it out of the logged parameters.

Fields: parameters/<dotted key> (the same names as MLflow params), <metric name> (series,
e.g. train/loss), images/<name without .png>, files/<artifact_path>/<file stem>,
summary/<key>. Offline and debug runs cannot be reopened (the client finds no run by id
there), so `run_id` is the server's id (e.g. "KMNIST-42") in async/sync mode, else None.
"""
import os
import shlex
import warnings
from collections import defaultdict
from pathlib import Path

from utils.errors import ConfigError
from utils.validation import NEPTUNE_MODES as MODES

TOKEN_VARIABLE = "NEPTUNE_API_TOKEN"
REPO_ROOT = Path(__file__).resolve().parents[1]
CONNECTED_MODES = ("async", "sync")


def read_env_file(path: Path) -> dict:
    """KEY=VALUE lines of a .env file (blank lines, `#` comments and `export ` allowed); {} if absent."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip().removeprefix("export ").strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("'\"")
    return values


def api_token():
    """NEPTUNE_API_TOKEN from the environment, else from ./.env, else from <repo>/.env; or None."""
    if os.environ.get(TOKEN_VARIABLE):
        return os.environ[TOKEN_VARIABLE]
    for folder in (Path.cwd(), REPO_ROOT):
        token = read_env_file(folder / ".env").get(TOKEN_VARIABLE)
        if token:
            return token
    return None


def import_neptune():
    """The neptune package, or a ConfigError that says how to install it."""
    try:
        import neptune
    except ImportError:
        raise ConfigError("logger.backend='neptune' needs the neptune client: "
                          "pip install -r requirements-neptune.txt (or choose logger.backend='mlflow').") from None
    return neptune


def choose_mode(cfg, token) -> str:
    """cfg.neptune_mode, or async with a project and a token, else offline."""
    project = cfg.get("neptune_project")
    mode = cfg.get("neptune_mode") or ("async" if project and token else "offline")
    if mode not in MODES:
        raise ConfigError(f"logger.neptune_mode={mode!r} is not a neptune mode: use one of {', '.join(MODES)}.")
    if mode in CONNECTED_MODES and not (project and token):
        raise ConfigError(f"logger.neptune_mode={mode!r} needs logger.neptune_project and {TOKEN_VARIABLE} "
                          f"(environment or .env); hosted neptune.ai is closed, so use 'offline' or 'debug' "
                          f"without a server.")
    return mode


class NeptuneBackend:
    """One neptune run; see the module docstring for modes and field names."""

    logged_steps = {}  # not read back from neptune

    def __init__(self, cfg, run_dir: Path, run_name: str, resume_run_id=None):
        neptune = import_neptune()
        from neptune.types import File
        self.File = File
        token = api_token()
        mode = choose_mode(cfg, token)
        connected = mode in CONNECTED_MODES
        if resume_run_id and not connected:
            warnings.warn(f"neptune {mode} mode cannot reopen run {resume_run_id}; logging to a new run.")
        previous = os.environ.get("NEPTUNE_DATA_DIRECTORY")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = str(Path(run_dir) / ".neptune")  # read once, when the run opens
        try:
            self.run = neptune.init_run(project=cfg.get("neptune_project") if connected else None,
                                        api_token=token if connected else None, mode=mode, name=run_name,
                                        with_id=resume_run_id if connected else None)
        finally:
            if previous is None:
                del os.environ["NEPTUNE_DATA_DIRECTORY"]
            else:
                os.environ["NEPTUNE_DATA_DIRECTORY"] = previous
        self.run_id = self.run["sys/id"].fetch() if connected else None
        self.mode, self.project, self.run_dir = mode, cfg.get("neptune_project"), Path(run_dir).resolve()

    def location(self) -> str:
        if self.mode == "offline":
            return (f"neptune offline run in {self.run_dir / '.neptune'}; to upload it to a server: "
                    f"neptune sync --path {shlex.quote(str(self.run_dir))} --project WORKSPACE/PROJECT")
        if self.mode == "debug":
            return "neptune debug mode: the run is kept in memory only, nothing is saved"
        return f"neptune run {self.run_id} in project {self.project}"

    def log_params(self, params: dict) -> None:
        self.run["parameters"] = params

    def log_metrics(self, records: list) -> None:
        """One `extend` per metric name: a single queued operation for the whole batch."""
        series = defaultdict(list)
        for name, value, step, seconds in records:
            series[name].append((value, step, seconds))
        for name, points in series.items():
            values, steps, timestamps = (list(column) for column in zip(*points))
            self.run[name].extend(values, steps=steps, timestamps=timestamps)

    def log_image(self, fig, path: Path, name: str) -> None:
        self.run[f"images/{Path(name).with_suffix('').as_posix()}"].upload(
            self.File.from_content(path.read_bytes(), extension="png"))

    def log_file(self, path: Path, artifact_path) -> None:
        field = "/".join(part for part in ("files", artifact_path, path.stem) if part)
        self.run[field].upload(self.File.from_content(path.read_bytes(), extension=path.suffix.lstrip(".")))

    def log_summary(self, summary: dict) -> None:
        self.run["summary"] = summary

    def close(self, status: str) -> None:
        if status != "FINISHED":
            self.run["sys/failed"] = True
        self.run.stop()
