"""Figures: labels, cell texts, sizes, and no figure left open; the confusion matrix as people
see it (the saved PNG's pixel size, every text's size in pixels, the recall bars against numpy,
counts printed only where they fit)."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.text import Text
from PIL import Image

from datasets.oxford_pet import CLASSES
from utils.visualization import plot_confusion_matrix, show_batch


def test_confusion_matrix_figure_shows_names_and_counts(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    names = ["o", "ki", "american_pit_bull_terrier"]
    figure = plot_confusion_matrix(cm, names, title="test")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == names
    assert [t.get_text() for t in axes.get_yticklabels()] == ["o (6)", "ki (10)", "american_pit_bull_terrier (9)"]
    assert axes.get_xlabel() == "Predicted label" and axes.get_ylabel() == "True label (images)"
    assert figure.get_suptitle() == "test\naccuracy 0.840, balanced accuracy 0.844 (25 images)"
    assert [t.get_text() for t in axes.texts] == [str(v) for v in cm.flatten() if v]  # no zeros printed
    figure.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_37_classes_are_coloured_by_recall_with_counts_only_where_non_zero():
    """A pets-like test set: three classes with images (98, 100, 100), 34 without."""
    cm = np.zeros((37, 37), dtype=int)
    cm[0, 0], cm[0, 5], cm[1, 1], cm[1, 0], cm[5, 5], cm[5, 30] = 90, 8, 99, 1, 50, 50
    figure = plot_confusion_matrix(cm, [f"breed_{i}" for i in range(37)])
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.texts] == ["8", "1", "50"]  # 3 digits do not fit: no diagonal
    shown = axes.get_images()[0].get_array()
    assert np.allclose(shown[0, 0], 90 / 98) and np.allclose(shown[5, 30], 0.5) and np.allclose(shown[1, 0], 0.01)
    assert shown.mask[2].all() and not shown.mask[0].any()  # a class without images is grey, not "recall 0"
    assert axes.get_images()[0].get_clim() == (0.0, 1.0)
    white = [t.get_text() for t in axes.texts if t.get_color() == "white"]
    assert white == ["50"]  # dark cells (share of a half and more) get white text
    recall_texts = [t.get_text() for t in figure.axes[1].texts]
    assert recall_texts[:3] == ["0.92", "0.99", "no images"] and recall_texts[5] == "0.50"


def test_figure_size_is_bounded_whatever_the_classes_and_leaves_no_open_pyplot_figures():
    small = plot_confusion_matrix(np.eye(10, dtype=int), [str(i) for i in range(10)])
    large = plot_confusion_matrix(np.eye(37, dtype=int), [f"breed_{i}" for i in range(37)])
    huge = plot_confusion_matrix(np.eye(150, dtype=int), [f"class_{i}" for i in range(150)])
    assert small.get_figwidth() < large.get_figwidth() <= 12 and large.get_figheight() <= 11
    assert huge.get_figwidth() <= 12 and huge.get_figheight() <= 11
    shown = [t.get_text() for t in huge.axes[0].get_yticklabels()]  # rows thinner than the font: every k-th name
    assert shown[:2] == ["class_0 (1)", "class_3 (1)"] and len(huge.axes[0].texts) == 0
    long_name = plot_confusion_matrix(np.eye(2, dtype=int), ["a" * 40, "b"])
    assert [t.get_text() for t in long_name.axes[0].get_xticklabels()] == ["a" * 25 + "…", "b"]
    for _ in range(20):
        plot_confusion_matrix(np.eye(10, dtype=int), [str(i) for i in range(10)])
    assert plt.get_fignums() == []


def test_an_empty_confusion_matrix_still_draws(tmp_path):
    figure = plot_confusion_matrix(np.zeros((3, 3), dtype=int), ["a", "b", "c"])
    assert len(figure.axes[0].texts) == 0 and figure.get_suptitle().endswith("no images")
    figure.savefig(tmp_path / "empty.png")


def test_show_batch_pairs_each_image_before_and_after():
    import torch

    from datasets.loading.preview import augmentation_preview
    from datasets.transforms.building import build_transforms

    class Items:
        """Four 6x5 RGB images of one colour each; the transform flips and normalises."""

        colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]

        def __init__(self):
            self.transforms = build_transforms([("RandomHorizontalFlip", {"p": 1.0}), ("ToTensor", {}),
                                                ("Normalize", {})], mean=[0.5] * 3, std=[0.25] * 3)

        def __len__(self):
            return 4

        def __getitem__(self, index):
            image = Image.new("RGB", (6, 5), self.colours[index])
            return {"image": self.transforms(image) if self.transforms else image, "label": index % 2}

    dataset = Items()
    originals, augmented, labels = augmentation_preview(torch.utils.data.DataLoader(dataset), count=4)
    assert dataset.transforms is not None and labels == [0, 1, 0, 1]
    assert augmented.shape == (4, 3, 5, 6) and originals[2].getpixel((0, 0)) == (0, 0, 255)
    figure = show_batch(originals, augmented, labels, ["cat", "dog"], mean=[0.5] * 3, std=[0.25] * 3)
    axes = figure.axes
    assert len(axes) == 8 and [a.get_title() for a in axes[:4]] == ["cat", "dog", "cat", "dog"]
    after = axes[6].get_images()[0].get_array()  # bottom row, third image: un-normalised blue
    assert np.allclose(np.asarray(after)[..., 2], 1.0) and np.allclose(np.asarray(after)[..., 0], 0.0)


KMNIST = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]


def confusion(classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    """A test set of `per_class` images a class, about 80% right, the errors spread at random."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((classes, classes), dtype=np.int64)
    for row in range(classes):
        counts[row] = np.bincount(np.where(rng.random(per_class) < 0.8, row, rng.integers(0, classes, per_class)),
                                  minlength=classes)
    return counts


