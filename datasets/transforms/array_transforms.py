"""Transforms on uint8 [H, W, 3] RGB arrays, the cached path's images (datasets/loading/cached_items.py);
each draws the same random numbers as its PIL counterpart on the `workers` path.

* `RandomResizedCropArray` and `RandomHorizontalFlipArray`: torchvision's RandomResizedCrop
  and RandomHorizontalFlip with the same arguments. The crop is resized by torch's
  antialiased uint8 kernel (`interpolate(..., antialias=True)` on channels-last uint8), which
  follows PIL's separable filters to within one level (two for bicubic): 0.19 ms per 224-px
  crop of a 500x375 image against PIL's 0.73 ms, one thread.
* `ColorJitterFactor8Bit`: datasets/transforms/color_jitter.py's ColorJitterFactor with OpenCV, 0.37 ms
  per 224-px image against 2.1 ms. Brightness equals PIL's (the same float32 product,
  truncated); saturation is within one level of PIL's at about 1% of values at most; hue
  goes through OpenCV's 8-bit HSV (256 hue levels per turn where PIL keeps 255) and lands
  nearer the exact float scaling than PIL's does: 0.4-0.6 levels from it on average against
  PIL's 0.5-0.9.
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

from datasets.transforms.color_jitter import PAPER_RANGE, ColorJitterFactor, draw_adjustments

OPENCV_HUE_LEVELS = 256  # OpenCV's COLOR_RGB2HSV_FULL: one turn is levels 0-255
TRUNCATION_SHIFT = 0.499  # OpenCV rounds to nearest: shifted by just under half a level, it truncates as PIL does
RESIZE_MODES = {T.InterpolationMode.BILINEAR: "bilinear", T.InterpolationMode.BICUBIC: "bicubic"}


def contiguous_rgb(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3], C-contiguous: `pixels` itself when it is, else a copy made from its channel planes."""
    if pixels.flags.c_contiguous:
        return pixels
    return cv2.merge([pixels[:, :, channel] for channel in range(3)])


class RandomResizedCropArray(T.RandomResizedCrop):
    """RandomResizedCrop of a uint8 [H, W, 3] array to uint8 [height, width, 3] of `size`; bilinear and
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


def brightness_8bit(pixels, factor: float):
    """uint8 [H, W, 3] RGB with brightness times `factor`, as PIL's ImageEnhance.Brightness (a table)."""
    table = np.clip(np.arange(256, dtype=np.float32) * np.float32(factor), 0, 255).astype(np.uint8)
    return cv2.LUT(pixels, table)


def saturation_8bit(pixels, factor: float):
    """uint8 [H, W, 3] RGB blended with its grey image by `factor`, as PIL's ImageEnhance.Color
    (grey: OpenCV's ITU-R 601 weights in 14-bit fixed point, PIL's in 16-bit; the blend rounds
    half a level down, where PIL truncates): within one level of PIL's, equal at about 99% of values or more."""
    grey = cv2.cvtColor(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(pixels, factor, grey, 1 - factor, -TRUNCATION_SHIFT)


def hue_8bit(pixels, factor: float):
    """uint8 [H, W, 3] RGB with its HSV hue times `factor` (OpenCV's 256 levels per turn, rounded, modulo a turn)."""
    hsv = cv2.cvtColor(pixels, cv2.COLOR_RGB2HSV_FULL)
    table = (np.round(np.arange(256) * factor).astype(np.int64) % OPENCV_HUE_LEVELS).astype(np.uint8)
    hsv[..., 0] = cv2.LUT(hsv[..., 0], table)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


class ColorJitterFactor8Bit(ColorJitterFactor):
    """ColorJitterFactor on uint8 [H, W, 3] RGB arrays with OpenCV: same arguments, same random draws."""

    def __init__(self, brightness=PAPER_RANGE, saturation=PAPER_RANGE, hue=PAPER_RANGE):
        super().__init__(brightness, saturation, hue)
        self.adjust = {"brightness": brightness_8bit, "saturation": saturation_8bit, "hue": hue_8bit}
        # One image at a time in each DataLoader worker: OpenCV's own thread pool would only
        # oversubscribe the cores, and a pool started before the workers fork can hang them.
        cv2.setNumThreads(0)

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        pixels = contiguous_rgb(pixels)
        for name, factor in draw_adjustments(self.ranges):
            pixels = self.adjust[name](pixels, factor)
        return pixels


ARRAY_TWINS = {"RandomResizedCrop": RandomResizedCropArray, "RandomHorizontalFlip": RandomHorizontalFlipArray,
               "ColorJitterFactor": ColorJitterFactor8Bit}  # config name -> twin on 8-bit arrays
