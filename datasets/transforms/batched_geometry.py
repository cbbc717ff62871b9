"""Batched, per-sample geometric transforms: Pad, RandomCrop, RandomHorizontalFlip,
RandomAffine and RandomResizedCrop on a whole batch [B, C, H, W] at once.

Each sample gets its own random parameters, drawn from a CPU `torch.Generator` (so batches
are the same on every device and the drawing never waits for a GPU) with the distributions
of the torchvision transforms of the same names. Images keep their dtype except in
RandomResizedCrop, which returns float in [0, 1]. A transform whose `handles_ragged` is True
also accepts batches whose images fill only the top-left `sizes` of the canvas (the decoded
pets cache); the others need images that fill their canvas.
"""
import math

import torch
from torch.nn import functional as F
from torchvision.ops import roi_align

from datasets.transforms.batch import ImageBatch, to_device_nonblocking, to_unit_float


def _uniform(low, high, shape, generator):
    """float64 [shape] uniform in [low, high) on the CPU."""
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


def _pair(value, name):
    if isinstance(value, (int, float)):
        return float(value), float(value)
    if len(value) != 2:
        raise ValueError(f"{name} must be a number or a pair, not {value!r}")
    return float(value[0]), float(value[1])


class Pad:
    """Constant padding of every image: `padding` is an int (all sides), (left/right,
    top/bottom) or (left, top, right, bottom), as in torchvision's Pad."""

    handles_ragged = False

    def __init__(self, padding, fill=0, padding_mode="constant"):
        if padding_mode != "constant" or not isinstance(fill, (int, float)):
            raise ValueError("only padding_mode='constant' with a number as fill is batched")
        padding = [padding] * 4 if isinstance(padding, int) else list(padding)
        if len(padding) == 2:
            padding = padding * 2
        left, top, right, bottom = padding
        self.pad, self.fill = (left, right, top, bottom), fill

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        return ImageBatch(F.pad(batch.images, self.pad, value=self.fill))


class RandomCrop:
    """A `size` crop at a uniformly random position per image (after optional Pad)."""

    handles_ragged = False

    def __init__(self, size, padding=None, fill=0, padding_mode="constant"):
        self.height, self.width = (size, size) if isinstance(size, int) else tuple(size)
        self.pad = Pad(padding, fill, padding_mode) if padding else None

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        if self.pad is not None:
            batch = self.pad(batch, generator)
        images = batch.images
        count, _, height, width = images.shape
        if height < self.height or width < self.width:
            raise ValueError(f"RandomCrop of {self.height}x{self.width} on {height}x{width} images")
        top = torch.randint(0, height - self.height + 1, (count,), generator=generator)
        left = torch.randint(0, width - self.width + 1, (count,), generator=generator)
        device = images.device
        rows = to_device_nonblocking(top[:, None] + torch.arange(self.height), device)  # [B, h]
        cols = to_device_nonblocking(left[:, None] + torch.arange(self.width), device)  # [B, w]
        samples = torch.arange(count, device=device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=device)[None, :, None, None]
        return ImageBatch(images[samples, channels, rows[:, None, :, None], cols[:, None, None, :]])


class RandomHorizontalFlip:
    """Mirror each image left-right with probability `p`."""

    handles_ragged = False

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        flip = torch.rand(len(batch.images), generator=generator) < self.p
        flip = to_device_nonblocking(flip, batch.images.device)[:, None, None, None]
        return ImageBatch(torch.where(flip, batch.images.flip(-1), batch.images))


