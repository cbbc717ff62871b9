"""What a resumed run may change, and when there is nothing left to resume.

A resumed run must end as the uninterrupted run would have, so its config may differ from
the one saved in the checkpoint only where MAY_CHANGE_ON_RESUME allows: where and how the run
computes, what it writes and where it is tracked, and train.epochs upward. Every other key
decides what was trained (the model, the data and its preparation, the batch, the
optimisation recipe, the seed, the run's name) and is refused when changed, and so is any key
added to the library later, until it is put in the table.
"""
import copy
import json

from easydict import EasyDict

from executors.checkpoints.checkpoint import load_checkpoint
from logs.Logger import public_config
from utils.config import apply_overrides, make_paths_absolute
from utils.errors import CheckpointError
from utils.validation import check_values

# Keys a resumed run may change; a key stands for every key below it.
MAY_CHANGE_ON_RESUME = (
    "exp_dir",  # where a new folder goes when the run's own is read-only (a Kaggle input)
    "device",  # another machine (the numbers are then not bit-identical to an uninterrupted run)
    "threads",  # unset: the run's own count is kept (utils/threads.py)
    "data.root", "data.download", "data.mirrors", "data.md5", "data.cache_dir",  # where the same files are
    "data.num_workers", "data.loader",  # how batches are built
    "train.epochs",  # upward only: a longer run stretches its schedule (executors/optim.sync_lr_to_schedule)
    "train.compile", "train.cuda_graph",  # how steps run
    "train.max_nonfinite_steps", "train.confusion_matrix_every_epoch", "train.overfit_batch_steps",
    "logger",  # where the run is tracked
    "eval",  # how it is evaluated (test-time augmentation): reported, not trained
)
# Values computed at start-up when the config leaves them None: compared once computed.
COMPUTED_AT_START = ("data.mean", "data.std")
SHOWN_CHARACTERS = 120
ABSENT = "<absent>"


def _allowed(key: str) -> bool:
    return any(key == allowed or key.startswith((f"{allowed}.", f"{allowed}[")) for allowed in MAY_CHANGE_ON_RESUME)


def config_changes(saved: dict, current: dict, key: str = "") -> list:
    """[(dotted key, saved value, current value)] of the plain configs `saved` and `current`, at
    the deepest level where they differ (model.layers[2][0]; ABSENT for a key one side lacks),
    leaving out MAY_CHANGE_ON_RESUME and COMPUTED_AT_START keys still None in `current`. A key
    that only `current` has and that is off (None, False, 0, empty) is taken as one the library
    gained after the run started (features arrive off) and not held against the run."""
    if (key and _allowed(key)) or (key in COMPUTED_AT_START and current is None):
        return []
    if isinstance(saved, dict) and isinstance(current, dict):
        names = list(saved) + [name for name in current if name not in saved and current[name]]
        return [change for name in names
                for change in config_changes(saved.get(name, ABSENT), current.get(name, ABSENT),
                                             f"{key}.{name}" if key else name)]
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        return [change for index, (old, new) in enumerate(zip(saved, current))
                for change in config_changes(old, new, f"{key}[{index}]")]
    return [] if saved == current else [(key, saved, current)]


def _shown(value) -> str:
    text = value if value is ABSENT else repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS - 3] + "..."


def check_resumable(state: dict, cfg, path, class_names=None) -> None:
    """Raise CheckpointError when `cfg` would change what the run of checkpoint `state` (read
    from `path`) trained: a key outside MAY_CHANGE_ON_RESUME, train.epochs below the epochs
    done, or (when given) other `class_names` than the run's. The message names every changed
    key with its saved and new value and says how to go on."""
    done = state["epochs_completed"]
    if cfg.train.epochs < done:
        raise CheckpointError(
            f"train.epochs={cfg.train.epochs} is below the {done} epochs the run of {path} has done: resume with "
            f"train.epochs={done} or more (--set train.epochs=M), or start a new run without --resume.")
    changes = config_changes(state["config"], public_config(cfg))
    if class_names is not None and list(class_names) != list(state["class_names"]):
        changes.append(("the dataset's classes", state["class_names"], list(class_names)))
    if changes:
        listed = "; ".join(f"{key}: {_shown(old)} -> {_shown(new)}" for key, old, new in changes)
        raise CheckpointError(
            f"Cannot resume {path} with this config: it changes what the run was trained with ({listed}). "
            f"Start a new run without --resume, or resume with the run's own config: python scripts/train.py "
            f"--resume {path} without --cfg (--set may still change {', '.join(MAY_CHANGE_ON_RESUME)}).")


def saved_config(path, overrides=()) -> EasyDict:
    """The config saved in checkpoint `path`, with `overrides` (KEY=VALUE) applied and checked:
    what `train.py --resume PATH` uses without --cfg. Secrets were hidden when it was saved
    (e.g. a tracking URI's password): give them again with --set."""
    cfg = EasyDict(copy.deepcopy(load_checkpoint(path)["config"]))
    apply_overrides(cfg, overrides)
    check_values(cfg)
    make_paths_absolute(cfg)
    return cfg


def finished_summary(state: dict, cfg, path):
    """The run's summary (its summary.json, a dict) when the run of checkpoint `path` has done
    cfg.train.epochs epochs and written that summary, else None (more epochs to train, or a
    run stopped between its last checkpoint and its summary, which resuming completes)."""
    done = state["epochs_completed"]
    try:
        summary = json.loads((path.parent / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    finished = done == cfg.train.epochs and isinstance(summary, dict) and summary.get("epochs_completed") == done
    return summary if finished else None


def finished_note(summary: dict, path) -> str:
    """'already finished: N epochs (<run folder>); ...' for the finished_summary of checkpoint `path`."""
    epochs = summary["epochs_completed"]
    return (f"already finished: {epochs} epoch{'s' * (epochs != 1)} ({path.parent}); nothing to train. To train "
            f"longer, resume with --set train.epochs=M (M > {epochs})")
