"""Classification metrics written by hand (torch only); they agree with scikit-learn.

Labels are class indices in [0, num_classes). The confusion matrix has true classes in
rows and predicted classes in columns.
"""
import torch


def _as_tensor(values) -> torch.Tensor:
    return values.long() if isinstance(values, torch.Tensor) else torch.as_tensor(values, dtype=torch.long)


def confusion_matrix(y_true, y_pred, num_classes: int) -> torch.Tensor:
    """int64 [num_classes, num_classes] counts: entry (i, j) = samples of class i predicted as j.

    y_true, y_pred: 1-D tensors, arrays or lists of the same length. The result stays on
    the device of y_true.
    """
    y_true, y_pred = _as_tensor(y_true).flatten(), _as_tensor(y_pred).flatten()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.numel()} labels but y_pred has {y_pred.numel()}")
    if y_true.numel() and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    flat = y_true * num_classes + y_pred.to(y_true.device)
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy_from_confusion(confusion: torch.Tensor) -> float:
    """Share of samples on the diagonal."""
    confusion = confusion.double()
    return float(confusion.trace() / confusion.sum()) if confusion.sum() > 0 else 0.0


def balanced_accuracy_from_confusion(confusion: torch.Tensor) -> float:
    """Mean recall over the classes that occur among the true labels (rows with samples)."""
    confusion = confusion.double()
    support = confusion.sum(dim=1)
    present = support > 0
    if not present.any():
        return 0.0
    return float((confusion.diagonal()[present] / support[present]).mean())


def accuracy(y_true, y_pred) -> float:
    """Share of predictions equal to the true label."""
    y_true, y_pred = _as_tensor(y_true).flatten(), _as_tensor(y_pred).flatten()
    return float((y_true == y_pred.to(y_true.device)).double().mean()) if y_true.numel() else 0.0


def balanced_accuracy(y_true, y_pred, num_classes: int = None) -> float:
    """Mean per-class recall over classes present in y_true (sklearn's balanced_accuracy_score)."""
    y_true, y_pred = _as_tensor(y_true), _as_tensor(y_pred)
    if num_classes is None:
        num_classes = int(max(y_true.max(), y_pred.max())) + 1
    return balanced_accuracy_from_confusion(confusion_matrix(y_true, y_pred, num_classes))


class ConfusionMeter:
    """Accumulates a confusion matrix over batches on the batches' device, with no host
    synchronisation per batch (torch.bincount would read the largest value back from a GPU).
    Labels or predictions outside [0, num_classes) are counted apart and make compute() raise."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.total = None
        self.out_of_range = None

    def update(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> None:
        """Add one batch of labels [B] and predictions [B]."""
        y_true = _as_tensor(y_true).flatten()
        y_pred = _as_tensor(y_pred).flatten().to(y_true.device)
        self._start(y_true.device)
        valid = (y_true >= 0) & (y_true < self.num_classes) & (y_pred >= 0) & (y_pred < self.num_classes)
        flat = torch.where(valid, y_true * self.num_classes + y_pred, 0)
        self.total.index_add_(0, flat, valid.long())
        self.out_of_range += (~valid).sum()

    def _start(self, device) -> None:
        if self.total is None:
            self.total = torch.zeros(self.num_classes ** 2, dtype=torch.long, device=device)
            self.out_of_range = torch.zeros((), dtype=torch.long, device=device)

    def reduce(self, sum_over_processes, device) -> None:
        """Replace the counts by their sums over processes: `sum_over_processes(tensor)` sums
        a tensor in place (executors.distributed.all_reduce_sum). Every process must call it."""
        self._start(device)
        sum_over_processes(self.total)
        sum_over_processes(self.out_of_range)

    def compute(self) -> torch.Tensor:
        """int64 [num_classes, num_classes] on the CPU."""
        if self.total is None:
            return torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)
        if int(self.out_of_range):
            raise ValueError(f"{int(self.out_of_range)} labels or predictions lie outside [0, {self.num_classes})")
        return self.total.cpu().reshape(self.num_classes, self.num_classes)

    def reset(self) -> None:
        self.total = self.out_of_range = None

    def accuracy(self) -> float:
        return accuracy_from_confusion(self.compute())

    def balanced_accuracy(self) -> float:
        return balanced_accuracy_from_confusion(self.compute())
