"""Figures: labels, cell texts, sizes, and no figure left open."""
import matplotlib.pyplot as plt
import numpy as np

from utils.visualization import plot_confusion_matrix


def test_confusion_matrix_figure_shows_names_and_counts(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    names = ["o", "ki", "american_pit_bull_terrier"]
    figure = plot_confusion_matrix(cm, names, title="test")
    axes = figure.axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == names
    assert [t.get_text() for t in axes.get_yticklabels()] == names
    assert axes.get_xlabel() == "Predicted label" and axes.get_ylabel() == "True label"
    assert [t.get_text() for t in axes.texts] == [str(v) for v in cm.flatten()]
    figure.savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_grows_with_classes_and_leaves_no_open_pyplot_figures():
    small = plot_confusion_matrix(np.eye(10, dtype=int), [str(i) for i in range(10)])
    large = plot_confusion_matrix(np.eye(37, dtype=int), [f"breed_{i}" for i in range(37)])
    assert large.get_figwidth() > small.get_figwidth()
    for _ in range(20):
        plot_confusion_matrix(np.eye(10, dtype=int), [str(i) for i in range(10)])
    assert plt.get_fignums() == []
