"""Checkpoints: written atomically, readable with torch.load(weights_only=True).

A checkpoint is a dict of tensors and plain Python values: model, optimizer, scheduler and
scaler states, epochs completed, global step, best metric, metric history, RNG states, the
resolved config, class names, the tracking run id and the CPU thread count (None on a GPU;
absent in checkpoints written before it was recorded). With train.ema_decay also the weight
average ("ema") and which weights "model" holds ("weights"; see executors/ema.checkpoint_weights);
with mixup/cutmix the state of the mixing generator ("mix_generator": executors/mixing.mixer_state).
What a Trainer saves and restores: trainer_state.py.
"""
import pickle
import warnings
import zipfile
from pathlib import Path

import torch

from utils.atomic_files import write_atomic
from utils.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(state: dict, path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it (never half-written;
    see utils/atomic_files.py). Raises StorageError for a full disk or an unwritable folder."""
    write_atomic(path, lambda file: torch.save({"format_version": FORMAT_VERSION, **state}, file))


REQUIRED_KEYS = ("model_name", "model", "optimizer", "scheduler", "scaler", "epochs_completed", "global_step",
                 "best_accuracy", "best_epoch", "history", "rng", "config", "class_names", "logger_run_id")
_HELP = "Pass another best.pt/last.pt, or train again."


def _unreadable(path: Path, why: str) -> CheckpointError:
    return CheckpointError(f"Checkpoint {path} cannot be read: {why}. {_HELP}")


def _damage(path: Path, error: Exception) -> str:
    """Why torch.load failed on an existing file, in our words (torch's own text suggests
    weights_only=False, which would run any code a foreign file holds)."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes; a write that never finished, or a full disk)"
    if not zipfile.is_zipfile(path):
        return (f"it is not a PyTorch checkpoint archive ({size:,} bytes of something else, or a file "
                f"cut short by an interrupted copy or download)")
    if isinstance(error, pickle.UnpicklingError):
        return ("it holds Python objects other than tensors and plain values, so this library did not "
                "write it, and loading it could run arbitrary code")
    return f"the archive is damaged or truncated ({type(error).__name__})"


def load_checkpoint(path, model_name=None) -> dict:
    """Read a checkpoint safely; with `model_name`, refuse one made for another model.

    Anything that is not a readable checkpoint of this library (missing, a directory, empty,
    truncated, random bytes, another program's pickle, no permission) raises CheckpointError
    with one paragraph that says what is wrong with the file.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"Checkpoint {path} is a directory: pass the best.pt or last.pt file inside it.")
    if not path.exists():
        raise CheckpointError(f"Checkpoint {path} does not exist: pass the path of a best.pt or last.pt file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch's note on the pickle protocol of a foreign file
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        if error.filename is not None:  # opening the file failed: no permission, ...
            raise _unreadable(path, error.strerror.lower()) from None
        raise _unreadable(path, _damage(path, error)) from None
    except Exception as error:  # torch.load raises what its parsers raise: EOFError, IndexError, KeyError, ...
        raise _unreadable(path, _damage(path, error)) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a checkpoint of this library (format version {FORMAT_VERSION}). "
                              f"{_HELP}")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    missing += [key for key, kind in (("model", dict), ("config", dict), ("class_names", list), ("history", list))
                if key in state and not isinstance(state[key], kind)]
    if missing:
        raise _unreadable(path, f"it lacks {', '.join(missing)} (or holds them in another form), so another "
                                f"program or version wrote it")
    if model_name is not None and state["model_name"] != model_name:
        raise CheckpointError(
            f"Checkpoint {path} holds a {state['model_name']} model, but the config asks for {model_name}: "
            f"pass a checkpoint of the same model or the config it was trained with."
        )
    return state


def load_model_weights(model: torch.nn.Module, state: dict, path) -> None:
    """model.load_state_dict with a readable error when the architectures differ."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        details = " ".join(str(error).split())[:400]
        raise CheckpointError(
            f"Checkpoint {path} does not fit this model's architecture ({details}). "
            f"Use the config the checkpoint was trained with."
        ) from None


def restore_training_state(optimizer, scheduler, scaler, state: dict, path) -> None:
    """Load the optimizer, schedule and GradScaler states of a checkpoint. The optimizer's
    settings other than the lr stay those this process built: the recipe's equal the saved ones
    (executors/checkpoints/resume.check_resumable), and the device-dependent ones (`fused`, on CUDA only)
    must fit this device (torch's load_state_dict would restore the saved ones); the lr follows
    the schedule (optim.sync_lr_to_schedule)."""
    configured = [{key: value for key, value in group.items() if key not in ("params", "lr", "initial_lr")}
                  for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            scaler.load_state_dict(state["scaler"])
    except (ValueError, KeyError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"The optimizer state in {path} does not fit this config ({error}): resume with the "
                              f"config the run was trained with.") from None
    for group, settings in zip(optimizer.param_groups, configured):
        group.update(settings)
