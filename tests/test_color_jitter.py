"""The per-item ColorJitterFactor's hue scaling against colorsys on PIL's 8-bit HSV values."""
import colorsys
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from datasets.transforms.color_jitter import scale_hue

HUE_LEVELS = 255  # PIL's HSV: hue = int(turns * 255), so one turn is 255 levels (0-254); 255 is 0 again
FACTORS = [0.6, 0.8, 1.0, 1.2, 1.4, 2.6]  # m/5: H * factor is never a tie between two levels


def every_hue_image():
    """RGB [4, 256]: every 8-bit HSV hue 0-255 at four saturation/value pairs."""
    hue = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    saturation = np.array([255, 255, 128, 200], dtype=np.uint8)[:, None].repeat(256, 1)
    value = np.array([255, 180, 255, 230], dtype=np.uint8)[:, None].repeat(256, 1)
    channels = [Image.fromarray(a, "L") for a in (hue, saturation, value)]
    return Image.merge("HSV", channels).convert("RGB")


def reference_scale_hue(image, factor):
    """float RGB [H, W, 3] in 0-255: each pixel's 8-bit hue (in turns: H / 255) times `factor`
    modulo one turn, rounded to the nearest level, then colorsys.hsv_to_rgb."""
    out = []
    for h, s, v in np.asarray(image.convert("HSV")).reshape(-1, 3).tolist():
        turns = (Fraction(h, HUE_LEVELS) * Fraction(factor).limit_denominator(1000)) % 1
        level = int(turns * HUE_LEVELS + Fraction(1, 2)) % HUE_LEVELS
        out.append([255 * c for c in colorsys.hsv_to_rgb(level / HUE_LEVELS, s / 255, v / 255)])
    return np.array(out).reshape(image.height, image.width, 3)


@pytest.mark.parametrize("factor", FACTORS)
def test_scale_hue_equals_colorsys_on_the_same_8_bit_hues(factor):
    image = every_hue_image()
    got = np.asarray(scale_hue(image, factor), dtype=np.float64)
    expected = reference_scale_hue(image, factor)
    # One hue level moves a saturated channel by about 6/255: agreement within 1 is the same level.
    worst = np.abs(got - expected).max(axis=2)
    assert worst.max() <= 1.0, f"{int((worst > 1).sum())} of {worst.size} pixels off, first at hue " \
                               f"{np.asarray(image.convert('HSV'))[..., 0][worst > 1][:5]}"


def test_a_whole_turn_of_scaling_keeps_saturation_and_value():
    image = every_hue_image()
    before, after = np.asarray(image.convert("HSV")), np.asarray(scale_hue(image, 1.4).convert("HSV"))
    assert np.abs(before[..., 1:].astype(int) - after[..., 1:]).max() <= 2
