"""Neptune backend, with the original `run[...]` API of the assignment.

The hosted neptune.ai service shut down on 2026-03-05. Without a project and a token the
run is written in `offline` mode under `<run_dir>/.neptune/` (write-only: nothing can read
it back now); `debug` keeps everything in memory (tests); `async`/`sync` reach a server
given by `neptune_project` and NEPTUNE_API_TOKEN. The token comes from the environment or
a `.env` file in the current directory or the repository root, and is never logged.
"""
import os
from pathlib import Path

from utils.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def read_token():
    """NEPTUNE_API_TOKEN from the environment, else from a KEY=VALUE line of a .env file."""
    if os.environ.get("NEPTUNE_API_TOKEN"):
        return os.environ["NEPTUNE_API_TOKEN"]
    for env_file in (Path.cwd() / ".env", REPO_ROOT / ".env"):
        if env_file.is_file():
            for line in env_file.read_text().splitlines():
                key, sep, value = line.strip().partition("=")
                if sep and key.strip() == "NEPTUNE_API_TOKEN":
                    return value.strip().strip("'\"")
    return None


class NeptuneBackend:
    def __init__(self, cfg, run_dir, run_name, resume_run_id):
        try:
            import neptune
            from neptune.types import File
        except ImportError:
            raise ConfigError("logger.backend='neptune' needs the neptune client: "
                              "pip install -r requirements-neptune.txt (or choose logger.backend=mlflow).") from None
        self.File = File
        token = read_token()
        mode = cfg.neptune_mode or ("async" if cfg.neptune_project and token else "offline")
        previous = os.environ.get("NEPTUNE_DATA_DIRECTORY")
        os.environ["NEPTUNE_DATA_DIRECTORY"] = str(run_dir / ".neptune")
        try:
            self.run = neptune.init_run(project=cfg.neptune_project, api_token=token, mode=mode, name=run_name,
                                        with_id=resume_run_id if mode in ("async", "sync") else None,
                                        capture_hardware_metrics=False)
        finally:
            if previous is None:
                os.environ.pop("NEPTUNE_DATA_DIRECTORY")
            else:
                os.environ["NEPTUNE_DATA_DIRECTORY"] = previous
        self.run_id = self.run["sys/id"].fetch() if mode in ("async", "sync") else None

    def log_params(self, params):
        self.run["parameters"] = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                                  for key, value in params.items()}

    def log_metrics(self, records):
        for name, value, step in records:
            self.run[name].append(value, step=step)

    def log_artifact(self, path, artifact_dir):
        self.run[f"files/{artifact_dir + '/' if artifact_dir else ''}{Path(path).name}"].upload(str(path))

    def log_figure(self, path, name, figure):
        self.run[f"plots/{name.rsplit('.', 1)[0]}"].upload(self.File.as_image(figure))

    def log_summary(self, summary):
        self.run["summary"] = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                               for key, value in summary.items()}

    def close(self, status):
        self.run["sys/failed"] = status != "FINISHED"
        self.run.stop()
