"""Checks that a checkpoint is used on the task it was trained for, before evaluation or
prediction runs into a shape error deep inside the model.

A checkpoint answers for one dataset's classes and one input format: `--set` may move the
data (data.root, data.num_workers, device, ...), but not change data.name, model_name or
model.*, and the test set must list exactly the checkpoint's class names in its order.
"""
import torch

from utils.errors import CheckpointError

TASK_KEYS = ("data.name", "model_name", "model")
SHOWN_CLASSES = 5


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


def _classes(names) -> str:
    """'37 classes: a, b, c, d, e, ...'."""
    shown = ", ".join(names[:SHOWN_CLASSES]) + (", ..." if len(names) > SHOWN_CLASSES else "")
    return f"{len(names)} classes: {shown}"


def check_same_task(saved_cfg, cfg, class_names, checkpoint) -> None:
    """CheckpointError when the overrides turned `saved_cfg` into `cfg` with another dataset or model."""
    changed = [key for key in TASK_KEYS if _get(saved_cfg, key) != _get(cfg, key)]
    if changed:
        shown = ", ".join(f"{key}={_get(cfg, key)!r}" for key in changed)
        raise CheckpointError(
            f"Checkpoint {checkpoint} holds a {saved_cfg['model_name']} trained on {saved_cfg['data']['name']} "
            f"({_classes(class_names)}); --set {shown} asks for another task, and a model answers only for the "
            f"dataset and architecture it was trained on. Leave {', '.join(changed)} as saved (set data.root to "
            f"use another copy of the same dataset), or pass a checkpoint trained on that dataset.")


def check_dataset_classes(dataset, class_names, checkpoint) -> None:
    """CheckpointError when the dataset's classes are not the checkpoint's, in the same order."""
    if list(dataset.classes) != list(class_names):
        raise CheckpointError(
            f"The {type(dataset).__name__} {dataset.split} set has {_classes(list(dataset.classes))}, but checkpoint "
            f"{checkpoint} was trained for {_classes(list(class_names))}: its outputs would be read as the wrong "
            f"classes. Evaluate it on the dataset and class list it was trained with (a checkpoint made before a "
            f"change of the class list needs training again).")


def check_input_fits(model, dataset, device, checkpoint) -> None:
    """CheckpointError when the first test image, as the configured test transforms prepare it,
    cannot go through the model (e.g. data.transforms.test overridden to another size for an MLP)."""
    if len(dataset) == 0:
        return
    try:
        image = dataset[0]["image"]
    except (RuntimeError, ValueError, TypeError) as error:
        raise _input_error(checkpoint, "cannot be prepared", error) from None
    try:
        with torch.inference_mode():
            model(image[None].to(device))
    except (RuntimeError, ValueError, TypeError) as error:
        raise _input_error(checkpoint, f"(shape {list(image.shape)}) do not fit its model", error) from None


def _input_error(checkpoint, what, error) -> CheckpointError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return CheckpointError(f"The test images, as data.transforms.test, data.mean and data.std prepare them for "
                           f"checkpoint {checkpoint}, {what}: {reason}. Keep those keys as saved in the checkpoint.")
