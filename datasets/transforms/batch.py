"""The batch that batched transforms pass along: images on a device, and where each one lies."""
from typing import NamedTuple, Optional

import torch


class ImageBatch(NamedTuple):
    """images: uint8 (0-255) or float (0-1) [B, C, H, W] on any device.
    sizes: int64 [B, 2] on the CPU, (height, width) of each image's content at the top-left
    of the canvas, or None when every image fills the canvas."""

    images: torch.Tensor
    sizes: Optional[torch.Tensor] = None


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0-255 -> float32 0-1; float images are returned as they are."""
    return images if images.is_floating_point() else images.float().div_(255)


def to_device_nonblocking(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor (random parameters, indices, constants) on `device` without the host
    waiting for the GPU: a copy from pageable memory would first wait for the stream."""
    if device.type != "cuda":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)
