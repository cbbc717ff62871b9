"""Figures: confusion matrices and batches before/after augmentation.

Figures are made with matplotlib's object API (matplotlib.figure.Figure), not pyplot, so
no global figure registry grows across epochs and no display backend is needed; the Logger
saves them and then closes them.
"""
import math
import textwrap

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from utils.metrics import accuracy_from_confusion, balanced_accuracy_from_confusion


CONFUSION_DPI = 100  # pixels per inch the figure is drawn for (the Logger and evaluate.py save at it)
MATRIX_INCHES = 7.0  # the matrix's side at most; cells are 0.55 in up to 12 classes, smaller above
RECALL_INCHES, COLOURBAR_INCHES = 1.2, 0.9  # widths of the recall bars and of the colour bar with its label
NAME_CHARS = 26  # longer class names are cut with "…" ("staffordshire_bull_terrier" fits)
DIGIT_EM = 0.64  # width of a digit in DejaVu Sans, in font sizes


def plot_confusion_matrix(confusion, class_names, title="Confusion matrix") -> Figure:
    """Heat map of a confusion matrix of counts [C, C] (rows: true class, columns: predicted),
    with each class's recall as a bar beside its row.

    Cells are coloured by the share of their row (row-normalised, on a square-root scale so
    that a 2% confusion is visible), so classes with few images read like those with many;
    rows of classes without images are grey. Non-zero counts are printed where they fit the
    cell at its font: all of them when the largest class's number of images fits (10 KMNIST
    classes of 1,000), else the off-diagonal ones (37 pet breeds of ~100: the diagonal is the
    recall bar), else none (the colour tells). The bar beside each row is the class's recall
    (diagonal / row sum) with its value. Each row's label carries its number of images, the
    title the accuracy and balanced accuracy (a long title is wrapped to the figure's width).

    Size: drawn for CONFUSION_DPI (100) pixels per inch, the matrix at most 7 in a side, so the
    PNG is at most about 1200 x 1100 px whatever C (37 breeds: about 1160 x 1010) and no text
    is below 7 pt (9.7 px); class names are cut to 26 characters, and where rows are thinner
    than the font only every k-th is written.
    """
    counts = np.asarray(confusion.cpu() if isinstance(confusion, torch.Tensor) else confusion, dtype=np.int64)
    num_classes = len(class_names)
    support = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.ma.masked_invalid(counts / np.where(support > 0, support, np.nan)[:, None])
    cell = min(0.55, MATRIX_INCHES / max(num_classes, 1))  # inches
    font = 10.0 if cell >= 0.4 else 7.0
    names = [_shorten(str(name)) for name in class_names]
    rows = [f"{name} ({n})" for name, n in zip(names, support)]
    name_width = max(map(len, names), default=0) * 0.6 * font / 72  # inches, estimated
    rotation = 0 if name_width <= 0.9 * cell else 45 if num_classes <= 12 else 90
    label_width = max(map(len, rows), default=0) * 0.6 * font / 72 + 0.5
    column_height = name_width * {0: 0.0, 45: 0.75, 90: 1.0}[rotation] + 0.6
    side = cell * num_classes
    width = label_width + side + RECALL_INCHES + COLOURBAR_INCHES
    figure = Figure(figsize=(width, side + column_height + 0.9), dpi=CONFUSION_DPI, layout="constrained")
    matrix, recall_axes = figure.subplots(1, 2, sharey=True, width_ratios=[side, RECALL_INCHES])
    colours = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    norm = matplotlib.colors.PowerNorm(0.5, vmin=0.0, vmax=1.0)
    image = matrix.imshow(shares, cmap=colours, norm=norm, interpolation="nearest", aspect="auto")
    colourbar = figure.colorbar(image, ax=[matrix, recall_axes], shrink=0.6, pad=0.02)
    colourbar.set_label("share of the true class's images (row)", fontsize=font)
    colourbar.ax.tick_params(labelsize=font)
    step = max(1, math.ceil(1.2 * font / 72 / cell))  # write every step-th name where rows are thin
    ticks = np.arange(num_classes)
    slanted = rotation == 45
    matrix.set_xticks(ticks[::step], labels=names[::step], rotation=rotation, fontsize=font,
                      ha="right" if slanted else "center", rotation_mode="anchor" if slanted else "default")
    matrix.set_yticks(ticks[::step], labels=rows[::step], fontsize=font)
    matrix.set_xlabel("Predicted label", fontsize=font + 1)
    matrix.set_ylabel("True label (images)", fontsize=font + 1)
    wrap = max(20, int(width * 72 / (0.6 * (font + 2))))  # characters of the title on one line
    figure.suptitle("\n".join(textwrap.wrap(title, wrap) + [_accuracies(counts)]), fontsize=font + 2)
    _write_counts(matrix, counts, shares, cell, font, lambda share: colours(norm(share)))
    _recall_bars(recall_axes, counts, support, font)
    return figure


def _shorten(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "…"


def _write_counts(axes, counts, shares, cell: float, font: float, colour_of) -> None:
    """Print the non-zero counts that fit a cell of `cell` inches at `font` points: all when
    a class's number of images would fit (so the choice depends on the test set, not on the
    model), else the off-diagonal ones when those fit, else none; white on dark cells."""
    def fits(count) -> bool:
        return len(str(int(count))) * DIGIT_EM * font / 72 <= 0.8 * cell

    off_diagonal = counts * (1 - np.eye(len(counts), dtype=counts.dtype))
    if fits(counts.sum(axis=1).max(initial=0)):
        chosen = counts
    else:
        chosen = off_diagonal if fits(off_diagonal.max(initial=0)) else np.zeros_like(counts)
    for row, col in zip(*np.nonzero(chosen)):
        red, green, blue, _ = colour_of(shares[row, col])
        dark = 0.2126 * red + 0.7152 * green + 0.0722 * blue < 0.5
        axes.text(col, row, str(counts[row, col]), ha="center", va="center", fontsize=font,
                  color="white" if dark else "black")


def _recall_bars(axes, counts, support, font: float) -> None:
    """Each class's recall (diagonal / row sum) as a horizontal bar on the matrix's rows, with
    its value; "no images" for a class without any."""
    rows = np.arange(len(support))
    recall = np.divide(np.diag(counts), support, out=np.zeros(len(support)), where=support > 0)
    axes.barh(rows[support > 0], recall[support > 0], height=0.8, color="tab:blue", alpha=0.35)
    for row in rows:
        axes.text(0.03, row, f"{recall[row]:.2f}" if support[row] else "no images", ha="left", va="center",
                  fontsize=font)
    axes.set_xlim(0.0, 1.0)
    axes.set_xticks([0.0, 0.5, 1.0], labels=["0", "0.5", "1"], fontsize=font)
    axes.set_xlabel("recall", fontsize=font + 1)
    axes.tick_params(axis="y", left=False, labelleft=False)
    axes.grid(axis="x", alpha=0.3)


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
