"""What the CLI scripts do, as library functions: train, overfit, evaluate, predict."""
import contextlib
import copy
import os
import signal
import sys
from pathlib import Path

import torch
from easydict import EasyDict

from datasets.loading.loaders import build_dataset, build_loaders, dataset_class, make_loader
from datasets.transforms.building import build_transforms
from executors.checkpoints.checkpoint import load_checkpoint, load_model_weights
from executors.checkpoints.inference_checks import check_dataset_classes, check_input_fits, check_same_task
from executors.checkpoints.resume import check_resumable, finished_note, finished_summary
from executors.distributed import Processes, main_process_first, session
from executors.evaluation import evaluate_model
from executors.preflight import preflight
from executors.run_folders.run_dir import claim_run_dir, interruption_note, resume_checkpoint, run_dir_lock
from executors.trainer import Trainer
from logs.Logger import check_logger_config
from models.registry import build_model, has_batch_norm
from utils.config import apply_overrides, make_paths_absolute
from utils.errors import DataError, Interrupted
from utils.runtime import configure_backends, resolve_device, resolve_precision, uses_channels_last
from utils.threads import configure_threads
from utils.validation import check_values, warnings_for


def _step_probe(trainer):
    """A call that runs one forward and backward pass of a copy of the model on the first
    training batch: the workload that utils.threads times."""
    with torch.random.fork_rng():  # the probe must not change the run's random streams
        batch = next(iter(trainer.train_loader))
    model = copy.deepcopy(trainer.model).train()
    images, labels = batch["image"].to(trainer.device), batch["label"].to(trainer.device)

    def run_once():
        with torch.random.fork_rng():
            model.zero_grad(set_to_none=True)
            trainer.criterion(model(images), labels).backward()
    return run_once


def prepare_trainer(cfg, processes=Processes(), kept_threads=None) -> Trainer:
    """Loaders and Trainer for `cfg` (this process's share of the data when parallel); on the
    CPU also the thread count, printed: cfg.threads, else `kept_threads` (a resumed run's, from
    its checkpoint), else utils.threads.default_threads."""
    with main_process_first(processes):
        loaders = build_loaders(cfg, processes.rank, processes.world_size,
                                drop_single_last=has_batch_norm(cfg.model_name, cfg.model))
    trainer = Trainer(cfg, *loaders, val_loader=loaders.val, processes=processes)
    if trainer.device.type == "cpu":
        print(configure_threads(cfg.get("threads"), _step_probe(trainer), kept=kept_threads))
    return trainer


def train_experiment(cfg, resume=None):
    """Train `cfg` in a new run directory, or continue the run of `resume` ("auto" or a path);
    returns the run summary (None in processes other than rank 0 under torchrun).

    Config values, the transforms, model and optimizer they build (executors/preflight.py),
    the logger settings and the data are checked before any directory is made, so a bad
    config or a missing dataset leaves nothing behind. A resumed run keeps writing into its
    own directory unless that is read-only (e.g. a Kaggle input), then into a new one; a
    config that changes what the run trained is refused before any data is read
    (executors/checkpoints/resume.py), and a finished run is reported ("already finished") and left as it
    is. The run directory is locked for the run's life: a second process that wants it (e.g.
    --resume auto while the run trains) stops with a UserError. Under torchrun
    every process runs Trainer.fit on its share and rank 0 alone writes (executors/distributed.py).
    """
    check_values(cfg)
    make_paths_absolute(cfg)
    preflight(cfg)
    check_logger_config(cfg.logger, cfg.exp_dir)
    for note in warnings_for(cfg):
        print(f"warning: {note}", file=sys.stderr)
    with session(cfg) as processes, contextlib.ExitStack() as held:
        checkpoint = resume_checkpoint(cfg.exp_dir, cfg.exp_name, resume) if resume else None
        run_dir = checkpoint.parent if checkpoint is not None and os.access(checkpoint.parent, os.W_OK) else None
        if run_dir is not None and processes.is_main:
            held.enter_context(run_dir_lock(run_dir))  # before last.pt is read: no process is writing it
        state = load_checkpoint(checkpoint, cfg.model_name) if checkpoint is not None else None
        if state is not None:
            check_resumable(state, cfg, checkpoint)  # before any data is read
            summary = finished_summary(state, cfg, checkpoint)
            if summary is not None:  # nothing is written, no tracker run reopened
                if processes.is_main:
                    print(finished_note(summary, checkpoint))
                return summary if processes.is_main else None
        trainer = prepare_trainer(cfg, processes, kept_threads=state.get("threads") if state else None)
        if checkpoint is not None:
            trainer.load_model(checkpoint, state)
        if processes.is_main:  # the other processes write nothing
            run_dir = run_dir or held.enter_context(claim_run_dir(cfg.exp_dir, cfg.exp_name, cfg.logger))
        try:  # from the line that names the run directory on, an interruption says what it holds
            if processes.is_main:
                print(f"Run directory: {run_dir}")
            summary = trainer.fit(run_dir)
        except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM through utils.cli
            note = interruption_note(run_dir) if processes.is_main else ""
            raise Interrupted(getattr(error, "signal_number", signal.SIGINT), note) from None
        return summary if processes.is_main else None


