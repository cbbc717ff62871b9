"""The per-item path over the decoded cache (`data.loader='cached'`): the CPU's fastest way
to feed image files (README, "Speed").

Worker processes take each image from the decoded cache (datasets/decoded_cache.py) instead
of decoding its JPEG, run the config's PIL transforms on it with ColorJitterFactor done on
8-bit arrays by OpenCV (datasets/color_jitter.py), and hand over uint8 images; ToTensor and
Normalize then run once per batch, in the worker (NormalizeBatch), instead of once per
image. The transforms draw the same random numbers as on the `workers` path, so for images
the cache keeps at full size the two paths give the same crops and flips, and colours
within a few levels.
"""
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from datasets.color_jitter import ColorJitterFactor8Bit
from datasets.transforms import build_transforms
from utils.errors import ConfigError

BATCH_STEPS = ("ToTensor", "Normalize")  # the list's tail, run per batch by NormalizeBatch
EIGHT_BIT_TWINS = {"ColorJitterFactor": ColorJitterFactor8Bit}


class NotCacheable(ConfigError):
    """A transform list the cached path cannot run."""


class CachedImages(Dataset):
    """Items {"image": transforms(RGB PIL image), "label": int} of a split held as a decoded canvas.

    Args:
        images: uint8 [N, 3, H, W] on the CPU, each image at the top-left of the canvas.
        sizes: int64 [N, 2], (height, width) of each image, or None when all fill the canvas.
        labels: int64 [N].
        transforms: callable on an RGB PIL image (per_item_transforms), or None.
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
        image = Image.merge("RGB", [Image.fromarray(plane) for plane in planes])
        return {"image": self.transforms(image) if self.transforms else image, "label": int(self.labels[index])}


class PILToUint8:
    """RGB PIL image -> uint8 tensor [3, H, W] (ToTensor without the conversion to float)."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)

    def __repr__(self):
        return f"{type(self).__name__}()"


class NormalizeBatch:
    """DataLoader collate_fn: items {"image": uint8 [3, H, W], "label": int} -> {"image": float
    [B, 3, H, W] scaled to [0, 1] then (x - mean) / std per channel, as one multiply-add,
    "label": int64 [B]}; mean/std None: scaled only (a list ending in ToTensor).

    Images are converted one at a time, each while it is still in the CPU's cache (a third
    faster than converting the stacked batch), straight into the batch; in a worker the batch
    is made in shared memory, so it reaches the main process without a copy (as torch's
    default collate does)."""

    def __init__(self, mean=None, std=None):
        mean = torch.zeros(3) if mean is None else torch.tensor(mean, dtype=torch.float32)
        std = torch.ones(3) if std is None else torch.tensor(std, dtype=torch.float32)
        self.scale, self.shift = (1 / (255 * std)).view(-1, 1, 1), (-mean / std).view(-1, 1, 1)

    def __call__(self, items):
        images = torch.empty((len(items), *items[0]["image"].shape), dtype=torch.float32)
        if get_worker_info() is not None:
            images.share_memory_()
        for image, item in zip(images, items):
            image.copy_(item["image"]).mul_(self.scale).add_(self.shift)
        return {"image": images, "label": torch.tensor([item["label"] for item in items], dtype=torch.long)}


def per_item_plan(specs, mean=None, std=None):
    """(per-item transform, NormalizeBatch) for a list of (name, kwargs) without its
    deterministic prefix: the list must end in ToTensor or ToTensor + Normalize, and those
    two may not appear earlier; ColorJitterFactor becomes its 8-bit twin. Raises NotCacheable."""
    names = [name for name, _ in specs]
    tail = 2 if names[-2:] == list(BATCH_STEPS) else 1 if names[-1:] == ["ToTensor"] else 0
    if tail == 0 or any(name in BATCH_STEPS for name in names[:-tail]):
        raise NotCacheable(f"the transform list {names} does not end in ToTensor (+ Normalize) alone, "
                           f"which the cached path moves to the batch; use data.loader='workers'.")
    normalize = NormalizeBatch()
    if tail == 2:
        kwargs = dict(specs[-1][1] or {})
        normalize = NormalizeBatch(kwargs.get("mean", mean), kwargs.get("std", std))
    pil_steps = build_transforms(specs[:-tail], classes=EIGHT_BIT_TWINS)
    pil_steps.transforms.append(PILToUint8())
    return pil_steps, normalize
