"""Learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
2015, section 3.3; fastai's `lr_find`): train a copy of the model for a few steps with an lr
that grows geometrically, from START_LR to END_LR, and watch the loss.

Step k of `steps` (k = 0 .. steps - 1) trains one batch at

    lr_k = start_lr * (end_lr / start_lr) ** (k / (steps - 1)),

set directly on every param group (each keeps its own weight decay, so the no-bias-decay
groups stay as training has them; the schedule's warmup, decay and linear scaling play no
part). The loss of each batch, taken before its step, is smoothed by a bias-corrected
exponential moving average, s_k = a_k / (1 - BETA ** (k + 1)) with a_k = BETA * a_(k-1) +
(1 - BETA) * loss_k, and the test stops once s_k is not finite or exceeds DIVERGENCE times
the lowest s so far. From the smoothed curve, without its first steps // 10 and last
TAIL_SKIPPED points (fastai's trim), two suggestions:

* "minimum" (the default): a tenth of the lr of the lowest smoothed loss (fastai's
  `minimum`): a step back from where the loss stops falling;
* "steep": the lr where the smoothed loss falls fastest against log lr, the left end of the
  steepest segment (fastai's `steep`): where training makes the most progress per step.
  Only the descent is searched, up to the lowest smoothed loss: beyond it a fall is the loss
  recovering from a blow-up (BatchNorm networks often do, without reaching DIVERGENCE times
  the lowest loss), not progress. fastai searches the whole trimmed curve.

"minimum" is the default because it is the steadier of the two: the argmin of a noisy curve
moves less than the argmin of its slope. On the KMNIST sample (the `mlp` recipe, 100 steps)
seeds 0, 1 and 2 gave "minimum" 0.020, 0.020, 0.024 and "steep" 0.045, 0.079, 0.018
(docs/training-tools.md, "LR range test").

The model and optimizer are deep copies: the originals are left as they were, and so are the
Python, NumPy and torch (CPU and CUDA) random generators (random_states_kept), so a training
run started afterwards in the same process draws what it would have drawn without the test.
"""
import contextlib
import copy
import math

import numpy as np
import torch
from torch import nn

from datasets.loading.loaders import build_loaders
from executors.evaluation import batch_to_device
from executors.optim import build_optimizer, resolve_lr
from executors.preflight import preflight
from models.registry import build_model, has_batch_norm
from utils.errors import TrainingError
from utils.runtime import (Precision, configure_backends, resolve_device, resolve_precision, rng_state, seed_everything,
                           set_rng_state, uses_channels_last)
from utils.threads import configure_threads
from utils.validation import check_values

START_LR, END_LR, STEPS = 1e-7, 10.0, 100
BETA = 0.98  # smoothing of the loss (fastai's)
DIVERGENCE = 4.0  # stop once the smoothed loss exceeds this many times its lowest value
TAIL_SKIPPED = 5  # last points left out of the suggestions (fastai's)
METHODS = ("minimum", "steep")  # the first is the default


def lr_schedule(start_lr: float, end_lr: float, steps: int) -> list:
    """The `steps` lrs of the test: geometric from start_lr to end_lr, both included."""
    if not 0 < start_lr < end_lr or steps < 2:
        raise ValueError(f"need 0 < start_lr < end_lr and steps >= 2, not {start_lr}, {end_lr}, {steps}")
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (k / (steps - 1)) for k in range(steps)]


@contextlib.contextmanager
def random_states_kept():
    """Put the Python, NumPy and torch (CPU and every GPU) random states back as they were,
    also after an error."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def _endless(loader):
    """The loader's batches, epoch after epoch (epochs 0, 1, ... told to a loader with set_epoch)."""
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        batches = 0
        for batches, batch in enumerate(loader, start=1):
            yield batch
        if batches == 0:
            return
        epoch += 1


