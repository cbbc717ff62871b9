"""TensorBoard backend: event files under `<run_dir>/tensorboard/` (`tensorboard --logdir runs`)."""
import json

from utils.errors import ConfigError


class TensorBoardBackend:
    run_id = None

    def __init__(self, run_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("logger.backend='tensorboard' needs TensorBoard: "
                              "pip install -r requirements-tensorboard.txt.") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_params(self, params):
        rows = "\n".join(f"| {key} | {json.dumps(value, default=str)} |" for key, value in params.items())
        self.writer.add_text("hyperparameters", "| parameter | value |\n|---|---|\n" + rows)

    def log_metrics(self, records):
        for name, value, step in records:
            self.writer.add_scalar(name, value, step)

    def log_artifact(self, path, artifact_dir):
        pass  # the file is already in the run directory beside the event files

    def log_figure(self, path, name, figure):
        self.writer.add_figure(name.rsplit(".", 1)[0], figure, close=False)

    def log_summary(self, summary):
        for key, value in summary.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"summary/{key}", value, 0)

    def close(self, status):
        self.writer.close()