def overfit_experiment(cfg, steps=None) -> dict:
    """Memorise one training batch (Trainer.overfitting_on_batch); returns steps, accuracy, loss."""
    check_values(cfg)
    preflight(cfg)
    return prepare_trainer(cfg).overfitting_on_batch(steps)


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


def evaluate_checkpoint(checkpoint, overrides=()):
    """(metrics, class names) of a checkpoint on the test split, in the precision it was trained
    with (train.amp on this device); metrics as evaluate_model."""
    cfg, model, class_names = load_trained(checkpoint, overrides)
    device = next(model.parameters()).device
    dataset = build_dataset(cfg.data, "test")
    check_dataset_classes(dataset, class_names, checkpoint)
    check_input_fits(model, dataset, device, checkpoint)
    metrics = evaluate_model(model, make_loader(dataset, cfg, "test"), device, len(class_names),
                             resolve_precision(cfg.train.amp, device), uses_channels_last(cfg.model_name, device))
    return metrics, class_names


def predict_images(checkpoint, image_paths, top_k=3):
    """For each image path: list of (class name, probability) for the top_k classes (see
    predict_files). Raises the DataError of the first file that is not a readable image."""
    predictions = predict_files(checkpoint, image_paths, top_k)
    for _, _, error in predictions:
        if error is not None:
            raise DataError(error)
    return [top for top, _, _ in predictions]


def predict_files(checkpoint, image_paths, top_k=3):
    """For each image path, in order: (top, notes, error). `top`: list of (class name,
    probability) for the top_k classes, most probable first, computed in the checkpoint's
    precision (train.amp on this device), as in training and evaluation; `notes`: how the file
    was read. Any image file is accepted (the dataset's image_for_prediction: every PIL mode,
    huge JPEGs, a KMNIST glyph drawn dark on light); for a file that is not a readable image,
    `error` is its DataError's message (naming the file) and `top`, `notes` are empty: the
    other files are predicted all the same. `error` is None for a predicted file."""
    cfg, model, class_names = load_trained(checkpoint)
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
    tops = iter(_top_classes(cfg, model, class_names, tensors, top_k) if tensors else [])
    return [(next(tops) if error is None else [], notes, error) for notes, error in read]


def _top_classes(cfg, model, class_names, tensors, top_k):
    """For each image tensor: [(class name, probability)] of the top_k classes, most probable first."""
    device = next(model.parameters()).device
    precision = resolve_precision(cfg.train.amp, device)
    memory_format = torch.channels_last if uses_channels_last(cfg.model_name, device) else torch.preserve_format
    with torch.inference_mode(), torch.autocast(device.type, dtype=precision.dtype,
                                                enabled=precision.dtype is not None):
        batch = torch.stack(tensors).to(device, memory_format=memory_format)
        probabilities = torch.softmax(model(batch).float(), dim=1).cpu()
    top = probabilities.topk(min(top_k, len(class_names)), dim=1)
    return [[(class_names[i], p) for p, i in zip(values.tolist(), indices.tolist())]
            for values, indices in zip(top.values, top.indices)]
