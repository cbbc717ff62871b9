"""Figures: confusion matrices and batches before/after augmentation.

Figures are made with matplotlib's object API (matplotlib.figure.Figure), not pyplot, so
no global figure registry grows across epochs and no display backend is needed; the Logger
saves them and then closes them.
"""
import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from utils.metrics import accuracy_from_confusion, balanced_accuracy_from_confusion


def plot_confusion_matrix(confusion, class_names, title="Confusion matrix") -> Figure:
    """Heat map of a confusion matrix of counts [C, C] (rows: true class, columns: predicted).

    Cells are coloured by the share of their row (row-normalised: the diagonal is each class's
    recall), so classes with few images read like those with many; counts are printed only in
    non-zero cells, and rows of classes without images are grey. Each row's label carries its
    number of images, the title the accuracy and balanced accuracy. The figure's side grows
    with C (0.32 in per class, at least 6 in) and its fonts shrink, so 10 and 37 classes
    both stay readable.
    """
    counts = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.int64)
    num_classes = len(class_names)
    support = counts.sum(axis=1)
    shares = np.ma.masked_invalid(counts / np.where(support > 0, support, np.nan)[:, None])
    many = num_classes > 12
    side = max(6.0, 0.32 * num_classes + 3.0)
    label_width = 0.075 * max((len(f"{name} ({n})") for name, n in zip(class_names, support)), default=0)
    figure = Figure(figsize=(side + label_width + 1.5, side + label_width), layout="constrained")
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    image = axes.imshow(shares, cmap=colours, vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class's images (row)")
    ticks = np.arange(num_classes)
    axes.set_xticks(ticks, labels=class_names, rotation=90 if many else 45, ha="center" if many else "right",
                    fontsize=8 if many else 10)
    axes.set_yticks(ticks, labels=[f"{name} ({n})" for name, n in zip(class_names, support)],
                    fontsize=8 if many else 10)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label (images)")
    axes.set_title(f"{title}\n{_accuracies(counts)}", fontsize=10 if many else 12)
    for row, col in zip(*np.nonzero(counts)):
        axes.text(col, row, str(counts[row, col]), ha="center", va="center", fontsize=6 if many else 10,
                  color="white" if shares[row, col] > 0.5 else "black")
    return figure


def _accuracies(counts: np.ndarray) -> str:
    """'accuracy 0.912, balanced accuracy 0.897 (1,000 images)' of a confusion matrix [C, C]."""
    total = int(counts.sum())
    if total == 0:
        return "no images"
    confusion = torch.from_numpy(counts)
    return (f"accuracy {accuracy_from_confusion(confusion):.3f}, "
            f"balanced accuracy {balanced_accuracy_from_confusion(confusion):.3f} ({total:,} images)")


def show_batch(originals, augmented, labels, class_names, mean, std, title="Batch before and after augmentation"):
    """The same images before (top row) and after (bottom row) the training transforms.

    originals: list of N PIL images as stored; augmented: float [N, C, H, W], normalised
    with `mean`/`std` (per channel), un-normalised here for display; labels: N ints.
    """
    count = len(originals)
    figure = Figure(figsize=(2.2 * count, 5.0), layout="constrained")
    axes = figure.subplots(2, count, squeeze=False)
    mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
    for column in range(count):
        shown = (augmented[column].float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        for row, image in enumerate((np.asarray(originals[column]), shown)):
            axis = axes[row][column]
            axis.imshow(image, cmap="gray" if image.ndim == 2 or image.shape[-1] == 1 else None)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[0][column].set_title(class_names[labels[column]], fontsize=9)
    axes[0][0].set_ylabel("before")
    axes[1][0].set_ylabel("after")
    figure.suptitle(title)
    return figure
