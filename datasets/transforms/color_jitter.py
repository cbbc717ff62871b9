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
* `ColorJitterFactor8Bit` on 8-bit arrays with OpenCV, about 6x faster, for the per-item
  path over the decoded cache (datasets/transforms/array_transforms.py, which says how near PIL's it is).
"""
import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

HUE_LEVELS = 255  # PIL's 8-bit HSV hue is int(turns * 255): one turn is levels 0-254, and 255 is 0 again
ADJUSTMENTS = ("brightness", "saturation", "hue")
PAPER_RANGE = (0.6, 1.4)  # the Bag of Tricks' factor range for all three adjustments


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

    def __init__(self, brightness=PAPER_RANGE, saturation=PAPER_RANGE, hue=PAPER_RANGE):
        super().__init__()
        self.ranges = {"brightness": brightness, "saturation": saturation, "hue": hue}
        self.adjust = {"brightness": TF.adjust_brightness, "saturation": TF.adjust_saturation, "hue": scale_hue}

    def forward(self, image: Image.Image) -> Image.Image:
        for name, factor in draw_adjustments(self.ranges):
            image = self.adjust[name](image, factor)
        return image

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.ranges.items())})"
