"""Per-step training metrics gathered on the device and read back to the host in batches.

A training step must not wait for the GPU: `.item()`, `.tolist()`, `float(tensor)` or an `if`
on a tensor stall the host until every queued kernel has run. StepMetrics therefore keeps
each step's values as a small device tensor and moves all pending steps to the host with a
single `.tolist()` when asked (the Trainer asks every `logger.flush_every` steps and at the
end of an epoch). It also keeps the epoch totals and the current run of non-finite losses.
"""
import math

import torch

from utils.errors import TrainingError

STEP_KEYS = ("loss", "accuracy", "balanced_accuracy", "lr")  # logged as train/<key> every step


def batch_balanced_accuracy(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int,
                            dtype=torch.float64) -> torch.Tensor:
    """Mean recall over the classes present in `labels`, per batch: a tensor of shape [...] on the
    labels' device.

    labels, predictions: int64 [..., B] (one batch [B], or several of the same size [S, B]).
    Tensor ops only, no host synchronisation (bincount would read the largest label back on
    CUDA). The per-class recalls are those of utils.metrics.balanced_accuracy bit for bit; their
    mean may differ in the last bit or two (below 4e-16), since it sums over all classes with
    absent ones as zeros: summing over the present ones only would need their count on the host.
    """
    is_class = labels[..., None] == torch.arange(num_classes, device=labels.device)  # [..., B, C]
    support = is_class.sum(dim=-2)  # [..., C] samples of each class
    hits = (is_class & (predictions == labels)[..., None]).sum(dim=-2)  # [..., C] of them predicted right
    present = support > 0
    recall = hits.to(dtype) / support.clamp(min=1).to(dtype)
    return (recall * present).sum(dim=-1) / present.sum(dim=-1).clamp(min=1).to(dtype)


