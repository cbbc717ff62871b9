"""A few training items before and after their transforms, for show_batch."""
import torch

from datasets.loading.item_seeds import dataset_of


def augmentation_preview(loader, count=8):
    """(originals: list of PIL images or uint8 arrays, augmented: float [N, C, H, W], labels:
    list of N ints) for `count` training items spread over the split; None when the loader
    cannot show its items before augmentation.

    A device loader previews itself; a DataLoader over a dataset that keeps its transforms in
    `dataset.transforms` (KMNIST, OxfordIIITPet, CachedImages; wrapped in SeededItems) is
    previewed through the dataset and batched by its own collate_fn.
    """
    if hasattr(loader, "preview"):
        return loader.preview(count)
    dataset = dataset_of(loader)
    transforms = getattr(dataset, "transforms", None)
    if transforms is None:
        return None
    step = max(1, len(dataset) // count)
    indices = list(range(0, len(dataset), step))[:count]
    dataset.transforms = None
    try:
        raw = [dataset[i] for i in indices]
    finally:
        dataset.transforms = transforms
    with torch.random.fork_rng():  # the preview must not change the training run's random stream
        batch = loader.collate_fn([{"image": transforms(item["image"]), "label": item["label"]} for item in raw])
    augmented = batch["image"]  # the loader's own collation: the cached path normalises there
    return [item["image"] for item in raw], augmented, [item["label"] for item in raw]
