"""Transforms on uint8 [H, W, 3] RGB arrays, the cached path's images (datasets/cached_items.py).

* `RandomResizedCropArray` and `RandomHorizontalFlipArray`: torchvision's RandomResizedCrop
  and RandomHorizontalFlip with the same arguments and the same random draws. The crop is
  resized by torch's antialiased uint8 kernel (`interpolate(..., antialias=True)` on
  channels-last uint8), which follows PIL's separable filters to within one level (two for
  bicubic): 0.19 ms per 224-px crop of a 500x375 image against PIL's 0.73 ms, one thread.
* `OnPIL`: any other transform, run on a PIL image made from the array and back.

An array may be a view of the decoded cache's [3, H, W] planes, transposed and so not
contiguous: `contiguous_rgb` copies only what a step needs, with OpenCV's merge of the
planes (a quarter of the time of numpy's transposing copy), and a crop copies only itself.
"""
import cv2
import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torchvision import transforms as T
from torchvision.transforms import functional as TF

RESIZE_MODES = {T.InterpolationMode.BILINEAR: "bilinear", T.InterpolationMode.BICUBIC: "bicubic"}


def contiguous_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3], C-contiguous: `pixels` itself when it is, else a copy made from its channel planes."""
    if pixels.flags.c_contiguous:
        return pixels
    return cv2.merge([pixels[:, :, channel] for channel in range(3)])


class RandomResizedCropArray(T.RandomResizedCrop):
    """RandomResizedCrop of a uint8 [H, W, 3] array to uint8 [size, size, 3]; bilinear and
    bicubic resize with torch's uint8 kernel, other interpolations through PIL."""

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        height, width = pixels.shape[:2]
        top, left, crop_height, crop_width = self.get_params(torch.empty(()).expand(3, height, width),
                                                             self.scale, self.ratio)
        crop = contiguous_rgb(pixels[top:top + crop_height, left:left + crop_width])
        if self.interpolation not in RESIZE_MODES:
            return np.asarray(TF.resize(Image.fromarray(crop), self.size, self.interpolation))
        channels_last = torch.from_numpy(crop)[None].permute(0, 3, 1, 2)
        resized = F.interpolate(channels_last, size=list(self.size), mode=RESIZE_MODES[self.interpolation],
                                antialias=True)  # channels-last uint8 in, channels-last uint8 out
        return resized.permute(0, 2, 3, 1)[0].numpy()


class RandomHorizontalFlipArray(T.RandomHorizontalFlip):
    """RandomHorizontalFlip of a uint8 [H, W, 3] array (the same draw: one torch.rand per image)."""

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        if torch.rand(1) < self.p:
            return cv2.flip(contiguous_rgb(pixels), 1)
        return pixels


class OnPIL:
    """A PIL transform on uint8 [H, W, 3] arrays: array -> RGB PIL image -> transform -> a new array."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.array(self.transform(Image.fromarray(contiguous_rgb(pixels))).convert("RGB"))

    def __repr__(self):
        return f"{type(self).__name__}({self.transform!r})"
