"""Where a run writes: `<exp_dir>/<exp_name>[_N]/`, never overwriting an earlier run, and
held by one training process at a time. A folder whose run was stopped before its first
checkpoint (nothing to resume) is reused by the next new run of that name."""
import contextlib
import os
import shutil
from pathlib import Path

import torch

from logs.Logger import TRACKER_FILE, close_abandoned_run
from utils.errors import CheckpointError, StorageError, UserError, storage_error
from utils.file_lock import exclusive_lock

LAST = "last.pt"
BEST = "best.pt"


LOCK = ".lock"
# What a run writes before its first checkpoint; a folder holding no more has nothing to resume.
STARTING_FILES = {LOCK, "config.json", TRACKER_FILE, "batch_augmentation.png", "confusion_matrix_start.png",
                  "tensorboard", ".neptune"}


@contextlib.contextmanager
def claim_run_dir(exp_dir, exp_name, logger_cfg=None):
    """Hold a run directory for a new run during the block (run_dir_lock); yields its path:
    the first of `<exp_name>`, `<exp_name>_1`, ... that is new, or abandoned (see abandoned)
    and not held by a running process. An abandoned folder is emptied (but for its lock) and
    its tracker run ended KILLED (logs.Logger.close_abandoned_run with `logger_cfg`)."""
    busy = set()
    while True:
        run_dir = new_run_dir(exp_dir, exp_name, reuse=lambda folder: folder not in busy and abandoned(folder))
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(run_dir_lock(run_dir))
            except StorageError:
                raise
            except UserError:  # a running process holds it
                busy.add(run_dir)
                continue
            if not abandoned(run_dir):  # another process started in it first
                busy.add(run_dir)
                continue
            if logger_cfg is not None:
                close_abandoned_run(logger_cfg, run_dir)
            _empty(run_dir)
            yield run_dir
            return


def abandoned(folder: Path) -> bool:
    """Whether `folder` is a real directory (not a link) holding only what a run writes before
    its first checkpoint (STARTING_FILES, temporaries of the atomic writer): a run that was
    stopped (kill -9, Ctrl-C, a crash) before it had anything to resume, or a new folder."""
    try:
        names = [path.name for path in folder.iterdir()] if not folder.is_symlink() else None
    except OSError:
        return False
    return names is not None and all(name in STARTING_FILES or (name.startswith(".") and name.endswith(".tmp"))
                                     for name in names)


def _empty(run_dir: Path) -> None:
    """Remove everything in `run_dir` but its lock (links themselves, never what they point to)."""
    try:
        for path in run_dir.iterdir():
            if path.name == LOCK:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    except OSError as error:
        raise storage_error(error, "reuse the abandoned run directory", run_dir) from None


def new_run_dir(exp_dir, exp_name, reuse=lambda folder: False) -> Path:
    """Create and return `<exp_dir>/<exp_name>`, or `<exp_name>_1`, `_2`, ... if taken; an
    existing candidate for which `reuse(path)` is true is returned as it is.

    Raises StorageError when exp_dir is a file or cannot be written (read-only, no permission).
    """
    exp_dir = Path(exp_dir)
    if exp_dir.exists() and not exp_dir.is_dir():
        raise StorageError(f"exp_dir {exp_dir} is a file, not a directory: set exp_dir to a folder for the runs.")
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
        candidate, suffix = exp_dir / exp_name, 0
        while True:
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                if reuse(candidate):
                    return candidate
                suffix += 1
                candidate = exp_dir / f"{exp_name}_{suffix}"
    except OSError as error:
        raise storage_error(error, "create a run directory in exp_dir", exp_dir,
                            "Set exp_dir to a writable folder.") from None


def runs_of(exp_dir, exp_name):
    """Existing run directories of `exp_name`, newest last (by last.pt modification time)."""
    exp_dir = Path(exp_dir)
    dirs = [exp_dir / exp_name] + sorted(exp_dir.glob(f"{exp_name}_*"))
    with_ckpt = [d for d in dirs if (d / LAST).is_file() and
                 (d.name == exp_name or d.name[len(exp_name) + 1:].isdigit())]
    return sorted(with_ckpt, key=lambda d: (d / LAST).stat().st_mtime)


def resume_checkpoint(exp_dir, exp_name, resume) -> Path:
    """`--resume auto`: the newest run's last.pt; `--resume PATH`: that file (or PATH/last.pt)."""
    if resume == "auto":
        runs = runs_of(exp_dir, exp_name)
        if not runs:
            raise CheckpointError(
                f"--resume auto found no {LAST} under {Path(exp_dir) / exp_name}[_N]: "
                f"start without --resume, or pass --resume PATH to a checkpoint."
            )
        return runs[-1] / LAST
    path = Path(resume)
    return path / LAST if path.is_dir() else path


def epochs_completed(run_dir):
    """Epochs completed by the run in `run_dir`, read from its last.pt; None without a readable one."""
    try:  # mmap: only the few bytes of the counters are read
        return torch.load(Path(run_dir) / LAST, map_location="cpu", weights_only=True, mmap=True)["epochs_completed"]
    except Exception:  # no last.pt yet, or not readable
        return None


def interruption_note(run_dir) -> str:
    """What an interrupted run left in `run_dir` and how to go on from it (one sentence)."""
    last = Path(run_dir) / LAST
    epochs = epochs_completed(run_dir)
    if epochs is None:
        return f"no checkpoint was written yet in {run_dir}, so there is nothing to resume; start the run again"
    return (f"{last} holds {epochs} completed epoch{'s' * (epochs != 1)}; continue with --resume auto "
            f"(this experiment's newest run) or --resume {last}")


@contextlib.contextmanager
def run_dir_lock(run_dir):
    """Hold `run_dir` for one training process while the block runs (utils.file_lock on
    <run_dir>/.lock, which records the holder's pid). Raises UserError naming the process
    that holds it, so a second train.py (e.g. --resume auto during a run) never writes into it,
    and StorageError when .lock is a link (a run folder made elsewhere): nothing is written through it."""
    path, held = Path(run_dir) / LOCK, contextlib.ExitStack()
    try:
        fd = held.enter_context(exclusive_lock(path, wait=False))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BlockingIOError:
        held.close()
        holder = path.read_text().strip() or "unknown"
        raise UserError(f"run {run_dir} is in use by process {holder}: wait until it ends (or stop it) and "
                        f"resume then, or start a new run without --resume.") from None
    except OSError as error:
        held.close()
        raise storage_error(error, "lock the run directory", run_dir) from None
    with held:
        yield
