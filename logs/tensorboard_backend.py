"""TensorBoard backend: event files in `<run_dir>/tensorboard/` (`tensorboard --logdir <exp_dir>`).

Scalars keep their names and steps; hyperparameters and the summary are markdown tables
(text tab; a single-point chart per summary value would push the curves down); figures go
to the images tab. TensorBoard has no file store, so `log_file` does nothing (the files stay in run_dir).
A resumed run appends a new event file to the same directory, which TensorBoard merges.
"""
import shlex
from pathlib import Path

from utils.errors import ConfigError


def markdown_table(values: dict) -> str:
    """| key | value | rows, with `|` in values escaped."""
    rows = [f"| {key} | {str(value).replace('|', '&#124;')} |" for key, value in values.items()]
    return "\n".join(["| key | value |", "|---|---|", *rows])


def import_summary_writer():
    """torch's SummaryWriter class, or a ConfigError that says how to install tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("logger.backend='tensorboard' needs tensorboard: "
                          "pip install -r requirements-tensorboard.txt") from None
    return SummaryWriter


class TensorBoardBackend:
    """A SummaryWriter on run_dir/tensorboard; `run_id` is None (the directory is the run)."""

    run_id = None
    logged_steps = {}  # not read back from the event files

    def __init__(self, run_dir: Path):
        self.log_dir = Path(run_dir).resolve() / "tensorboard"
        self.writer = import_summary_writer()(log_dir=str(self.log_dir))

    def location(self) -> str:
        return (f"TensorBoard events in {self.log_dir}; to view (every run of the experiment): "
                f"tensorboard --logdir {shlex.quote(str(self.log_dir.parents[1]))}")

    def log_params(self, params: dict) -> None:
        self.writer.add_text("hyperparameters", markdown_table(params))

    def log_metrics(self, records: list) -> None:
        for name, value, step, seconds in records:
            self.writer.add_scalar(name, value, step, walltime=seconds)

    def log_image(self, fig, path: Path, name: str) -> None:
        self.writer.add_figure(Path(name).with_suffix("").as_posix(), fig, close=False)

    def log_file(self, path: Path, artifact_path) -> None:
        """Nothing to do: TensorBoard stores no files."""

    def log_summary(self, summary: dict) -> None:
        self.writer.add_text("summary", markdown_table(summary))

    def close(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()
