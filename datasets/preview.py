"""A few training items before and after their transforms, for show_batch."""
import torch


def augmentation_preview(dataset, count=8):
    """(originals: list of PIL images, augmented: float [N, C, H, W], labels: list of N ints)
    for the first `count` items of `dataset`, spread over the dataset.

    The dataset must keep its transforms in `dataset.transforms` (KMNIST, OxfordIIITPet).
    """
    step = max(1, len(dataset) // count)
    indices = list(range(0, len(dataset), step))[:count]
    transforms, dataset.transforms = dataset.transforms, None
    try:
        raw = [dataset[i] for i in indices]
    finally:
        dataset.transforms = transforms
    with torch.random.fork_rng():  # the preview must not change the training run's random stream
        augmented = torch.stack([transforms(item["image"]) for item in raw])
    return [item["image"] for item in raw], augmented, [item["label"] for item in raw]
