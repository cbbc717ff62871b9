"""Runs of an earlier session, found where its saved output is attached read-only (on Kaggle:
`/kaggle/input/<notebook>/runs/<exp_name>/`), copied into this session's runs folder so that
`--resume auto` (or the sweep) continues them there.

Only folders named `runs` are searched (smoke and quick runs live in other folders:
executors/run_folders/run_kinds.py), at most SEARCH_DEPTH levels below the input folder.
"""
import os
import shutil
import stat
from pathlib import Path
from typing import Optional

from executors.run_folders.run_dir import LAST, LOCK, epochs_completed, runs_of
from executors.run_folders.run_kinds import REAL_RUNS

SEARCH_DEPTH = 4  # /kaggle/input/<notebook>/runs is level 2; room for folders above it
TRACKER_STORE = "mlflow.db"  # an exp_dir's MLflow store, copied along when this session has none
NOT_COPIED = shutil.ignore_patterns(LOCK, ".*.tmp")


def runs_folders(input_dir, depth: int = SEARCH_DEPTH) -> list:
    """Folders named REAL_RUNS at most `depth` levels below `input_dir` (shallow first, name order)."""
    found, level = [], [Path(input_dir)] if Path(input_dir).is_dir() else []
    for _ in range(depth + 1):
        found += [folder for folder in level if folder.name == REAL_RUNS]
        level = sorted(child for folder in level if folder.name != REAL_RUNS
                       for child in _subfolders(folder))
    return found


def _subfolders(folder: Path) -> list:
    try:
        return [child for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")]
    except OSError:
        return []


def newest_earlier_run(input_dir, exp_name) -> Optional[Path]:
    """The run folder of `exp_name` (`<exp_name>` or `<exp_name>_N` with a last.pt) in any runs
    folder below `input_dir` with the most completed epochs; of equal ones, the newest last.pt."""
    runs = [run for folder in runs_folders(input_dir) for run in runs_of(folder, exp_name)]
    runs = [(epochs_completed(run), run) for run in runs]
    runs = [(epochs, run) for epochs, run in runs if epochs is not None]
    if not runs:
        return None
    return max(runs, key=lambda item: (item[0], (item[1] / LAST).stat().st_mtime))[1]


def free_name(exp_dir: Path, exp_name: str) -> Path:
    """The first of `<exp_dir>/<exp_name>`, `<exp_name>_1`, ... that does not exist."""
    candidate, suffix = exp_dir / exp_name, 0
    while candidate.exists():
        suffix += 1
        candidate = exp_dir / f"{exp_name}_{suffix}"
    return candidate


def copy_run(source: Path, target: Path) -> None:
    """Copy the run folder `source` to `target`, writable, without its lock (through a partial
    folder renamed at the end: an interrupted copy is never taken for a run)."""
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(source, partial, ignore=NOT_COPIED, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(partial):
        os.chmod(folder, os.stat(folder).st_mode | stat.S_IRWXU)
    partial.rename(target)


def restore_earlier_run(input_dir, exp_dir, exp_name) -> str:
    """Copy the newest earlier run of `exp_name` below `input_dir` into `exp_dir` (as a new
    folder, which becomes the experiment's newest run), unless `exp_dir` already holds a run of
    it with as many epochs; returns one line saying what was found and done."""
    exp_dir = Path(exp_dir)
    source = newest_earlier_run(input_dir, exp_name)
    if source is None:
        return f"{exp_name}: no earlier run under {input_dir}"
    epochs = epochs_completed(source)
    here = [(epochs_completed(run), run) for run in runs_of(exp_dir, exp_name)]
    best_here = max(here, key=lambda item: item[0] or 0, default=(None, None))
    if best_here[0] is not None and best_here[0] >= epochs:
        return (f"{exp_name}: {best_here[1]} holds {best_here[0]} epochs, the earlier run {source} {epochs}: "
                f"continuing the one here")
    exp_dir.mkdir(parents=True, exist_ok=True)
    target = free_name(exp_dir, exp_name)
    copy_run(source, target)
    store = source.parent / TRACKER_STORE
    if store.is_file() and not (exp_dir / TRACKER_STORE).exists():
        shutil.copyfile(store, exp_dir / TRACKER_STORE)
    return f"{exp_name}: copied the earlier run {source} ({epochs} epochs) to {target}, to be resumed"