class StepMetrics:
    """Accumulates loss, accuracy, balanced accuracy and GradScaler skips per training step.

    add() only keeps references to the step's device tensors (no kernel, no sync: a training
    step's host time is precious on a fast GPU); read() computes the pending steps' metrics in a
    few batched kernels, returns them as dicts of host floats, oldest first, in one transfer,
    and adds them to the epoch totals.
    """

    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.dtype = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
        self._pending = []  # per step on the device: (loss 0-d, predictions [B], labels [B], skipped 0-d bool)
        self._host = []  # per step: (global step, lr, batch size), known on the host
        self._never_skipped = torch.zeros((), dtype=torch.bool, device=device)
        self.nonfinite_streak, self.nonfinite_since = 0, None  # consecutive NaN/inf losses, first step
        self.start_epoch()

    def start_epoch(self) -> None:
        """Zero the epoch totals (the run of non-finite losses carries over)."""
        self.loss_sum, self.correct, self.seen, self.skipped = 0.0, 0.0, 0, 0

    def __len__(self) -> int:
        """Steps added and not yet read back."""
        return len(self._pending)

    def add(self, step: int, lr: float, loss, predictions, labels, skipped=None) -> None:
        """Queue one step: loss (0-d), predictions and labels (int64 [B]) on the device,
        skipped (0-d bool: the GradScaler skipped the optimizer step, None without a scaler).
        The tensors must not be changed in place before read(): pass copies of reused buffers."""
        self._pending.append((loss.detach(), predictions, labels, self._never_skipped if skipped is None else skipped))
        self._host.append((step, lr, labels.shape[0]))

    def _values(self) -> list:
        """[[loss, correct, balanced accuracy, skipped]] of the pending steps, oldest first: computed
        for the steps of each batch size together, read back in one transfer."""
        by_size = {}
        for index, (_, _, labels, _) in enumerate(self._pending):
            by_size.setdefault(labels.shape[0], []).append(index)
        order, tables = [], []
        for indices in by_size.values():
            steps = (self._pending[i] for i in indices)
            loss, predictions, labels, skipped = (torch.stack(column) for column in zip(*steps))  # [S], [S, B], ...
            tables.append(torch.stack([
                loss.to(self.dtype), (predictions == labels).sum(dim=1).to(self.dtype),
                batch_balanced_accuracy(labels, predictions, self.num_classes, self.dtype),
                skipped.to(self.dtype)], dim=1))
            order += indices
        values = torch.cat(tables).tolist()
        ordered = [None] * len(order)
        for position, index in enumerate(order):
            ordered[index] = values[position]
        return ordered

    def read(self) -> list:
        """Pending steps as [{"step", "loss", "accuracy", "balanced_accuracy", "lr", "skipped",
        "size"}] (one host transfer), added to the epoch totals and the non-finite run."""
        if not self._pending:
            return []
        rows = []
        for (loss, correct, balanced, skipped), (step, lr, size) in zip(self._values(), self._host):
            rows.append({"step": step, "loss": loss, "accuracy": correct / max(size, 1), "balanced_accuracy": balanced,
                         "lr": lr, "skipped": int(skipped), "size": size})
            self.loss_sum, self.correct = self.loss_sum + loss * size, self.correct + correct
            self.seen, self.skipped = self.seen + size, self.skipped + int(skipped)
            if math.isfinite(loss):
                self.nonfinite_streak, self.nonfinite_since = 0, None
            else:
                self.nonfinite_streak += 1
                self.nonfinite_since = self.nonfinite_since or step
        self._pending, self._host = [], []
        return rows

    def epoch_means(self) -> dict:
        """{"loss", "accuracy"} over the steps read back this epoch, weighted by batch size;
        "images" seen and "skipped_steps" (optimizer steps the GradScaler skipped)."""
        return {"loss": self.loss_sum / max(self.seen, 1), "accuracy": self.correct / max(self.seen, 1),
                "images": self.seen, "skipped_steps": self.skipped}

    def divergence(self, limit, epochs_completed: int, weights_finite: bool = True):
        """A TrainingError when the last `limit` losses read back were all NaN/inf (limit None:
        never), or when some were and the weights are no longer finite (no step can repair
        them); otherwise None."""
        stuck = limit is not None and self.nonfinite_streak >= limit
        if not (stuck or (self.nonfinite_streak and not weights_finite)):
            return None
        why = (f"stayed so for {self.nonfinite_streak} steps (train.max_nonfinite_steps={limit})" if stuck
               else "the weights became non-finite too")
        saved = (f"The checkpoints last.pt and best.pt hold the last good epoch ({epochs_completed}), but a "
                 f"resume keeps the run's settings (executors/checkpoints/resume.py): start a new run with the "
                 f"changed ones"
                 if epochs_completed
                 else "No epoch was completed, so no checkpoint was written")
        return TrainingError(
            f"the training loss became non-finite (NaN or inf) at step {self.nonfinite_since} and {why}, "
            f"so training stopped. Try a lower train.lr or a train.grad_clip_norm; if it ran in fp16, "
            f"train.amp='bf16' (GPUs of compute capability 8.0+) or 'off'. {saved}.")


def scaled_optimizer_step(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer):
    """scaler.step(optimizer) and scaler.update(); returns a 0-d bool on the device, True when
    the GradScaler skipped the step for inf/nan gradients (None when the scaler is off).

    Why the private `_get_scale_async` (the scale tensor, no host sync): GradScaler tells of a
    skipped step only through get_scale() (a host sync) or private state, but update() shrinks
    the scale exactly when the step was skipped, so the scale before and after is compared."""
    scaler.step(optimizer)
    if not scaler.is_enabled():
        return None
    scale = scaler._get_scale_async().clone()
    scaler.update()
    return scaler._get_scale_async() < scale


def parameters_finite(model: torch.nn.Module) -> bool:
    """Whether every parameter of `model` is finite (one host synchronisation)."""
    return bool(torch.stack([p.detach().isfinite().all() for p in model.parameters()]).all())
