"""What a run prints while it trains: a live progress bar on a terminal, a few plain lines
elsewhere (a log file, a notebook, a scheduler's output), and one line per epoch with its
metrics, its time and the run's estimated time to completion (ETA).

A progress bar redraws itself with carriage returns, which a file or a notebook keeps as
hundreds of frames; so off a terminal an epoch prints at most three progress lines, at 25%,
50% and 75% of its steps, and only once it has run for PLAIN_AFTER_SECONDS.
"""
import sys
import time

import torch
from tqdm import tqdm

PLAIN_AFTER_SECONDS = 20.0
ETA_EPOCHS = 5  # the ETA assumes the mean time of the last this-many epochs


def describe_device(device: torch.device) -> str:
    """'cpu', or e.g. 'cuda:0 (Tesla T4, compute capability 7.5)'."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return f"cuda:{index} ({torch.cuda.get_device_name(index)}, compute capability {major}.{minor})"


def format_duration(seconds: float) -> str:
    """4.2 -> '4.2s', 125 -> '2m05s', 7384 -> '2h03m'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def eta_seconds(epoch_seconds: list, remaining_epochs: int) -> float:
    """Seconds left: the mean of the last ETA_EPOCHS epoch times times the epochs remaining."""
    recent = epoch_seconds[-ETA_EPOCHS:]
    return sum(recent) / len(recent) * remaining_epochs if recent else 0.0


def epoch_line(row: dict, epochs: int, eta: float) -> str:
    """One line for a finished epoch: `row` as executors.run_folders.run_files.epoch_row makes it."""
    val = (f" | val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}"
           if row.get("val_loss") is not None else "")
    return (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
            f"{val} | test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f} "
            f"bal.acc {row['test_balanced_accuracy']:.4f} | {row['train_images_per_second']:.0f} img/s | "
            f"{format_duration(row['epoch_seconds'])}, ETA {format_duration(eta)}")


class EpochProgress:
    """Iterates over one epoch's batches and shows how far it is: a tqdm bar when stderr is a
    terminal, else plain lines on stdout (see the module docstring). `show(loss=..., acc=...)`
    sets the newest values to display."""

    def __init__(self, loader, epoch: int, epochs: int, interactive: bool = None):
        self.loader, self.label = loader, f"epoch {epoch + 1}/{epochs}"
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bar = (tqdm(loader, desc=self.label, leave=False, dynamic_ncols=True) if self.interactive else None)
        self.values, self.steps, self.start = {}, 0, time.perf_counter()
        self.next_quarter = 1

    def __iter__(self):
        if self.bar is not None:
            yield from self.bar
            return
        total = len(self.loader)
        for batch in self.loader:
            yield batch
            self.steps += 1
            if self.next_quarter < 4 and self.steps >= total * self.next_quarter / 4:
                self.next_quarter += 1
                self._print_line(total)

    def _print_line(self, total: int) -> None:
        elapsed = time.perf_counter() - self.start
        if elapsed < PLAIN_AFTER_SECONDS:
            return
        values = "".join(f" {key} {value}" for key, value in self.values.items())
        print(f"  {self.label}: {self.steps}/{total} steps in {format_duration(elapsed)}{values}", flush=True)

    def show(self, **values) -> None:
        self.values = values
        if self.bar is not None:
            self.bar.set_postfix(values, refresh=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
