"""Evaluation of a model on a loader: mean loss, accuracy, balanced accuracy, confusion matrix."""
import torch
from torch.nn import functional as F

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


@torch.inference_mode()
def evaluate_model(model, loader, device, num_classes, precision=Precision(), channels_last=False,
                   reduce=None) -> dict:
    """Run `model.eval()` over `loader` in autocast `precision` (as in training), images in
    channels_last memory if asked (see batch_to_device); returns loss (mean cross-entropy without
    smoothing), accuracy, balanced_accuracy (floats) and confusion (int64 [num_classes, num_classes]).

    `reduce` (data parallelism: each process's loader holds its share of the test set) sums a
    tensor over processes in place; counts and loss are summed before the metrics are taken."""
    model.eval()
    meter = ConfusionMeter(num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    for batch in loader:
        images, labels = batch_to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            logits = model(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").double()
        meter.update(labels, logits.argmax(dim=1))
    if reduce is not None:
        meter.reduce(reduce, device)
        reduce(loss_sum)
    confusion = meter.compute()
    total = int(confusion.sum())
    return {"loss": loss_sum.item() / max(total, 1), "accuracy": accuracy_from_confusion(confusion),
            "balanced_accuracy": balanced_accuracy_from_confusion(confusion), "confusion": confusion}
