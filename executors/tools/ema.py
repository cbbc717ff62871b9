"""Exponential moving average (EMA) of the weights, updated after every optimizer step.

With decay d (train.ema_decay, in (0, 1)) the t-th update (t = 0, 1, ...) is

    ema = decay_t * ema + (1 - decay_t) * weights,
    decay_t = d,  or with train.ema_warmup  decay_t = min(d, (1 + t) / (10 + t))

(the warm-up is TensorFlow's ExponentialMovingAverage with num_updates = t: 0.1, 0.18, 0.25, ...
until it reaches d; timm's ModelEmaV3 warms up as 1 - (1 + t) ** (-2/3) instead). As in timm's
ModelEmaV3, parameters and floating-point buffers (BatchNorm running mean and variance) are
averaged, integer buffers (BatchNorm's num_batches_tracked) copied. The average lives in fp32
on the training device and is updated with torch._foreach_lerp_ and a decay computed on the
host from the update count: no host synchronisation. Under torchrun every process averages
the same DDP-synchronised parameters; BatchNorm buffers, which each process updates from its
own share, are taken from rank 0 before every evaluation and checkpoint (`share_buffers`).
"""
import copy

import torch
from torch import nn

from executors.checkpoints.checkpoint import load_model_weights


def ema_decay(decay: float, warmup: bool, updates: int) -> float:
    """decay_t of the update after `updates` earlier ones (see the module docstring)."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


class WeightEma:
    """An fp32 copy of `model` (`.module`, in eval mode, without gradients) that follows its
    weights as an exponential moving average.

    Args:
        model: the model being trained (its parameters and buffers are read by `update`).
        decay: train.ema_decay, in (0, 1).
        warmup: train.ema_warmup.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        self.decay, self.warmup, self.updates = decay, warmup, 0
        self.module = copy.deepcopy(model).float().eval().requires_grad_(False)
        pairs = list(zip(self.module.parameters(), model.parameters()))
        pairs += [(mine, theirs) for mine, theirs in zip(self.module.buffers(), model.buffers())
                  if mine.is_floating_point()]
        self._averaged, self._followed = [mine for mine, _ in pairs], [theirs.detach() for _, theirs in pairs]
        self._copied = [(mine, theirs) for mine, theirs in zip(self.module.buffers(), model.buffers())
                        if not mine.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the model's current weights (one step; no host sync)."""
        weight = 1.0 - ema_decay(self.decay, self.warmup, self.updates)
        torch._foreach_lerp_(self._averaged, self._followed, weight)  # ema += weight * (model - ema)
        for mine, theirs in self._copied:
            mine.copy_(theirs)
        self.updates += 1

    def share_buffers(self, broadcast) -> None:
        """Make every process's buffers rank 0's: `broadcast(tensor)` sends rank 0's in place."""
        for buffer in self.module.buffers():
            broadcast(buffer)

    def state_dict(self) -> dict:
        """{"weights": the averaged model's state_dict, "updates": updates done} (checkpoints)."""
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = state["updates"]


def select(evaluations: dict) -> tuple:
    """(accuracy, weights) of the better weights on the selection split (validation when there
    is one, else test): "raw", the trained weights, or "ema", their average (ties keep "raw").
    `evaluations` as Trainer.evaluate_epoch: "test", "val", "ema_test", "ema_val" metrics or None."""
    split = "val" if evaluations["val"] is not None else "test"
    raw, ema = evaluations[split]["accuracy"], evaluations[f"ema_{split}"]
    return (ema["accuracy"], "ema") if ema is not None and ema["accuracy"] > raw else (raw, "raw")


def checkpoint_weights(model: nn.Module, ema, weights: str = "raw") -> dict:
    """The weights a checkpoint holds: {"model": model's state_dict}, and with an EMA also
    "ema" (its state_dict) and "weights" (`weights`: which ones "model" holds); "ema" puts the
    EMA's weights in "model", what evaluate and predict load, and the trained ones in
    "trained_model", what a resume loads."""
    if ema is None:
        return {"model": model.state_dict()}
    if weights == "raw":
        return {"model": model.state_dict(), "ema": ema.state_dict(), "weights": "raw"}
    return {"model": ema.module.state_dict(), "trained_model": model.state_dict(), "ema": ema.state_dict(),
            "weights": "ema"}


def restore_weights(model: nn.Module, ema, state: dict, path) -> None:
    """Load a checkpoint's trained weights into `model` and its average into `ema` (when the
    run has one: a resume never switches the EMA on or off, checkpoints/resume.py)."""
    load_model_weights(model, {"model": state.get("trained_model", state["model"])}, path)
    if ema is not None:
        ema.load_state_dict(state["ema"])
