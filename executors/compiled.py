"""Optional torch.compile for the training forward pass, with a fall-back to eager execution.

torch.compile compiles lazily, on the first call, and may fail there (no C compiler, an
unsupported Python or operator, a backend bug). Training must not die of an optimisation:
the first compiled step that raises is redone with the eager model, after a one-line note,
and every later step runs eagerly. Once a compiled step has succeeded, errors propagate.

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
        self.model, self.compiled, self.proven = model, None, False
        if enabled:
            try:
                self.compiled = torch.compile(model)
            except Exception as error:  # e.g. torch.compile unsupported on this Python
                self._give_up(error)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (self.model if self.compiled is None else self.compiled)(images)

    def run_step(self, step, *args):
        """Return step(*args), where `step` calls this object for its forward pass. If it is the
        first compiled step and raises, print a note and redo it eagerly."""
        if self.compiled is None or self.proven:
            return step(*args)
        try:
            result = step(*args)
        except Exception as error:
            self._give_up(error)
            return step(*args)
        self.proven = True
        return result

    def _give_up(self, error: BaseException) -> None:
        self.compiled = None
        print(f"note: torch.compile failed ({_reason(error)}); training continues without it (eager)",
              file=sys.stderr)
