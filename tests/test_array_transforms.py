"""The cached path's transforms on uint8 [H, W, 3] arrays (datasets/transforms/array_transforms.py)
against torchvision's and our PIL transforms: the same random draws, the same crops and flips,
pixels within a level of PIL's resize, OpenCV's colour adjustments against PIL's and the exact
hue scaling, and any other transform through PIL unchanged."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from datasets.loading.cached_items import per_item_plan
from datasets.transforms import batched_color
from datasets.transforms.array_transforms import (ColorJitterFactor8Bit, OnPIL, RandomHorizontalFlipArray,
                                                  RandomResizedCropArray, brightness_8bit, contiguous_rgb, hue_8bit,
                                                  saturation_8bit)
from datasets.transforms.color_jitter import ColorJitterFactor, scale_hue
from tests.synthetic_batches import natural_rgb_images

IMAGES = natural_rgb_images([(150, 200), (120, 90), (64, 64)], seed=5)
FACTORS = (0.6, 0.87, 1.0, 1.23, 1.4)
PIXELS = natural_rgb_images([(96, 128)], seed=3)[0]


def planes_view(pixels):
    """`pixels` as the decoded cache hands it over: a [h, w, 3] view of [3, h, w] planes."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)).transpose(1, 2, 0)


def run_both(pil_transform, array_transform, pixels, seed):
    """(PIL result, array result) as int arrays, from the same seed; asserts that both made the same draws."""
    results = []
    for transform, image in ((pil_transform, Image.fromarray(pixels)), (array_transform, planes_view(pixels))):
        torch.manual_seed(seed)
        output = np.asarray(transform(image)).astype(int)
        results.append((output, torch.rand(3)))
    (pil, pil_after), (ours, ours_after) = results
    assert torch.equal(pil_after, ours_after)  # the same number of draws: later steps see the same stream
    return pil, ours


@pytest.mark.parametrize("factor", FACTORS)
def test_8bit_brightness_equals_pil_and_saturation_is_within_one_level(factor):
    image = Image.fromarray(PIXELS)
    assert np.array_equal(brightness_8bit(PIXELS, factor), np.asarray(TF.adjust_brightness(image, factor)))
    difference = saturation_8bit(PIXELS, factor).astype(int) - np.asarray(TF.adjust_saturation(image, factor))
    assert np.abs(difference).max() <= 1 and (difference != 0).mean() < 0.02  # measured: at most 1.1%


@pytest.mark.parametrize("factor", FACTORS)
def test_8bit_hue_scaling_is_nearer_the_exact_scaling_than_pils_8bit_hsv(factor):
    unit = torch.from_numpy(PIXELS).permute(2, 0, 1)[None].float() / 255
    exact = batched_color.scale_hue(unit, torch.tensor([factor]))[0].permute(1, 2, 0).numpy() * 255  # float HSV
    ours = hue_8bit(PIXELS, factor).astype(float) - exact
    pil = np.asarray(scale_hue(Image.fromarray(PIXELS), factor)).astype(float) - exact
    assert np.abs(ours).mean() <= np.abs(pil).mean() and np.abs(ours).mean() < 0.7  # levels; measured 0.37-0.64
    assert abs(ours.mean()) < 0.4
    if factor != 1.0:  # it did turn the colours
        assert np.abs(exact - PIXELS).mean() > 3


@pytest.mark.parametrize("ranges", [{}, {"hue": None}, {"brightness": (0.9, 1.1), "saturation": None}])
def test_8bit_jitter_draws_the_random_numbers_of_the_pil_jitter(ranges):
    pil, ours = run_both(ColorJitterFactor(**ranges), ColorJitterFactor8Bit(**ranges), PIXELS, seed=7)
    assert np.abs(ours - pil).mean() < 1.5 and np.abs(ours - PIXELS).mean() > 3


def test_contiguous_rgb_copies_plane_views_and_keeps_contiguous_arrays():
    pixels = IMAGES[0]
    view = planes_view(pixels)
    assert not view.flags.c_contiguous
    copied = contiguous_rgb(view)
    assert copied.flags.c_contiguous and np.array_equal(copied, pixels)
    assert contiguous_rgb(pixels) is pixels


@pytest.mark.parametrize("interpolation, max_levels", [(T.InterpolationMode.BILINEAR, 1),
                                                      (T.InterpolationMode.BICUBIC, 2),
                                                      (T.InterpolationMode.NEAREST, 0)])
def test_resized_crop_draws_the_crops_of_torchvision_and_resizes_within_levels_of_pil(interpolation, max_levels):
    for seed in range(6):
        for pixels in IMAGES:
            arguments = dict(size=(48, 56), scale=(0.08, 1.0), interpolation=interpolation)
            pil, ours = run_both(T.RandomResizedCrop(**arguments), RandomResizedCropArray(**arguments), pixels, seed)
            assert ours.shape == pil.shape == (48, 56, 3)
            difference = np.abs(ours - pil)
            assert difference.max() <= max_levels and difference.mean() < 0.3  # measured: 0.1-0.2 bilinear
            assert np.abs(pil - pil[::-1, ::-1]).mean() > 2  # a picture, not a flat patch


def test_horizontal_flip_flips_the_images_torchvision_flips():
    flipped = 0
    for seed in range(8):
        pil, ours = run_both(T.RandomHorizontalFlip(), RandomHorizontalFlipArray(), IMAGES[1], seed)
        assert np.array_equal(ours, pil)
        flipped += not np.array_equal(ours, IMAGES[1])
    assert 0 < flipped < 8


def test_transforms_without_an_array_twin_run_through_pil_unchanged():
    rotation = T.RandomRotation(degrees=25)
    pil, ours = run_both(rotation, OnPIL(rotation), IMAGES[0], seed=4)
    assert np.array_equal(ours, pil) and not np.array_equal(ours, IMAGES[0])
    transform, _ = per_item_plan([("RandomRotation", {"degrees": 10}), ("RandomResizedCrop", {"size": 32}),
                                  ("ToTensor", {})])
    assert [type(step).__name__ for step in transform.transforms] == ["OnPIL", "RandomResizedCropArray"]
    assert transform(planes_view(IMAGES[2])).shape == (32, 32, 3)
