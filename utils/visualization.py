"""Figures: confusion matrices and batches before/after augmentation.

Figures are made with matplotlib's object API (matplotlib.figure.Figure), not pyplot, so
no global figure registry grows across epochs and no display backend is needed; the Logger
saves them and then closes them.
"""
import numpy as np
import torch
from matplotlib.figure import Figure


def plot_confusion_matrix(confusion, class_names, title="Confusion matrix") -> Figure:
    """Heat map of counts [C, C] (rows: true class, columns: predicted), each cell labelled.

    Size and fonts scale with C so 10 and 37 classes stay readable.
    """
    counts = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion)
    num_classes = len(class_names)
    side = max(6.0, 0.32 * num_classes + 3.0)
    cell_font = 10 if num_classes <= 12 else 6
    figure = Figure(figsize=(side + 1.5, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(counts, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="images")
    ticks = np.arange(num_classes)
    axes.set_xticks(ticks, labels=class_names, rotation=90 if num_classes > 12 else 45,
                    ha="center" if num_classes > 12 else "right", fontsize=8 if num_classes > 12 else 10)
    axes.set_yticks(ticks, labels=class_names, fontsize=8 if num_classes > 12 else 10)
    axes.set_xlabel("Predicted label")
    axes.set_ylabel("True label")
    axes.set_title(title)
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(num_classes):
        for col in range(num_classes):
            axes.text(col, row, str(int(counts[row, col])), ha="center", va="center", fontsize=cell_font,
                      color="white" if counts[row, col] > threshold else "black")
    return figure


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
