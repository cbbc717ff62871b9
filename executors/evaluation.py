"""Evaluation of a model on a loader: mean loss, accuracy, balanced accuracy, confusion matrix;
the same again for test-time augmentation (executors/tools/tta.py) when asked, in the same pass. And
the Trainer's evaluations of an epoch: trained weights, their EMA, test and validation split."""
import torch
from torch.nn import functional as F

from executors.tools.ema import select
from executors.tools.tta import tta_logits
from utils.metrics import ConfusionMeter, accuracy_from_confusion, balanced_accuracy_from_confusion
from utils.runtime import Precision


def batch_to_device(batch: dict, device: torch.device, channels_last: bool = False):
    """(images [B, C, H, W], labels [B]) of a dataset batch dict, on `device`; copies from the
    host do not block on CUDA. `channels_last`: 4-D images in channels_last (NHWC) memory."""
    non_blocking = device.type == "cuda"
    images = batch["image"]
    memory_format = torch.channels_last if channels_last and images.dim() == 4 else torch.preserve_format
    return (images.to(device, non_blocking=non_blocking, memory_format=memory_format),
            batch["label"].to(device, non_blocking=non_blocking))


class _Tally:
    """Summed cross-entropy (float64, without smoothing) and confusion counts of one way of predicting."""

    def __init__(self, num_classes, device):
        self.meter = ConfusionMeter(num_classes)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, logits, labels):
        self.loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        self.meter.update(labels, logits.argmax(dim=1))

    def metrics(self, device, reduce=None) -> dict:
        if reduce is not None:
            self.meter.reduce(reduce, device)
            reduce(self.loss_sum)
        confusion = self.meter.compute()
        return {"loss": self.loss_sum.item() / max(int(confusion.sum()), 1),
                "accuracy": accuracy_from_confusion(confusion),
                "balanced_accuracy": balanced_accuracy_from_confusion(confusion), "confusion": confusion}


@torch.inference_mode()
def evaluate_model(model, loader, device, num_classes, precision=Precision(), channels_last=False,
                   reduce=None, tta="none") -> dict:
    """Run `model.eval()` over `loader` in autocast `precision` (as in training), images in
    channels_last memory if asked (see batch_to_device); returns loss (mean cross-entropy without
    smoothing), accuracy, balanced_accuracy (floats) and confusion (int64 [num_classes, num_classes]).

    `tta` (executors/tta.TTA_MODES): other than "none", the same pass also scores the mean
    logits of the test-time views (executors/tta.tta_logits, whose first view is the plain
    forward pass, run once) and adds tta_loss, tta_accuracy, tta_balanced_accuracy and
    tta_confusion; the plain metrics are those of tta="none" bit for bit.

    `reduce` (data parallelism: each process's loader holds its share of the test set) sums a
    tensor over processes in place; counts and loss are summed before the metrics are taken."""
    model.eval()
    plain = _Tally(num_classes, device)
    augmented = _Tally(num_classes, device) if tta != "none" else None
    for batch in loader:
        images, labels = batch_to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            logits = model(images)
            averaged = tta_logits(model, images, tta, logits) if augmented is not None else None
        plain.add(logits, labels)
        if augmented is not None:
            augmented.add(averaged, labels)
    result = plain.metrics(device, reduce)
    if augmented is not None:
        result.update({f"tta_{key}": value for key, value in augmented.metrics(device, reduce).items()})
    return result


def evaluate_epoch(evaluate, model, ema_model, test_loader, val_loader, tta="none") -> dict:
    """An epoch's evaluations, as run_files.epoch_row reads them: "test" and "val" of `model`, with
    the tta_* metrics of test-time augmentation `tta` beside the plain ones (none for "none");
    "ema_test" and "ema_val" of `ema_model` (the weight EMA, plain only); each the metrics of
    `evaluate(loader, model, tta)` (evaluate_model's), None without a validation loader or an
    EMA; and "selected_weights": the better weights on the selection split ("raw" or "ema",
    ema.select, on plain accuracy; None without an EMA)."""
    models = {"": (model, tta), "ema_": (ema_model, "none")}
    evaluations = {f"{prefix}{split}": None if weights is None or loader is None else evaluate(loader, weights, mode)
                   for prefix, (weights, mode) in models.items()
                   for split, loader in (("test", test_loader), ("val", val_loader))}
    return {**evaluations, "selected_weights": select(evaluations)[1] if ema_model is not None else None}
