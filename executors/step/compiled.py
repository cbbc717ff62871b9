"""Optional torch.compile for the training forward pass, with a fall-back to eager execution.

torch.compile compiles lazily, on the first call (the backward graph on the first backward),
and may fail there (no C compiler, an unsupported Python or operator, a backend bug).
Training must not die of an optimisation: when the first compiled step raises, `fall_back`
prints a one-line note and makes every later call eager, and the Trainer redoes the step.
Once a compiled step has succeeded, errors propagate.

The compiled wrapper shares the model's parameters; checkpoints keep saving the model
itself, so their keys carry no `_orig_mod.` prefix.
"""
import sys

import torch


def _reason(error: BaseException) -> str:
    """The first line of an exception's message, shortened, with its type."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


class TrainingForward:
    """The callable a training step runs its batch through: `model`, or torch.compile(model).

    Args:
        model: the nn.Module being trained (images [B, C, H, W] -> logits [B, classes]).
        enabled: whether to try torch.compile (train.compile).
    """

    def __init__(self, model: torch.nn.Module, enabled: bool):
        self.model, self.compiled, self.compiled_calls = model, None, 0
        if enabled:
            try:
                self.compiled = torch.compile(model)
            except Exception as error:  # e.g. torch.compile unsupported on this Python
                self._give_up(error)

    @property
    def proven(self) -> bool:
        """Whether the compiled model has run a whole step: a step after its first has called it."""
        return self.compiled is not None and self.compiled_calls > 1

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.model(images)
        self.compiled_calls += 1
        return self.compiled(images)

    def fall_back(self, error: BaseException) -> bool:
        """After `error` in a training step: True when the step was the compiled model's first
        (note printed, later calls run eagerly: redo the step), else False (re-raise it)."""
        if self.compiled is None or self.compiled_calls > 1:
            return False
        self._give_up(error)
        return True

    def _give_up(self, error: BaseException) -> None:
        self.compiled = None
        print(f"note: torch.compile failed ({_reason(error)}); training continues without it (eager)",
              file=sys.stderr)
