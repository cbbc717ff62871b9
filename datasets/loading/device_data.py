"""A dataset split as uint8 tensors for the device loader, and what that costs in memory.

In-memory datasets (KMNIST keeps `images` uint8 [N, H, W]) are used as they are. File-based
ones (Oxford pets lists `samples` of (path, label, category)) go through the decoded cache
(datasets/files/decoded_cache.py): every image decoded once, the split's deterministic transform
prefix (test: Resize 256 + CenterCrop 224) applied once, then held as one uint8 canvas.
"""
import os
from pathlib import Path

import torch

from datasets.files.decoded_cache import DEFAULT_MAX_SIDE, default_cache_dir, load_or_build
from datasets.transforms.building import build_transforms


def is_in_memory(dataset) -> bool:
    """The dataset holds its images as one uint8 tensor (no files to decode)."""
    return isinstance(getattr(dataset, "images", None), torch.Tensor)


def cache_max_side(data_cfg) -> int:
    """Longest side, in px, that the decoded cache keeps (data.cache_max_side, if the config has it)."""
    return data_cfg.get("cache_max_side") or DEFAULT_MAX_SIDE


def estimated_bytes(dataset, prefix_specs, data_cfg) -> int:
    """Bytes the split takes as uint8 on the device (an upper bound before it is cached)."""
    if is_in_memory(dataset):
        return dataset.images.numel()
    side = cache_max_side(data_cfg)
    crops = [kwargs["size"] for name, kwargs in prefix_specs if name == "CenterCrop"]
    if crops:
        side = crops[-1] if isinstance(crops[-1], int) else max(crops[-1])
    return len(dataset) * 3 * side * side


def device_memory_bytes(device: torch.device):
    """Total memory of `device` in bytes: the GPU's, or the machine's RAM for the CPU; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu" and hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return None


def split_tensors(dataset, prefix_specs, data_cfg, device):
    """(images uint8 [N, C, H, W] on `device`, sizes int64 [N, 2] on the CPU or None, labels int64 [N] on `device`).

    `sizes` is None when every image fills the canvas.
    """
    labels = dataset.labels.to(device)
    if is_in_memory(dataset):  # loaders.batched_refusal admits no prefix for these
        images = dataset.images
        return (images[:, None] if images.dim() == 3 else images).to(device), None, labels
    prefix = build_transforms(prefix_specs) if prefix_specs else None
    decoded = load_or_build(
        [path for path, *_ in dataset.samples], dataset.decode_training_image,
        name=f"{type(dataset).__name__}-{dataset.split}", cache_dir=Path(data_cfg.get("cache_dir") or default_cache_dir()),
        prefix=prefix, prefix_key=repr(prefix_specs),
        max_side=cache_max_side(data_cfg), workers=data_cfg.num_workers)
    sizes = decoded.sizes
    canvas = torch.tensor(decoded.images.shape[2:])
    uniform = bool((sizes == canvas).all())
    return decoded.images.to(device), None if uniform else sizes, labels
