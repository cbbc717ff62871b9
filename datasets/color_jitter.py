"""Colour jitter by factors, as the Bag of Tricks paper states it (section 2.1, step 3):
"scale hue, saturation, and brightness with coefficients uniformly drawn from [0.6, 1.4]".

torchvision's ColorJitter draws brightness and saturation as factors but hue as an
*offset* in [-0.5, 0.5] of the colour wheel, so `ColorJitter(hue=...)` cannot express a hue
factor. Here all three are factors: brightness multiplies RGB, saturation blends with the
grey image (torchvision's adjust_saturation, a factor), and hue multiplies the HSV hue
channel (an angle in [0, 1) turns, kept in range modulo one turn; PIL stores it in 255
levels per turn). The three adjustments are applied in a random order, like torchvision's
ColorJitter.

Two implementations draw the same random numbers from torch's generator:
* `ColorJitterFactor` on PIL images (torchvision's functional ops and PIL's HSV): the
  reference, and the per-item `workers` path.
* `ColorJitterFactor8Bit` on 8-bit arrays with OpenCV, about 6x faster (README, "Speed"),
  for the per-item path over the decoded cache (`data.loader='cached'`). Brightness equals
  PIL's (the same float32 product, truncated); saturation is within one level of PIL's at
  about 1% of values at most; hue goes through OpenCV's 8-bit HSV (256 hue levels per turn
  where PIL keeps 255) and lands nearer the exact float scaling than
  PIL's does: 0.4-0.6 levels from it on average against PIL's 0.5-0.9.
"""
import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from datasets.array_transforms import contiguous_rgb

HUE_LEVELS = 255  # PIL's 8-bit HSV hue is int(turns * 255): one turn is levels 0-254, and 255 is 0 again
OPENCV_HUE_LEVELS = 256  # OpenCV's COLOR_RGB2HSV_FULL: one turn is levels 0-255
ADJUSTMENTS = ("brightness", "saturation", "hue")
TRUNCATION_SHIFT = 0.499  # OpenCV rounds to nearest: shifted by just under half a level, it truncates as PIL does


def scale_hue(image: Image.Image, factor: float) -> Image.Image:
    """RGB PIL image with its HSV hue multiplied by `factor` (rounded to the nearest of PIL's
    255 hue levels, modulo one turn)."""
    hue, saturation, value = image.convert("HSV").split()
    scaled = (np.asarray(hue, dtype=np.float32) * factor).round().astype(np.int64) % HUE_LEVELS
    return Image.merge("HSV", (Image.fromarray(scaled.astype(np.uint8), "L"), saturation, value)).convert("RGB")


def draw_adjustments(ranges: dict) -> list:
    """[(name, factor), ...] in the order to apply them: a random permutation of the three
    adjustments, then a uniform factor from each one's (low, high) range (None: skipped),
    drawn from torch's global generator as torchvision's ColorJitter draws."""
    drawn = []
    for index in torch.randperm(3).tolist():
        name = ADJUSTMENTS[index]
        if ranges[name] is not None:
            low, high = ranges[name]
            drawn.append((name, float(torch.empty(1).uniform_(low, high))))
    return drawn


class ColorJitterFactor(torch.nn.Module):
    """Multiply brightness, saturation and hue of an RGB PIL image by random factors.

    Args: brightness, saturation, hue: (low, high) ranges of the factors, e.g. (0.6, 1.4);
    None leaves that property unchanged.
    """

    def __init__(self, brightness=(0.6, 1.4), saturation=(0.6, 1.4), hue=(0.6, 1.4)):
        super().__init__()
        self.ranges = {"brightness": brightness, "saturation": saturation, "hue": hue}
        self.adjust = {"brightness": TF.adjust_brightness, "saturation": TF.adjust_saturation, "hue": scale_hue}

    def forward(self, image: Image.Image) -> Image.Image:
        for name, factor in draw_adjustments(self.ranges):
            image = self.adjust[name](image, factor)
        return image

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.ranges.items())})"


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
    """ColorJitterFactor on uint8 [H, W, 3] RGB arrays with OpenCV: same arguments, same
    random draws; takes and returns an array (the cached path's images)."""

    def __init__(self, brightness=(0.6, 1.4), saturation=(0.6, 1.4), hue=(0.6, 1.4)):
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
