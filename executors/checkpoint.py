"""Checkpoints: written atomically, readable with torch.load(weights_only=True).

A checkpoint is a dict of tensors and plain Python values: model, optimizer, scheduler and
scaler states, epochs completed, global step, best metric, metric history, RNG states, the
resolved config, class names and the tracking run id.
"""
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from utils.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(state: dict, path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save({"format_version": FORMAT_VERSION, **state}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path, model_name=None) -> dict:
    """Read a checkpoint safely; with `model_name`, refuse one made for another model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist: pass the path of a best.pt or last.pt file.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as error:
        raise CheckpointError(
            f"Checkpoint {path} cannot be read ({str(error).splitlines()[0]}): it is damaged or not a "
            f"checkpoint of this library. Use another best.pt/last.pt or train again."
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a checkpoint of this library (format version {FORMAT_VERSION}).")
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