def visible_texts(figure) -> list:
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("saved_as", ["logger", "evaluate"])
def test_37_breeds_fit_a_notebook_cell_with_no_text_under_8_px(tmp_path, saved_as):
    """The Logger saves with bbox_inches="tight" at the figure's dpi, evaluate.py at dpi=100."""
    title = "Test set: /home/someone/a/rather/long/path/to/runs/resnet50_tricks_seed0_2/best.pt " * 2
    figure = plot_confusion_matrix(confusion(37, 100), list(CLASSES), title=title)
    path = tmp_path / "cm.png"
    if saved_as == "logger":
        figure.savefig(path, format="png", bbox_inches="tight")
    else:
        figure.savefig(path, dpi=100)
    width, height = Image.open(path).size
    assert 900 <= width <= 1200 and 800 <= height <= 1100, (width, height)
    texts = visible_texts(figure)
    assert len(texts) > 2 * 37  # the names, counts and recall values were drawn
    small = [(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() * 100 / 72 < 8]
    assert small == []
    names = [t.get_text() for t in figure.axes[0].get_xticklabels()]
    assert names == list(CLASSES)  # every breed named, none cut (26 characters at most)
    plt.close(figure)


def test_37_breeds_print_the_confusions_and_leave_the_diagonal_to_the_recall_bar():
    counts = confusion(37, 100)
    figure = plot_confusion_matrix(counts, list(CLASSES))
    shown = sorted((round(t.get_position()[1]), round(t.get_position()[0]), int(t.get_text()))
                   for t in figure.axes[0].texts)
    rows, cols = np.nonzero(counts)
    expected = sorted((r, c, counts[r, c]) for r, c in zip(rows, cols) if r != c)
    assert shown == expected  # a class's 100 images (3 digits) would not fit a 0.19 in cell: diagonal left out


def test_recall_bars_are_the_diagonal_over_the_row_sums():
    counts = np.random.default_rng(7).integers(0, 30, size=(37, 37))
    counts[4] = 0  # a class without images
    figure = plot_confusion_matrix(counts, [f"breed_{i}" for i in range(37)])
    bars = figure.axes[1]
    assert bars.get_shared_y_axes().joined(bars, figure.axes[0])  # one row per class, beside the matrix
    rows = [i for i in range(37) if i != 4]
    expected = np.array([counts[i, i] / counts[i].sum() for i in rows])
    widths = np.array([patch.get_width() for patch in bars.patches])
    centres = [patch.get_y() + patch.get_height() / 2 for patch in bars.patches]
    assert widths == pytest.approx(expected, abs=1e-12) and centres == pytest.approx(rows)
    values = [t.get_text() for t in bars.texts]
    assert values == [f"{v:.2f}" for v in expected[:4]] + ["no images"] + [f"{v:.2f}" for v in expected[4:]]
    plt.close(figure)


def test_kmnist_prints_every_count_at_a_readable_size(tmp_path):
    counts = confusion(10, 1000, seed=3)
    figure = plot_confusion_matrix(counts, KMNIST)
    figure.savefig(tmp_path / "cm.png", format="png", bbox_inches="tight")
    assert sorted(int(t.get_text()) for t in figure.axes[0].texts) == sorted(counts[counts > 0].tolist())
    assert {t.get_fontsize() for t in figure.axes[0].texts} == {10.0}
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == KMNIST
    assert all(t.get_rotation() == 0 for t in figure.axes[0].get_xticklabels())  # short names stand upright
    assert Image.open(tmp_path / "cm.png").size[0] <= 1000
    plt.close(figure)
