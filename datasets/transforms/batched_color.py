"""Batched, per-sample colour transforms: BatchedColorJitterFactor (the config's
ColorJitterFactor), ToTensor and Normalize on a whole batch [B, C, H, W] at once; the twins
of datasets/transforms/color_jitter.py and torchvision's.

Colour arithmetic runs in float in [0, 1]: brightness multiplies RGB, saturation blends with
the grey image (ITU-R 601 weights), hue multiplies the HSV hue angle (in turns, modulo one
turn), each followed by clamping to [0, 1]. Brightness and saturation then drop to the 8-bit
level below, as PIL's Image.blend truncates in the per-item path: without it the per-item
images come out about 0.45/255 darker per step, over 1% of a dark channel's mean. Hue keeps
its full precision (PIL holds it in 8-bit units; the difference has no systematic sign).
"""
import torch

from datasets.transforms.batch import ImageBatch, to_device_nonblocking, to_unit_float
from datasets.transforms.color_jitter import PAPER_RANGE

GREY_WEIGHTS = (0.2989, 0.587, 0.114)
HUE_SEXTANT_OFFSETS = (5.0, 3.0, 1.0)  # HSV -> RGB: channel c = V - V*S*clamp(min(k, 4 - k), 0, 1), k = (n_c + 6h) mod 6


def truncate_to_8_bits(images):
    """Float [0, 1] images moved down to the 8-bit level at or below each value (PIL's blend)."""
    return torch.floor(images * 255 + 1e-3).div_(255)


def adjust_brightness(images, factors):
    """images float [n, 3, H, W] in [0, 1] times factors [n]."""
    return truncate_to_8_bits((images * factors.view(-1, 1, 1, 1)).clamp_(0, 1))


def adjust_saturation(images, factors):
    """Blend with the grey image: grey + factor * (image - grey)."""
    weights = to_device_nonblocking(torch.tensor(GREY_WEIGHTS, dtype=images.dtype), images.device).view(1, 3, 1, 1)
    grey = torch.round((images * weights).sum(dim=1, keepdim=True) * 255) / 255  # PIL's "L" image
    return truncate_to_8_bits((grey + factors.view(-1, 1, 1, 1) * (images - grey)).clamp_(0, 1))


def scale_hue(images, factors):
    """HSV hue (in turns) multiplied by factors [n], modulo one turn; saturation and value kept."""
    top, argmax = images.max(dim=1)
    chroma = top - images.amin(dim=1)
    # Hue in sextants [0, 6): 2*argmax + (next channel - the one after) / chroma.
    differences = images[:, [1, 2, 0]] - images[:, [2, 0, 1]]
    along = differences.gather(1, argmax[:, None])[:, 0] / chroma.clamp_min(1e-12)
    sextants = torch.remainder(2 * argmax + along, 6)
    sextants = torch.remainder(sextants * factors.view(-1, 1, 1), 6)
    offsets = to_device_nonblocking(torch.tensor(HUE_SEXTANT_OFFSETS, dtype=images.dtype), images.device)
    offsets = offsets.view(1, 3, 1, 1)
    k = torch.remainder(offsets + sextants[:, None], 6)
    return top[:, None] - chroma[:, None] * torch.minimum(k, 4 - k).clamp_(0, 1)


ADJUSTMENTS = {"brightness": adjust_brightness, "saturation": adjust_saturation, "hue": scale_hue}


class BatchedColorJitterFactor:
    """Brightness, saturation and hue multiplied by factors drawn per image from the given
    (low, high) ranges (None: unchanged), in a random order per image. Returns float [0, 1]."""

    handles_ragged = False

    def __init__(self, brightness=PAPER_RANGE, saturation=PAPER_RANGE, hue=PAPER_RANGE):
        self.ranges = {"brightness": brightness, "saturation": saturation, "hue": hue}

    def sample_params(self, count, generator):
        """(factors {name: float [count]}, order int64 [count, 3]: indices into ADJUSTMENTS, first applied first)."""
        factors = {}
        for name, bounds in self.ranges.items():
            if bounds is not None:
                low, high = bounds
                factors[name] = low + (high - low) * torch.rand(count, generator=generator)
        order = torch.rand(count, 3, generator=generator).argsort(dim=1)
        return factors, order

    def apply(self, images, factors, order):
        """Adjust float [B, 3, H, W] images; the groups of images that take an adjustment at each
        position are found on the CPU, so nothing waits for the device."""
        unit = to_unit_float(images)
        images = unit.clone() if unit is images else unit  # adjusted in place below; never the caller's tensor
        names = list(ADJUSTMENTS)
        for position in range(3):
            for index, name in enumerate(names):
                if name not in factors:
                    continue
                chosen = (order[:, position] == index).nonzero()[:, 0]
                if len(chosen) == 0:
                    continue
                on_device = to_device_nonblocking(chosen, images.device)
                adjusted = ADJUSTMENTS[name](images.index_select(0, on_device),
                                             to_device_nonblocking(factors[name][chosen], images.device))
                images.index_copy_(0, on_device, adjusted)
        return images

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        return ImageBatch(self.apply(batch.images, *self.sample_params(len(batch.images), generator)))


class ToTensor:
    """uint8 0-255 -> float 0-1 (float batches pass unchanged), as torchvision's ToTensor."""

    handles_ragged = False

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        return ImageBatch(to_unit_float(batch.images))


class Normalize:
    """(image - mean) / std per channel, on float [0, 1] images."""

    handles_ragged = False

    def __init__(self, mean, std, inplace=False):
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        images = to_unit_float(batch.images)
        mean = to_device_nonblocking(torch.tensor(self.mean), images.device).view(1, -1, 1, 1)
        std = to_device_nonblocking(torch.tensor(self.std), images.device).view(1, -1, 1, 1)
        return ImageBatch((images - mean) / std)
