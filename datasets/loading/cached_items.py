"""The per-item path over the decoded cache (`data.loader='cached'`): the CPU's fastest way
to feed image files (README, "Speed").

Worker processes take each image from the decoded cache (datasets/files/decoded_cache.py) instead
of decoding its JPEG, as a uint8 [H, W, 3] view of the cache's planes, and run the config's
transforms on 8-bit arrays (the "eight_bit" family of datasets/transforms/building.py):
RandomResizedCrop, RandomHorizontalFlip and ColorJitterFactor have array twins that draw the
same random numbers as the PIL transforms of the `workers` path; any other transform runs
through PIL.
ToTensor and Normalize then become one table look-up per channel, written straight into the
batch (NormalizeBatch). So the two paths give the same crops and flips, with pixels within a
level or two (the resize and the jitter are computed differently).
"""
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from datasets.transforms.building import build_transforms, normalize_kwargs
from utils.errors import UnsuitableLoader

try:  # OpenCV: only this path needs it, and per_item_plan says so when it is missing
    import cv2
except ModuleNotFoundError as missing:
    if missing.name != "cv2":
        raise
    cv2 = None

BATCH_STEPS = ("ToTensor", "Normalize")  # the list's tail, run per batch by NormalizeBatch


class NotCacheable(UnsuitableLoader):
    """A transform list the cached path cannot run."""


class CachedImages(Dataset):
    """Items {"image": transforms(uint8 [h, w, 3] RGB array), "label": int} of a split held as a decoded canvas.

    Args:
        images: uint8 [N, 3, H, W] on the CPU, each image at the top-left of the canvas.
        sizes: int64 [N, 2], (height, width) of each image, or None when all fill the canvas.
        labels: int64 [N].
        transforms: callable on a uint8 [h, w, 3] array (per_item_plan), or None; without
            them an item's image is a read-only view of the cache.
    """

    def __init__(self, images, sizes, labels, transforms=None, split="train"):
        self.images, self.sizes, self.labels = images, sizes, labels
        self.transforms, self.split = transforms, split

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        planes = self.images[index].numpy()
        if self.sizes is not None:
            height, width = self.sizes[index].tolist()
            planes = planes[:, :height, :width]
        pixels = planes.transpose(1, 2, 0)  # [h, w, 3], a view: steps copy only what they need
        pixels.flags.writeable = False
        return {"image": self.transforms(pixels) if self.transforms else pixels, "label": int(self.labels[index])}


class NormalizeBatch:
    """DataLoader collate_fn: items {"image": uint8 [H, W, 3], "label": int} -> {"image": float
    [B, 3, H, W], (pixel / 255 - mean) / std per channel, "label": int64 [B]}; mean/std None:
    scaled to [0, 1] only (a list ending in ToTensor).

    Each channel goes through a 256-entry float table (OpenCV's LUT) straight into its plane
    of the batch: one pass, each image while it is still in the CPU's cache. In a worker the
    batch is made in shared memory, so it reaches the main process without a copy (as torch's
    default collate does)."""

    def __init__(self, mean=None, std=None):
        mean = np.zeros(3) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(3) if std is None else np.asarray(std, dtype=np.float64)
        levels = np.arange(256, dtype=np.float64)[:, None]
        self.tables = [np.ascontiguousarray(column, dtype=np.float32) for column in ((levels / 255 - mean) / std).T]

    def __call__(self, items):
        shape = items[0]["image"].shape
        images = torch.empty((len(items), 3, *shape[:2]), dtype=torch.float32)
        if get_worker_info() is not None:
            images.share_memory_()
        for image, item in zip(images.numpy(), items):
            pixels = item["image"]
            if pixels.shape != shape:
                raise ValueError(f"cannot batch images of shapes {shape} and {pixels.shape}: the transforms "
                                 f"must end with images of one size (RandomResizedCrop or CenterCrop).")
            is_planes_view = pixels.strides[1] == 1  # a view of [3, H, W] planes, as the cache hands it over
            planes = [pixels[:, :, c] for c in range(3)] if is_planes_view else cv2.split(pixels)
            for plane, table, out in zip(planes, self.tables, image):
                cv2.LUT(plane, table, dst=out)
        return {"image": images, "label": torch.tensor([item["label"] for item in items], dtype=torch.long)}


def per_item_plan(specs, mean=None, std=None):
    """(per-item transform on uint8 [H, W, 3] arrays, NormalizeBatch) for a list of (name,
    kwargs) without its deterministic prefix: the list must end in ToTensor or ToTensor +
    Normalize (mean/std defaulting to `mean`/`std`), and those two may not appear earlier;
    the rest is built in the "eight_bit" family. Raises NotCacheable."""
    if cv2 is None:
        raise NotCacheable("the cached path needs OpenCV, which is not installed",
                           "pip install -r requirements.txt (opencv-python-headless), or use data.loader='workers'")
    names = [name for name, _ in specs]
    tail = 2 if names[-2:] == list(BATCH_STEPS) else 1 if names[-1:] == ["ToTensor"] else 0
    if tail == 0 or any(name in BATCH_STEPS for name in names[:-tail]):
        raise NotCacheable(f"the transform list {names} does not end in ToTensor (+ Normalize) alone, "
                           f"which the cached path moves to the batch")
    normalize = NormalizeBatch()
    if tail == 2:
        kwargs = normalize_kwargs(specs[-1][1] or {}, mean, std, "data.transforms")
        normalize = NormalizeBatch(kwargs["mean"], kwargs["std"])
    return build_transforms(specs[:-tail], family="eight_bit"), normalize
