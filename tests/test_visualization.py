"""Figures: labels, cell texts, sizes, and no figure left open."""
import matplotlib.pyplot as plt
import numpy as np

from utils.visualization import plot_confusion_matrix, show_batch


def test_confusion_matrix_figure_shows_names_and_counts(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    names = ["o", "ki", "american_pit_bull_terrier"]
    figure = plot_confusion_matrix(cm, names, title="test")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == names
    assert [t.get_text() for t in axes.get_yticklabels()] == ["o (6)", "ki (10)", "american_pit_bull_terrier (9)"]
    assert axes.get_xlabel() == "Predicted label" and axes.get_ylabel() == "True label (images)"
    assert axes.get_title() == "test\naccuracy 0.840, balanced accuracy 0.844 (25 images)"
    assert [t.get_text() for t in axes.texts] == [str(v) for v in cm.flatten() if v]  # no zeros printed
    figure.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_37_classes_are_coloured_by_recall_with_counts_only_where_non_zero():
    """A pets-like test set: three classes with images (98, 100, 100), 34 without."""
    cm = np.zeros((37, 37), dtype=int)
    cm[0, 0], cm[0, 5], cm[1, 1], cm[1, 0], cm[5, 5], cm[5, 30] = 90, 8, 99, 1, 50, 50
    figure = plot_confusion_matrix(cm, [f"breed_{i}" for i in range(37)])
    axes = figure.axes[0]
    assert len(axes.texts) == 6 and sorted(t.get_text() for t in axes.texts) == sorted(["90", "8", "99", "1", "50",
                                                                                          "50"])
    shown = axes.get_images()[0].get_array()
    assert np.allclose(shown[0, 0], 90 / 98) and np.allclose(shown[5, 30], 0.5) and np.allclose(shown[1, 0], 0.01)
    assert shown.mask[2].all() and not shown.mask[0].any()  # a class without images is grey, not "recall 0"
    assert axes.get_images()[0].get_clim() == (0.0, 1.0)
    white = [t.get_text() for t in axes.texts if t.get_color() == "white"]
    assert sorted(white) == ["90", "99"]  # dark cells (share above one half) get white text


def test_figure_grows_with_classes_and_leaves_no_open_pyplot_figures():
    small = plot_confusion_matrix(np.eye(10, dtype=int), [str(i) for i in range(10)])
    large = plot_confusion_matrix(np.eye(37, dtype=int), [f"breed_{i}" for i in range(37)])
    assert large.get_figwidth() > small.get_figwidth() and large.get_figheight() >= 0.32 * 37
    for _ in range(20):
        plot_confusion_matrix(np.eye(10, dtype=int), [str(i) for i in range(10)])
    assert plt.get_fignums() == []


def test_an_empty_confusion_matrix_still_draws(tmp_path):
    figure = plot_confusion_matrix(np.zeros((3, 3), dtype=int), ["a", "b", "c"])
    assert len(figure.axes[0].texts) == 0 and figure.axes[0].get_title().endswith("no images")
    figure.savefig(tmp_path / "empty.png")


def test_show_batch_pairs_each_image_before_and_after():
    import torch
    from PIL import Image

    from datasets.preview import augmentation_preview
    from datasets.transforms import build_transforms

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
