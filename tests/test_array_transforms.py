"""The cached path's transforms on uint8 [H, W, 3] arrays (datasets/array_transforms.py)
against torchvision's PIL transforms: the same random draws, the same crops and flips, pixels
within a level of PIL's resize, and any other transform through PIL unchanged."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from datasets.array_transforms import OnPIL, RandomHorizontalFlipArray, RandomResizedCropArray, contiguous_rgb
from datasets.cached_items import per_item_plan
from tests.synthetic_batches import natural_rgb_images

IMAGES = natural_rgb_images([(150, 200), (120, 90), (64, 64)], seed=5)


def planes_view(pixels):
    """`pixels` as the decoded cache hands it over: a [h, w, 3] view of [3, h, w] planes."""
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)).transpose(1, 2, 0)


def run_both(pil_transform, array_transform, pixels, seed):
    """(PIL result as an int array, array result as an int array, the next draws after each)."""
    results = []
    for transform, image in ((pil_transform, Image.fromarray(pixels)), (array_transform, planes_view(pixels))):
        torch.manual_seed(seed)
        output = np.asarray(transform(image)).astype(int)
        results.append((output, torch.rand(3)))
    (pil, pil_after), (ours, ours_after) = results
    assert torch.equal(pil_after, ours_after)  # the same number of draws: later steps see the same stream
    return pil, ours


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