class RandomAffine:
    """Rotation by U(-degrees, degrees), translation by whole pixels up to `translate` of the
    size, scaling by U(scale), about the image centre, as torchvision's RandomAffine on a
    tensor (same inverse-matrix convention, grid_sample with zero fill). No shear."""

    handles_ragged = False

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation="nearest", fill=0):
        if shear or fill != 0:
            raise ValueError("shear and a non-zero fill are not batched")
        self.degrees = (-float(degrees), float(degrees)) if isinstance(degrees, (int, float)) else _pair(degrees, "degrees")
        self.translate, self.scale = translate, scale
        self.mode = getattr(interpolation, "value", interpolation)
        if self.mode not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation {interpolation!r} is not batched (nearest or bilinear)")

    def sample_params(self, count, height, width, generator):
        """(angle in degrees, tx, ty in whole pixels, scale), each float64 [count]."""
        angle = _uniform(*self.degrees, count, generator)
        tx = ty = torch.zeros(count, dtype=torch.float64)
        if self.translate is not None:
            max_dx, max_dy = self.translate[0] * width, self.translate[1] * height
            tx = torch.round(_uniform(-max_dx, max_dx, count, generator))
            ty = torch.round(_uniform(-max_dy, max_dy, count, generator))
        scale = _uniform(*self.scale, count, generator) if self.scale is not None else torch.ones(count, dtype=torch.float64)
        return angle, tx, ty, scale

    def apply(self, images, angle, tx, ty, scale):
        """`images` [B, C, H, W] moved by per-sample parameters (float64 [B] each)."""
        count, _, height, width = images.shape
        radians = torch.deg2rad(angle)
        cos, sin = torch.cos(radians) / scale, torch.sin(radians) / scale
        # torchvision's inverse affine matrix about the centre, in pixels: [[cos, sin, m2], [-sin, cos, m5]].
        theta = torch.stack([torch.stack([cos, sin, -cos * tx - sin * ty], 1),
                             torch.stack([-sin, cos, sin * tx - cos * ty], 1)], 1)  # [B, 2, 3]
        theta = theta / torch.tensor([[0.5 * width], [0.5 * height]], dtype=torch.float64)
        xs = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
        ys = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
        base = torch.stack([xs.expand(height, width), ys[:, None].expand(height, width),
                            torch.ones(height, width, dtype=torch.float64)], -1)  # [H, W, 3]
        grid = to_device_nonblocking(torch.einsum("hwk,bjk->bhwj", base, theta).float(), images.device)
        moved = F.grid_sample(images.float(), grid, mode=self.mode, padding_mode="zeros", align_corners=False)
        return moved.round().to(images.dtype) if not images.is_floating_point() else moved

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        count, _, height, width = batch.images.shape
        return ImageBatch(self.apply(batch.images, *self.sample_params(count, height, width, generator)))


class RandomResizedCrop:
    """A crop of U(scale) of each image's area with log-uniform aspect ratio in `ratio`
    (10 tries, then the centre crop torchvision falls back to), resized to `size`.

    The resize is torchvision.ops.roi_align with aligned pixel centres and ceil(crop/size)
    bilinear samples averaged per output pixel per axis: bilinear when enlarging, an
    antialiasing box average when shrinking. Returns float in [0, 1].
    """

    handles_ragged = True
    TRIES = 10

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation="bilinear", antialias=True):
        if getattr(interpolation, "value", interpolation) != "bilinear" or not antialias:
            raise ValueError("only bilinear interpolation with antialias is batched")
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.scale, self.ratio = _pair(scale, "scale"), _pair(ratio, "ratio")

    def sample_boxes(self, heights, widths, generator):
        """(top, left, height, width), int64 [B] each, of one crop per image of heights x widths."""
        heights, widths = heights.double(), widths.double()
        count = len(heights)
        area = (heights * widths)[:, None]
        target = area * _uniform(*self.scale, (count, self.TRIES), generator)
        aspect = torch.exp(_uniform(math.log(self.ratio[0]), math.log(self.ratio[1]), (count, self.TRIES), generator))
        w, h = torch.round(torch.sqrt(target * aspect)), torch.round(torch.sqrt(target / aspect))
        fits = (w > 0) & (h > 0) & (w <= widths[:, None]) & (h <= heights[:, None])
        first = fits.double().argmax(dim=1, keepdim=True)
        w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
        top = torch.floor(torch.rand(count, generator=generator, dtype=torch.float64) * (heights - h + 1))
        left = torch.floor(torch.rand(count, generator=generator, dtype=torch.float64) * (widths - w + 1))
        # No try fits: the whole image, cut to the nearest allowed aspect ratio, centred.
        in_ratio = widths / heights
        fallback_w = torch.where(in_ratio > self.ratio[1], torch.round(heights * self.ratio[1]), widths)
        fallback_h = torch.where(in_ratio < self.ratio[0], torch.round(widths / self.ratio[0]), heights)
        failed = ~fits.any(dim=1)
        w, h = torch.where(failed, fallback_w, w), torch.where(failed, fallback_h, h)
        top = torch.where(failed, torch.div(heights - h, 2, rounding_mode="floor"), top)
        left = torch.where(failed, torch.div(widths - w, 2, rounding_mode="floor"), left)
        return top.long(), left.long(), h.long(), w.long()

    def __call__(self, batch: ImageBatch, generator) -> ImageBatch:
        images = batch.images
        count, _, canvas_h, canvas_w = images.shape
        sizes = batch.sizes if batch.sizes is not None else torch.tensor([[canvas_h, canvas_w]]).expand(count, 2)
        top, left, h, w = self.sample_boxes(sizes[:, 0], sizes[:, 1], generator)
        boxes = torch.stack([torch.arange(count), left, top, left + w, top + h], 1).float()
        crops = roi_align(to_unit_float(images), to_device_nonblocking(boxes, images.device), self.size,
                          spatial_scale=1.0, sampling_ratio=-1, aligned=True)
        return ImageBatch(crops)
