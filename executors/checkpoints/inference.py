"""What scripts/evaluate.py and scripts/predict.py do with a trained checkpoint, test-time
augmentation (executors/tools/tta.py) included: load it, its test metrics, and the top-k classes of
image files.
"""
import copy
import sys
from pathlib import Path

import torch
from easydict import EasyDict

from datasets.loading.loaders import build_dataset, dataset_class, make_loader
from datasets.transforms.building import build_transforms
from executors.checkpoints.checkpoint import load_checkpoint, load_model_weights
from executors.checkpoints.inference_checks import check_dataset_classes, check_input_fits, check_same_task
from executors.evaluation import evaluate_model
from executors.tools.tta import resolve_tta, tta_logits
from models.registry import build_model
from utils.config import apply_overrides
from utils.errors import DataError
from utils.runtime import configure_backends, resolve_device, resolve_precision, uses_channels_last


def load_trained(checkpoint, overrides=()):
    """(cfg, model in eval mode on its device, class names) from a checkpoint.

    `overrides` (KEY=VALUE) change the saved config, e.g. data.root for another machine, but not
    data.name, model_name or model.* (CheckpointError: executors/checkpoints/inference_checks.py). On
    CUDA a CNN is put in channels_last memory and cuDNN picks its fastest kernels.
    """
    state = load_checkpoint(checkpoint)
    cfg = EasyDict(copy.deepcopy(state["config"]))
    apply_overrides(cfg, overrides)
    check_same_task(state["config"], cfg, state["class_names"], checkpoint)
    device = resolve_device(cfg.device)
    configure_backends(device)
    model = build_model(cfg.model_name, cfg.model, len(state["class_names"]))
    load_model_weights(model, state, checkpoint)
    if "weights" in state:  # a run with train.ema_decay: best.pt holds the better of the weights and their EMA
        print(f"weights: {'the EMA of the trained weights' if state['weights'] == 'ema' else 'the trained weights'} "
              f"(train.ema_decay={state['config']['train']['ema_decay']})", file=sys.stderr)
    model = model.to(device).eval()
    if uses_channels_last(cfg.model_name, device):
        model = model.to(memory_format=torch.channels_last)
    return cfg, model, state["class_names"]


def evaluate_checkpoint(checkpoint, overrides=(), tta=None):
    """(metrics, class names) of a checkpoint on the test split, in the precision it was trained
    with (train.amp on this device); metrics as evaluate_model, plus "tta": the mode used
    (`tta`, else the config's eval.tta: executors/tta.resolve_tta), with the tta_* metrics of
    the same pass when it is not "none"."""
    cfg, model, class_names = load_trained(checkpoint, overrides)
    mode = resolve_tta(cfg, tta)
    device = next(model.parameters()).device
    dataset = build_dataset(cfg.data, "test")
    check_dataset_classes(dataset, class_names, checkpoint)
    check_input_fits(model, dataset, device, checkpoint)
    precision = resolve_precision(cfg.train.amp, device)
    metrics = evaluate_model(model, make_loader(dataset, cfg, "test"), device, len(class_names), precision,
                             uses_channels_last(cfg.model_name, device), tta=mode)
    return {**metrics, "tta": mode}, class_names


def predict_files(checkpoint, image_paths, top_k=3, tta=None):
    """For each image path, in order: (top, notes, error). `top`: list of (class name,
    probability) for the top_k classes, most probable first, from the softmax of the TTA
    logits (`tta`, else the config's eval.tta; "none": the model's own logits), computed in the
    checkpoint's precision (train.amp on this device), as in training and evaluation; `notes`:
    how the file was read. Any image file is accepted (the dataset's image_for_prediction: every
    PIL mode, huge JPEGs, a KMNIST glyph drawn dark on light); for a file that is not a readable
    image, `error` is its DataError's message (naming the file) and `top`, `notes` are empty:
    the other files are predicted all the same. `error` is None for a predicted file."""
    cfg, model, class_names = load_trained(checkpoint)
    mode = resolve_tta(cfg, tta)
    dataset = dataset_class(cfg.data.name)
    transform = build_transforms(cfg.data.transforms.test, cfg.data.mean, cfg.data.std)
    read, tensors = [], []
    for path in image_paths:
        try:
            image, notes = dataset.image_for_prediction(Path(path))
        except DataError as error:
            read.append(([], str(error)))
            continue
        tensors.append(transform(image))
        read.append((notes, None))
    tops = iter(_top_classes(cfg, model, class_names, tensors, top_k, mode) if tensors else [])
    return [(next(tops) if error is None else [], notes, error) for notes, error in read]


def _top_classes(cfg, model, class_names, tensors, top_k, mode):
    """For each image tensor: [(class name, probability)] of the top_k classes, most probable
    first, probabilities the softmax of the TTA logits (tta_logits with `mode`)."""
    device = next(model.parameters()).device
    precision = resolve_precision(cfg.train.amp, device)
    memory_format = torch.channels_last if uses_channels_last(cfg.model_name, device) else torch.preserve_format
    with torch.inference_mode(), torch.autocast(device.type, dtype=precision.dtype,
                                                enabled=precision.dtype is not None):
        images = torch.stack(tensors).to(device, memory_format=memory_format)
        probabilities = torch.softmax(tta_logits(model, images, mode), dim=1).cpu()
    top = probabilities.topk(min(top_k, len(class_names)), dim=1)
    return [[(class_names[i], p) for p, i in zip(values.tolist(), indices.tolist())]
            for values, indices in zip(top.values, top.indices)]
