"""The optimisation recipe: optimizer, learning rate (direct or linearly scaled), schedule.

The schedule is stepped once per iteration: linear warmup over `warmup_epochs`, then cosine
decay to zero (or a constant lr). With W warmup steps and N steps in all, the k-th
optimizer step (k = 1..N) uses
    lr_k = lr * k / W                                   for k <= W,
    lr_k = lr * (1 + cos(pi * (k - 1 - W) / (N - W))) / 2   after warmup (cosine),
as in He et al., "Bag of Tricks", section 3.
"""
import functools
import inspect
import math

import torch

from utils.errors import ConfigError, did_you_mean
from utils.validation import SCHEDULES


def resolve_lr(train_cfg) -> float:
    """train.lr, or base_lr * batch_size / base_batch_size when train.lr_scaling is set."""
    scaling = train_cfg.lr_scaling
    if scaling is None:
        return float(train_cfg.lr)
    return float(scaling["base_lr"]) * train_cfg.batch_size / float(scaling["base_batch_size"])


def parameter_groups(model, train_cfg):
    """Param groups: with no_bias_decay, weight decay only where model.weight_decay_params() says."""
    if not train_cfg.no_bias_decay:
        return [{"params": [p for p in model.parameters() if p.requires_grad],
                 "weight_decay": train_cfg.weight_decay}]
    wo_decay, w_decay = model.weight_decay_params()
    return [{"params": w_decay, "weight_decay": train_cfg.weight_decay},
            {"params": wo_decay, "weight_decay": 0.0}]


def build_optimizer(model, train_cfg) -> torch.optim.Optimizer:
    """torch.optim.<train.optimizer>(groups, lr=resolve_lr(...), **train.optimizer_args)."""
    name = train_cfg.optimizer
    if not hasattr(torch.optim, name) or not isinstance(getattr(torch.optim, name), type):
        choices = [n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)]
        hint = did_you_mean(str(name), choices)
        raise ConfigError(f"Unknown optimizer train.optimizer='{name}'.{hint}")
    optimizer_class, arguments = getattr(torch.optim, name), dict(train_cfg.optimizer_args or {})
    on_cuda = all(p.is_cuda for p in model.parameters())
    if on_cuda and "fused" in inspect.signature(optimizer_class).parameters:
        arguments.setdefault("fused", True)  # one kernel per step; with fp16 the GradScaler then never syncs
    try:
        return optimizer_class(parameter_groups(model, train_cfg), lr=resolve_lr(train_cfg), **arguments)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"train.optimizer_args {train_cfg.optimizer_args} do not suit {name}: {error}.") from None


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Factor of the base lr for the optimizer step that follows `step` earlier steps (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(optimizer, train_cfg, steps_per_epoch: int):
    """LambdaLR stepped every iteration over train.epochs * steps_per_epoch steps.

    The lr function is a `functools.partial`, which LambdaLR's state_dict does not capture:
    the schedule's shape always comes from the config, and a checkpoint restores only the
    step count (see sync_lr_to_schedule).
    """
    if train_cfg.scheduler not in SCHEDULES:
        raise ConfigError(f"train.scheduler='{train_cfg.scheduler}' is not one of {', '.join(SCHEDULES)}.")
    total_steps = train_cfg.epochs * steps_per_epoch
    warmup_steps = min(total_steps, round(train_cfg.warmup_epochs * steps_per_epoch))
    multiplier = functools.partial(lr_multiplier, warmup_steps=warmup_steps, total_steps=total_steps,
                                   schedule=train_cfg.scheduler)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def sync_lr_to_schedule(scheduler) -> None:
    """Set every param group's lr to the schedule's value at the scheduler's restored step.

    With the config of the checkpointed run this changes nothing (the same value); with a
    longer `train.epochs` it moves the lr onto the longer schedule's curve.
    """
    step = scheduler.last_epoch
    for group, base_lr, multiplier in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base_lr * multiplier(step)
