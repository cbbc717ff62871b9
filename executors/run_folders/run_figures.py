"""The images a run saves and logs: training images before and after augmentation, and
confusion matrices of the test set."""
from datasets.loading.preview import augmentation_preview
from utils.visualization import plot_confusion_matrix, show_batch


def save_augmentation_preview(logger, train_loader, class_names, data_cfg) -> None:
    """Log the same training images before and after augmentation as batch_augmentation.png,
    when the loader can show them (datasets/loading/preview.py)."""
    preview = augmentation_preview(train_loader)
    if preview is None:
        return
    originals, augmented, labels = preview
    figure = show_batch(originals, augmented, labels, class_names, data_cfg.mean, data_cfg.std)
    logger.save_plot(figure, "batch_augmentation.png")


def save_confusion(logger, confusion, class_names, name: str, title: str) -> None:
    """Log `confusion` (int [classes, classes], rows true, columns predicted) as image `name`."""
    logger.save_plot(plot_confusion_matrix(confusion, class_names, title=title), name)