def range_test(model, optimizer, loader, criterion, lrs, device, precision=Precision(), channels_last=False,
               grad_clip_norm=None) -> dict:
    """Train deep copies of `model` and `optimizer` one batch of `loader` per lr of `lrs`, in
    model.train() mode and autocast `precision` (fp16 with a GradScaler), as the Trainer
    steps; stop early when the smoothed loss explodes (see the module docstring).

    loader: an iterable of {"image": float [B, C, H, W], "label": int64 [B]}, repeated
        (with set_epoch) when it holds fewer batches than `lrs`.
    criterion: loss of (logits float [B, classes], labels [B]) -> 0-d tensor.
    Returns {"lrs", "losses", "smoothed"} (floats, one per step taken; losses in the
    criterion's units, nats per image for cross-entropy) and "stopped": why the test ended
    early, or None. Prints a line every tenth of the steps. The random generators are left as they were.
    """
    with random_states_kept():
        model, optimizer = copy.deepcopy((model, optimizer))  # one memo: the copy steps the copied weights
        model.train()
        scaler = torch.amp.GradScaler(device.type, enabled=precision.use_scaler)
        record = {"lrs": [], "losses": [], "smoothed": [], "stopped": None}
        average, best = 0.0, math.inf
        for step, (lr, batch) in enumerate(zip(lrs, _endless(loader))):
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = batch_to_device(batch, device, channels_last)
            with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
                loss = criterion(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip_norm:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            value = loss.item()
            average = BETA * average + (1 - BETA) * value
            smoothed = average / (1 - BETA ** (step + 1))
            for key, number in (("lrs", lr), ("losses", value), ("smoothed", smoothed)):
                record[key].append(number)
            if not math.isfinite(smoothed) or smoothed > DIVERGENCE * best:
                record["stopped"] = (f"step {step + 1} of {len(lrs)}, lr {lr:.3g}: smoothed loss {smoothed:.4g}"
                                     f"{'' if math.isfinite(smoothed) else ' (not finite)'}, lowest {best:.4g}")
                break
            best = min(best, smoothed)
            if (step + 1) % max(1, len(lrs) // 10) == 0:
                print(f"step {step + 1}/{len(lrs)}: lr {lr:.3g}, loss {value:.4g}, smoothed {smoothed:.4g}", flush=True)
    return record


def suggestions(lrs, smoothed, planned_steps: int) -> dict:
    """{"steep": lr, "minimum": lr} from a range test's lrs and smoothed losses (lists of
    equal length), trimmed to [planned_steps // 10, len - TAIL_SKIPPED) (see the module
    docstring); "falling": whether the smoothed loss falls to its lowest point in that window
    (when not, "steep" is the window's first lr and neither suggestion means much).
    Raises TrainingError when fewer than 3 points are left: the loss exploded too soon."""
    start, end = planned_steps // 10, len(lrs) - TAIL_SKIPPED
    if end - start < 3:
        raise TrainingError(
            f"The loss exploded after {len(lrs)} of {planned_steps} steps (at lr {lrs[-1]:.3g}), too soon to "
            f"suggest an lr: start lower (--start-lr) or take more steps (--steps).")
    log_lr, loss = np.log(lrs[start:end]), np.asarray(smoothed[start:end])
    lowest = int(np.argmin(loss))
    slopes = np.diff(loss[:lowest + 1]) / np.diff(log_lr[:lowest + 1])  # loss per unit of ln(lr), [lowest]
    steepest = int(np.argmin(slopes)) if lowest else 0
    return {"steep": float(lrs[start + steepest]), "minimum": float(lrs[start + lowest]) / 10,
            "falling": lowest > 0}


def lr_setting(train_cfg, lr: float):
    """(dotted config key, value) that makes training use `lr`: train.lr, or with linear
    scaling the base lr, lr * base_batch_size / batch_size (executors/optim.resolve_lr)."""
    scaling = train_cfg.lr_scaling
    if scaling is None:
        return "train.lr", lr
    return "train.lr_scaling.base_lr", lr * float(scaling["base_batch_size"]) / train_cfg.batch_size


def _step_probe(model, criterion, batch, device, channels_last):
    """One forward and backward pass of `model` on `batch`, for utils.threads to size."""
    images, labels = batch_to_device(batch, device, channels_last)

    def run_once():
        model.zero_grad(set_to_none=True)
        criterion(model(images), labels).backward()
    return run_once


def find_lr(cfg, steps=STEPS, start_lr=START_LR, end_lr=END_LR, method=METHODS[0]) -> dict:
    """The range test of config `cfg` on its training loader (built as for training), on the
    model the run would start from (seeded by cfg.seed) and its optimizer, in the run's
    precision (train.amp) with its label smoothing and gradient clipping; eager (train.compile
    is not used) and in one process. On the CPU the thread count is chosen as for training.

    Returns the record written as lr_find.json: range_test's lists and "stopped", the two
    suggestions, the chosen one ("suggestion", by `method`), the config's own lr and the
    setting (key and value) that gives the suggestion. `cfg` is not changed; the random
    generators are left as they were. Values, transforms, model and optimizer are checked
    first, as for training (ConfigError naming the key).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    check_values(cfg)
    preflight(cfg)
    lrs = lr_schedule(start_lr, end_lr, steps)
    cfg = copy.deepcopy(cfg)  # the loaders write data.mean/std into it
    with random_states_kept():
        train_loader, _, class_names = build_loaders(cfg, drop_single_last=has_batch_norm(cfg.model_name, cfg.model))
        device = resolve_device(cfg.device)
        configure_backends(device)
        precision = resolve_precision(cfg.train.amp, device)
        channels_last = uses_channels_last(cfg.model_name, device)
        seed_everything(cfg.seed)  # as the Trainer does before it builds the model
        model = build_model(cfg.model_name, cfg.model, len(class_names)).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, cfg.train)
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.train.label_smoothing)
        if device.type == "cpu":
            probe = _step_probe(model, criterion, next(iter(train_loader)), device, channels_last)
            print(configure_threads(cfg.get("threads"), probe))
        print(f"LR range test: {len(lrs)} steps of batch {cfg.train.batch_size}, lr {start_lr:.3g} to {end_lr:.3g}, "
              f"on {device} in {precision.name}", flush=True)
        record = range_test(model, optimizer, train_loader, criterion, lrs, device, precision, channels_last,
                            cfg.train.grad_clip_norm)
    found = suggestions(record["lrs"], record["smoothed"], steps)
    key, value = lr_setting(cfg.train, found[method])
    return {"exp_name": cfg.exp_name, "model_name": cfg.model_name, "dataset": cfg.data.name,
            "device": str(device), "precision": precision.name, "batch_size": cfg.train.batch_size,
            "optimizer": cfg.train.optimizer, "start_lr": start_lr, "end_lr": end_lr, "steps": steps,
            "beta": BETA, "divergence": DIVERGENCE, **record,
            "suggestions": {name: found[name] for name in METHODS}, "falling": found["falling"],
            "method": method, "suggestion": found[method], "config_lr": resolve_lr(cfg.train),
            "setting": {"key": key, "value": value}}
