"""The config's transform lists, run as batched tensor operations on the training device.

`data.transforms.<split>` stays the single source of truth: each (name, kwargs) is looked
up here by name. A list splits into a deterministic prefix (leading Resize / CenterCrop,
done once per image when the split is cached: the pets test path) and the rest, which runs
per batch. A transform with no batched version, or with arguments the batched version does
not support, raises NotBatchable, which names it.
"""
from datasets.transforms.batch import ImageBatch
from datasets.transforms.batched_color import ColorJitterFactor, Normalize, ToTensor
from datasets.transforms.batched_geometry import Pad, RandomAffine, RandomCrop, RandomHorizontalFlip, RandomResizedCrop
from utils.errors import UnsuitableLoader

BATCHED_TRANSFORMS = {cls.__name__: cls for cls in (Pad, RandomCrop, RandomHorizontalFlip, RandomAffine,
                                                    RandomResizedCrop, ColorJitterFactor, ToTensor, Normalize)}
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


def build_batched_transforms(specs, mean=None, std=None) -> BatchedCompose:
    """BatchedCompose of `specs` (no deterministic prefix); Normalize without kwargs takes mean/std."""
    transforms = []
    for name, kwargs in specs:
        kwargs = dict(kwargs or {})
        if name not in BATCHED_TRANSFORMS:
            raise NotBatchable(f"the transform {name} has no batched version for data.loader='device' "
                               f"(batched: {', '.join(BATCHED_TRANSFORMS)})")
        if name == "Normalize":
            kwargs.setdefault("mean", mean)
            kwargs.setdefault("std", std)
        try:
            transforms.append(BATCHED_TRANSFORMS[name](**kwargs))
        except (TypeError, ValueError) as error:
            raise NotBatchable(f"the batched {name}({kwargs}) is not supported ({error})") from None
    return BatchedCompose(transforms)
