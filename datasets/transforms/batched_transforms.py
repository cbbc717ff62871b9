"""The batched family of the config's transforms (built by datasets/transforms/building.py):
BATCHED_TRANSFORMS, the batched twin of each config name, run as tensor operations on the
training device, and BatchedCompose, their pipeline.

A list splits into a deterministic prefix (leading Resize / CenterCrop, done once per image
when the split is cached: the pets test path) and the rest, which runs per batch.
"""
from datasets.transforms.batch import ImageBatch
from datasets.transforms.batched_color import BatchedColorJitterFactor, Normalize, ToTensor
from datasets.transforms.batched_geometry import Pad, RandomAffine, RandomCrop, RandomHorizontalFlip, RandomResizedCrop
from utils.errors import UnsuitableLoader

BATCHED_TRANSFORMS = {"Pad": Pad, "RandomCrop": RandomCrop, "RandomHorizontalFlip": RandomHorizontalFlip,
                      "RandomAffine": RandomAffine, "RandomResizedCrop": RandomResizedCrop,
                      "ColorJitterFactor": BatchedColorJitterFactor, "ToTensor": ToTensor, "Normalize": Normalize}
PREFIX_TRANSFORMS = ("Resize", "CenterCrop")  # deterministic: applied once, when a split is cached


class NotBatchable(UnsuitableLoader):
    """A transform of the config has no batched version (the device loader cannot run it)."""


def split_prefix(specs):
    """(leading deterministic specs, the rest) of a list of (name, kwargs)."""
    count = 0
    while count < len(specs) and specs[count][0] in PREFIX_TRANSFORMS:
        count += 1
    return list(specs[:count]), list(specs[count:])


class BatchedCompose:
    """Batched transforms applied in order; call with (ImageBatch, CPU generator) -> float [B, C, H, W]."""

    def __init__(self, transforms):
        self.transforms = transforms

    @property
    def handles_ragged(self) -> bool:
        """Whether the first transform accepts images of different sizes on one canvas."""
        return bool(self.transforms) and self.transforms[0].handles_ragged

    def __call__(self, batch: ImageBatch, generator):
        for transform in self.transforms:
            batch = transform(batch, generator)
        return ToTensor()(batch, generator).images

    def __repr__(self):
        return f"BatchedCompose({', '.join(type(t).__name__ for t in self.transforms)})"
