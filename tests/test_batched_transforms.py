"""Batched, per-sample transforms (datasets/batched_*.py) against their per-item twins:
torchvision's functional ops and get_params, datasets/transforms/color_jitter.py on PIL images, and
exact definitions (colorsys). Geometry is checked image by image where the result is exact,
random parameters by two-sample tests against torchvision's own sampling, and the config's
whole pipelines by the statistics of a few thousand augmented samples."""
import colorsys
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import chisquare, ks_2samp, kstest
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from datasets.synthetic import kmnist_arrays
from datasets.transforms.batch import ImageBatch
from datasets.transforms.batched_color import (BatchedColorJitterFactor, adjust_brightness, adjust_saturation,
                                               scale_hue)
from datasets.transforms.batched_geometry import Pad, RandomAffine, RandomCrop, RandomHorizontalFlip, RandomResizedCrop
from datasets.transforms.batched_transforms import NotBatchable, split_prefix
from datasets.transforms.building import build_transforms
from datasets.transforms.color_jitter import ColorJitterFactor as PILColorJitterFactor
from tests.synthetic_batches import edge_replicated_canvas, natural_rgb_images
from utils.config import load_config
from utils.errors import ConfigError

P_MIN = 1e-3  # two-sample and goodness-of-fit tests: fail below this p-value (seeds are fixed)
PET_MEAN, PET_STD = [0.485, 0.456, 0.405], [0.229, 0.224, 0.225]
PET_TRAIN = [
    ("RandomResizedCrop", {"size": 32}),
    ("RandomHorizontalFlip", {}),
    ("ColorJitterFactor", {"brightness": (0.6, 1.4), "saturation": (0.6, 1.4), "hue": (0.6, 1.4)}),
    ("ToTensor", {}),
    ("Normalize", {"mean": PET_MEAN, "std": PET_STD}),
]
PET_SOURCE_SIZES = [(48, 64), (64, 48), (48, 64), (40, 60), (64, 48), (56, 64)]  # (height, width)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def random_uint8(shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator(seed))


def random_unit(shape, seed=0):
    return torch.rand(shape, generator=generator(seed))


# ---------------------------------------------------------------- RandomAffine


def test_random_affine_apply_equals_torchvision_affine_image_by_image():
    images = random_uint8((300, 1, 28, 28))
    affine = RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1))
    params = affine.sample_params(300, 28, 28, generator(1))
    moved = affine.apply(images, *params)
    assert moved.dtype == torch.uint8 and moved.shape == images.shape
    for i, (angle, tx, ty, scale) in enumerate(zip(*params)):
        expected = TF.affine(images[i], angle=float(angle), translate=[int(tx), int(ty)], scale=float(scale),
                             shear=[0.0, 0.0], interpolation=InterpolationMode.NEAREST)
        assert torch.equal(moved[i], expected), i
    assert (moved != images).float().mean() > 0.5  # the parameters did move the images


def test_random_affine_on_a_non_square_float_image_matches_torchvision_bilinear():
    images = random_unit((40, 3, 20, 30))
    affine = RandomAffine(degrees=(-30, 20), translate=(0.2, 0.1), scale=(0.8, 1.2), interpolation="bilinear")
    params = affine.sample_params(40, 20, 30, generator(2))
    moved = affine.apply(images, *params)
    for i, (angle, tx, ty, scale) in enumerate(zip(*params)):
        expected = TF.affine(images[i], angle=float(angle), translate=[int(tx), int(ty)], scale=float(scale),
                             shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(moved[i], expected, atol=1e-5, rtol=0)


def test_random_affine_parameters_have_torchvision_distributions():
    count, height, width = 4000, 28, 30
    affine = RandomAffine(degrees=10, translate=(0.1, 0.2), scale=(0.9, 1.1))
    angle, tx, ty, scale = affine.sample_params(count, height, width, generator(3))
    torch.manual_seed(3)
    reference = [T.RandomAffine.get_params([-10.0, 10.0], [0.1, 0.2], [0.9, 1.1], None, [width, height])
                 for _ in range(count)]
    ref_angle = np.array([r[0] for r in reference])
    ref_tx, ref_ty = np.array([r[1][0] for r in reference]), np.array([r[1][1] for r in reference])
    ref_scale = np.array([r[2] for r in reference])
    assert -10 <= angle.min() and angle.max() <= 10 and 0.9 <= scale.min() and scale.max() <= 1.1
    assert ks_2samp(angle.numpy(), ref_angle).pvalue > P_MIN
    assert ks_2samp(scale.numpy(), ref_scale).pvalue > P_MIN
    # Translations are whole pixels, up to round(0.1 * 30) = 3 across and round(0.2 * 28) = 6 down,
    # with the same frequency of each value as torchvision's.
    for ours, theirs, limit in ((tx, ref_tx, 3), (ty, ref_ty, 6)):
        assert torch.equal(ours, ours.round())
        values = np.arange(-limit, limit + 1)
        assert set(ours.long().tolist()) == set(values.tolist()) == set(theirs.tolist())
        table = np.array([[(ours.numpy() == v).sum() for v in values], [(theirs == v).sum() for v in values]])
        expected = table.sum(0) * np.array([[0.5], [0.5]])
        assert chisquare(table.ravel(), expected.ravel(), ddof=len(values) - 1).pvalue > P_MIN
    # No translation and no scale: zeros and ones.
    plain = RandomAffine(degrees=5).sample_params(10, height, width, generator(0))
    assert torch.equal(plain[1], torch.zeros(10, dtype=torch.float64))
    assert torch.equal(plain[3], torch.ones(10, dtype=torch.float64))


# ---------------------------------------------------------------- Pad + RandomCrop


@pytest.mark.parametrize("padding", [2, (1, 3), (1, 2, 3, 4)])
def test_pad_equals_torchvision_pad(padding):
    images = random_uint8((5, 1, 6, 7))
    padded = Pad(padding, fill=9)(ImageBatch(images), generator()).images
    assert torch.equal(padded, TF.pad(images, list(padding) if isinstance(padding, tuple) else padding, fill=9))


def test_pad_then_random_crop_cuts_the_padded_image_at_uniform_offsets():
    count = 2500
    images = random_uint8((count, 1, 28, 28), seed=4)
    padded = TF.pad(images, 2)
    specs = load_config("mlp_augment").data.transforms.train[:2]  # Pad 2, RandomCrop 28
    out = build_transforms(specs, family="batched")(ImageBatch(images), generator(5))
    assert out.dtype == torch.float32 and out.shape == images.shape
    out = (out * 255).round().to(torch.uint8)
    matches = torch.stack([(out == padded[:, :, top:top + 28, left:left + 28]).flatten(1).all(1)
                           for top in range(5) for left in range(5)], 1)  # [count, 25]
    assert (matches.sum(1) == 1).all()  # random images: exactly one offset reproduces each crop
    offsets = matches.sum(0).numpy()
    assert offsets.min() > 0 and chisquare(offsets).pvalue > P_MIN  # all 25 offsets, about 100 each
    # RandomCrop's own `padding` argument does the same.
    same = RandomCrop(28, padding=2)(ImageBatch(images), generator(5)).images
    again = RandomCrop(28)(Pad(2)(ImageBatch(images), generator(5)), generator(5)).images
    assert torch.equal(same, again)


# ---------------------------------------------------------------- RandomResizedCrop


def torchvision_boxes(height, width, count, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=0):
    torch.manual_seed(seed)
    image = torch.empty(1, height, width)
    return np.array([T.RandomResizedCrop.get_params(image, list(scale), list(ratio)) for _ in range(count)])


@pytest.mark.parametrize("height, width", [(375, 500), (500, 375), (100, 1000)])
def test_random_resized_crop_boxes_match_torchvision_get_params(height, width):
    count = 3000
    crop = RandomResizedCrop(32)
    top, left, h, w = (t.numpy() for t in crop.sample_boxes(torch.full((count,), height), torch.full((count,), width),
                                                             generator(6)))
    ref_top, ref_left, ref_h, ref_w = torchvision_boxes(height, width, count, seed=6).T
    area, ref_area = h * w / (height * width), ref_h * ref_w / (height * width)
    assert ks_2samp(area, ref_area).pvalue > P_MIN
    assert ks_2samp(np.log(w / h), np.log(ref_w / ref_h)).pvalue > P_MIN
    # Where the crop lies within the image: top / (height - h) and left / (width - w).
    for ours, theirs, room, ref_room in ((top, ref_top, height - h, height - ref_h),
                                         (left, ref_left, width - w, width - ref_w)):
        moved, ref_moved = room > 0, ref_room > 0
        assert ks_2samp(ours[moved] / room[moved], theirs[ref_moved] / ref_room[ref_moved]).pvalue > P_MIN
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= height).all() and (left + w <= width).all()
    if (height, width) == (100, 1000):
        # Most tries do not fit: the centre crop at the widest allowed aspect ratio, exactly torchvision's.
        fallback = (h == 100) & (w == 133) & (top == 0) & (left == 433)
        ref_fallback = (ref_h == 100) & (ref_w == 133) & (ref_top == 0) & (ref_left == 433)
        assert 0.6 < fallback.mean() < 0.95  # about 2.5% of tries fit
        assert abs(fallback.mean() - ref_fallback.mean()) < 4 * math.sqrt(2 * 0.25 / count)


def test_random_resized_crop_boxes_stay_inside_each_image_of_a_ragged_canvas():
    count = 4000
    sizes = torch.randint(1, 60, (count, 2), generator=generator(7))
    sizes[:4] = torch.tensor([[1, 1], [1, 50], [50, 1], [3, 2]])  # degenerate shapes take the fallback
    top, left, h, w = RandomResizedCrop(16).sample_boxes(sizes[:, 0], sizes[:, 1], generator(8))
    assert (h >= 1).all() and (w >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + h <= sizes[:, 0]).all() and (left + w <= sizes[:, 1]).all()
    assert ((h * w).double() / sizes.prod(1)).max() == 1.0  # some crops are whole images


def test_random_resized_crop_on_a_ragged_canvas_reads_only_each_images_content():
    """Each image's content is one colour; the canvas around it holds that colour in the one
    replicated row and column next to the content (what bilinear sampling at the border may
    touch, as in the decoded cache) and another colour beyond. A crop that strayed outside
    the content (e.g. boxes drawn on the canvas size) would mix that colour in."""
    count, canvas_h, canvas_w = 600, 40, 50
    sizes = torch.stack([torch.randint(2, canvas_h + 1, (count,), generator=generator(9)),
                         torch.randint(2, canvas_w + 1, (count,), generator=generator(10))], 1)
    colours = random_uint8((count, 3), seed=11)
    images = ((colours.int() + 128) % 256).to(torch.uint8)[:, :, None, None].repeat(1, 1, canvas_h, canvas_w)
    for i, (height, width) in enumerate(sizes.tolist()):
        images[i, :, :height + 1, :width + 1] = colours[i][:, None, None]
    for size in (8, 32, 64):  # shrinking, about the same, enlarging
        out = RandomResizedCrop(size)(ImageBatch(images, sizes), generator(size)).images
        assert out.shape == (count, 3, size, size) and out.dtype == torch.float32
        expected = (colours.float() / 255)[:, :, None, None].expand_as(out)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_random_resized_crop_of_the_whole_image_is_a_box_average_or_bilinear_resize():
    """scale=(1, 1) and ratio=(1, 1) on square images: the box is the whole image. Shrinking by 2
    averages each 2x2 block (the antialiasing box filter); enlarging by 2 is bilinear
    interpolation with pixel centres aligned, torchvision's resize."""
    images = random_uint8((4, 3, 32, 32), seed=12)
    whole = {"scale": (1, 1), "ratio": (1, 1)}
    shrunk = RandomResizedCrop(16, **whole)(ImageBatch(images), generator()).images
    torch.testing.assert_close(shrunk, torch.nn.functional.avg_pool2d(images.float() / 255, 2), atol=1e-5, rtol=0)
    enlarged = RandomResizedCrop(64, **whole)(ImageBatch(images), generator()).images
    torch.testing.assert_close(enlarged, TF.resize(images.float() / 255, [64, 64], antialias=True), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- whole pipelines vs per-item


def per_sample_moments(images, mean, std):
    """(per-sample channel means [n, C], per-sample channel mean squares [n, C]) in [0, 1] units."""
    raw = images.double() * torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1) \
        + torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    return raw.mean((2, 3)), (raw ** 2).mean((2, 3))


def pooled_stats(means, squares):
    mean = means.mean(0)
    return mean, (squares.mean(0) - mean ** 2).sqrt()


def assert_same_statistics(per_item, batched, mean, std, tolerance, standard_errors=0.0):
    """Per-channel mean and std of the pooled pixels (in [0, 1] units) agree within `tolerance`
    (relative) plus `standard_errors` bootstrap standard errors of the difference; the
    per-sample channel means have the same distribution (two-sample KS)."""
    moments = [per_sample_moments(x, mean, std) for x in (per_item, batched)]
    (mean_a, std_a), (mean_b, std_b) = (pooled_stats(*m) for m in moments)
    slack_mean = slack_std = torch.zeros_like(mean_a)
    if standard_errors:
        rng = torch.Generator().manual_seed(0)
        draws = []
        for _ in range(200):
            pair = []
            for means, squares in moments:
                pick = torch.randint(0, len(means), (len(means),), generator=rng)
                pair.append(torch.stack(pooled_stats(means[pick], squares[pick])))
            draws.append(pair[0] - pair[1])
        spread = torch.stack(draws).std(0)
        slack_mean, slack_std = standard_errors * spread[0], standard_errors * spread[1]
    assert ((mean_a - mean_b).abs() <= tolerance * mean_a + slack_mean).all(), (mean_a, mean_b, slack_mean)
    assert ((std_a - std_b).abs() <= tolerance * std_a + slack_std).all(), (std_a, std_b, slack_std)
    for channel in range(mean_a.numel()):
        assert ks_2samp(moments[0][0][:, channel].numpy(), moments[1][0][:, channel].numpy()).pvalue > P_MIN
    return (mean_a, std_a), (mean_b, std_b)


def run_both(specs, arrays, count, mean=None, std=None, seed=0, mode="RGB"):
    """`count` samples (source image i % len(arrays)) through the per-item pipeline on PIL images
    and through the batched one on the edge-replicated canvas."""
    torch.manual_seed(seed)
    per_item = build_transforms(specs, mean, std)
    pictures = [Image.fromarray(array, mode) for array in arrays]
    expected = torch.stack([per_item(pictures[i % len(arrays)]) for i in range(count)])
    if mode == "L":
        canvas, sizes = torch.from_numpy(np.stack(arrays))[:, None], None
    else:
        canvas, sizes = edge_replicated_canvas(arrays)
        sizes = None if (sizes == torch.tensor(canvas.shape[2:])).all() else sizes
    batched = build_transforms(specs, mean, std, family="batched")
    which = torch.arange(count) % len(arrays)
    rng = generator(seed)
    out = torch.cat([batched(ImageBatch(canvas[chunk], None if sizes is None else sizes[chunk]), rng)
                     for chunk in which.split(1000)])
    return expected, out


def test_pets_geometric_pipeline_matches_the_per_item_pipeline():
    """RandomResizedCrop, flip, Normalize. How much of a 64 px image a 32 px crop takes spreads a
    sample's std by crop size, a sampling error of about 0.4% at 4,000 samples: 1% plus three
    bootstrap standard errors."""
    specs = [spec for spec in PET_TRAIN if spec[0] != "ColorJitterFactor"]
    arrays = natural_rgb_images(PET_SOURCE_SIZES, seed=0)
    per_item, batched = run_both(specs, arrays, 4000, seed=1)
    assert per_item.shape == batched.shape == (4000, 3, 32, 32)
    assert_same_statistics(per_item, batched, PET_MEAN, PET_STD, tolerance=0.01, standard_errors=3)


def test_pets_train_pipeline_matches_the_per_item_pipeline():
    """The full pets train list. Colour jitter makes the per-sample statistics vary widely
    (brightness alone spreads a sample's mean by +-23%), so the pooled mean and std of 4,000
    samples carry a sampling error of about 0.5%: the 1% tolerance is widened by three
    bootstrap standard errors, and the per-sample channel means and colourfulness must pass
    two-sample KS tests."""
    arrays = natural_rgb_images(PET_SOURCE_SIZES, seed=0)
    per_item, batched = run_both(PET_TRAIN, arrays, 4000, seed=2)
    assert batched.dtype == torch.float32 and batched.shape == (4000, 3, 32, 32)
    assert_same_statistics(per_item, batched, PET_MEAN, PET_STD, tolerance=0.01, standard_errors=3)
    # Saturation shows in how far apart a pixel's channels are: per-sample mean of max - min.
    spread_a, spread_b = (colourfulness(x, PET_MEAN, PET_STD) for x in (per_item, batched))
    assert ks_2samp(spread_a, spread_b).pvalue > P_MIN


def colourfulness(images, mean, std):
    """Per-sample mean over pixels of (largest channel - smallest channel), in [0, 1] units."""
    raw = images * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    return (raw.amax(1) - raw.amin(1)).mean((1, 2)).numpy()


@pytest.mark.parametrize("config", ["mlp_augment", "mlp_best"])
def test_kmnist_train_pipelines_match_the_per_item_pipeline_within_one_percent(config):
    specs = load_config(config).data.transforms.train
    images, _ = kmnist_arrays(5, seed=0)
    per_item, batched = run_both(specs, list(images), 4000, mean=[0.5], std=[0.25], seed=3, mode="L")
    assert per_item.shape == batched.shape == (4000, 1, 28, 28)
    assert_same_statistics(per_item, batched, [0.5], [0.25], tolerance=0.01)
    # The share of pixels that came from outside the image (zero fill) is the same too.
    zeros_a, zeros_b = (((t * 0.25 + 0.5) < 1e-6).double().mean((1, 2, 3)) for t in (per_item, batched))
    assert ks_2samp(zeros_a.numpy(), zeros_b.numpy()).pvalue > P_MIN
    assert zeros_b.mean() > 0.01  # the augmentation did shift the images


# ---------------------------------------------------------------- RandomHorizontalFlip


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 1.0])
def test_flip_rate_is_p_and_flipped_images_are_exact_mirrors(p):
    count = 4000
    images = random_uint8((count, 2, 5, 6), seed=13)
    out = RandomHorizontalFlip(p)(ImageBatch(images), generator(14)).images
    same = (out == images).flatten(1).all(1)
    mirrored = (out == images.flip(-1)).flatten(1).all(1)
    assert (same ^ mirrored).all()  # each output is the image or its exact mirror, never both
    rate = mirrored.double().mean().item()
    assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / count)


# ---------------------------------------------------------------- colour


def test_colour_jitter_with_factor_one_is_the_identity():
    images = torch.round(random_unit((16, 3, 9, 11), seed=15) * 255) / 255  # 8-bit levels, as decoded images
    images[0] = 128 / 255  # grey: no hue
    images[1, 0] = 1.0  # a saturated channel
    jitter = BatchedColorJitterFactor(brightness=(1, 1), saturation=(1, 1), hue=(1, 1))
    out = jitter(ImageBatch(images), generator())
    torch.testing.assert_close(out.images, images, atol=1e-6, rtol=0)
    nothing = BatchedColorJitterFactor(brightness=None, saturation=None, hue=None)
    assert torch.equal(nothing(ImageBatch(images), generator()).images, images)


def colorsys_scale_hue(image, factor):
    """Per pixel: RGB -> HSV, hue * factor modulo 1, -> RGB (float64 reference)."""
    out = np.empty_like(image, dtype=np.float64)
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*image[:, y, x].tolist())
            out[:, y, x] = colorsys.hsv_to_rgb((h * factor) % 1.0, s, v)
    return out


def test_scale_hue_equals_colorsys_per_pixel():
    images = random_unit((12, 3, 8, 8), seed=16)
    images[0, :, :4] = 0.3  # greys keep their colour
    images[1, :, 0, 0] = torch.tensor([1.0, 0.0, 0.0])  # pure primaries and secondaries
    images[1, :, 0, 1] = torch.tensor([0.0, 1.0, 1.0])
    images[1, :, 0, 2] = torch.tensor([1.0, 0.0, 1.0])
    factors = torch.linspace(0.6, 1.4, 12)
    factors[2] = 1.0
    out = scale_hue(images, factors)
    for i in range(12):
        expected = colorsys_scale_hue(images[i].double().numpy(), float(factors[i]))
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-5, rtol=0)
    assert (out - images).abs().max() > 0.3  # hue did change colours


def test_adjust_saturation_and_brightness_equal_the_per_item_pil_versions():
    """On 8-bit images (what is decoded) the batched adjustments give PIL's 8-bit results:
    mostly exactly, never more than one level apart (grey weights 0.2989 vs PIL's 0.299)."""
    images = torch.round(random_unit((10, 3, 7, 9), seed=17) * 255) / 255
    factors = torch.linspace(0.0, 2.0, 10)
    for adjust, reference in ((adjust_saturation, TF.adjust_saturation), (adjust_brightness, TF.adjust_brightness)):
        ours = adjust(images.clone(), factors)
        theirs = torch.stack([TF.to_tensor(reference(TF.to_pil_image(images[i]), float(factors[i])))
                              for i in range(10)])
        difference = (ours - theirs).abs() * 255
        assert difference.max() <= 1 + 1e-4 and (difference < 1e-4).double().mean() > 0.95


def test_colour_jitter_parameters_are_uniform_and_orders_are_permutations():
    count = 6000
    jitter = BatchedColorJitterFactor(brightness=(0.6, 1.4), saturation=(0.5, 1.0), hue=(0.9, 1.1))
    factors, order = jitter.sample_params(count, generator(18))
    for name, (low, high) in jitter.ranges.items():
        values = factors[name].double().numpy()
        assert low <= values.min() and values.max() <= high
        assert kstest(values, "uniform", args=(low, high - low)).pvalue > P_MIN
    assert order.shape == (count, 3)
    assert (order.sort(dim=1).values == torch.arange(3)).all()
    _, counts = torch.unique(order, dim=0, return_counts=True)
    assert len(counts) == 6 and chisquare(counts.numpy()).pvalue > P_MIN
    partial = BatchedColorJitterFactor(brightness=None, saturation=(0.6, 1.4), hue=None)
    assert set(partial.sample_params(5, generator())[0]) == {"saturation"}


def test_colour_jitter_applies_the_adjustments_in_each_samples_order():
    images = random_unit((24, 3, 6, 6), seed=19)
    jitter = BatchedColorJitterFactor()
    factors, order = jitter.sample_params(24, generator(20))
    out = jitter.apply(images, factors, order)
    steps = {0: adjust_brightness, 1: adjust_saturation, 2: scale_hue}
    names = {0: "brightness", 1: "saturation", 2: "hue"}
    for i in range(24):
        expected = images[i:i + 1].clone()
        for index in order[i].tolist():
            expected = steps[index](expected, factors[names[index]][i:i + 1])
        torch.testing.assert_close(out[i:i + 1], expected, atol=1e-6, rtol=0)
    assert (out - images).abs().mean() > 0.02


@pytest.mark.parametrize("kept", ["brightness", "saturation", "hue"])
def test_colour_jitter_range_none_leaves_that_property_unchanged(kept):
    images = random_unit((20, 3, 6, 6), seed=21)
    ranges = {name: None for name in ("brightness", "saturation", "hue")}
    ranges[kept] = (0.6, 1.4)
    jitter = BatchedColorJitterFactor(**ranges)
    factors, order = jitter.sample_params(20, generator(22))
    expected = {"brightness": adjust_brightness, "saturation": adjust_saturation, "hue": scale_hue}[kept](
        images.clone(), factors[kept])
    torch.testing.assert_close(jitter.apply(images, factors, order), expected, atol=1e-6, rtol=0)


def pil_jitter(arrays, factors, order):
    """datasets/transforms/color_jitter.py's PIL adjustments with the given factors and order, as float [n, 3, H, W]."""
    adjust, names = PILColorJitterFactor().adjust, ("brightness", "saturation", "hue")
    out = []
    for i, array in enumerate(arrays):
        image = Image.fromarray(array)
        for index in order[i].tolist():
            image = adjust[names[index]](image, float(factors[names[index]][i]))
        out.append(TF.to_tensor(image))
    return torch.stack(out)


def jitter_both(seed, brightness_scale=1.0):
    arrays = [np.clip(a * brightness_scale, 0, 255).astype(np.uint8)
              for a in natural_rgb_images([(24, 24)] * 300, seed=seed)]
    jitter = BatchedColorJitterFactor()
    factors, order = jitter.sample_params(len(arrays), generator(seed))
    batched = jitter.apply(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2), factors, order)
    return pil_jitter(arrays, factors, order), batched


def test_colour_jitter_matches_the_per_item_pil_version_with_the_same_parameters():
    """The same factors and order through both versions: the batched one computes in float,
    PIL in 8 bits, so values differ by a few 1/255 steps (and rarely by more, where a pixel's
    hue sits at the red end of the wheel and the rounding puts it on the other side of 0)."""
    per_item, batched = jitter_both(seed=23)
    difference = (per_item - batched).abs() * 255
    assert difference.mean() < 2.0
    assert difference.flatten().quantile(0.99) < 8.0
    assert (difference > 20).any(1).double().mean() < 0.005  # pixels across the hue wrap-around


def test_colour_jitter_has_no_systematic_offset_from_the_per_item_version():
    """Same parameters, images with channel means of about 0.3: the per-channel means of the two
    versions agree within 1% (no sampling noise here: the parameters are shared)."""
    per_item, batched = jitter_both(seed=24, brightness_scale=0.65)
    mean_a, mean_b = per_item.mean((0, 2, 3)), batched.mean((0, 2, 3))
    assert ((mean_a - mean_b).abs() <= 0.01 * mean_a).all(), (mean_a, mean_b)


# ---------------------------------------------------------------- build_transforms, batched family


def test_a_transform_without_a_batched_version_raises_not_batchable_naming_it():
    with pytest.raises(NotBatchable, match="GaussianBlur") as error:
        build_transforms([("ToTensor", {}), ("GaussianBlur", {"kernel_size": 3})], family="batched")
    assert isinstance(error.value, ConfigError)
    assert str(error.value) == f"{error.value.problem}; use data.loader='workers'."  # auto's note quotes the problem
    assert error.value.problem.startswith("the transform GaussianBlur has no batched version")


@pytest.mark.parametrize("spec", [
    ("RandomAffine", {"degrees": 10, "shear": 5}),
    ("RandomAffine", {"degrees": 10, "fill": 3}),
    ("Pad", {"padding": 2, "padding_mode": "reflect"}),
    ("RandomResizedCrop", {"size": 32, "antialias": False}),
    ("RandomResizedCrop", {"size": 32, "interpolation": InterpolationMode.BICUBIC}),
    ("RandomCrop", {"size": 28, "pad_if_needed": True}),
])
def test_unsupported_arguments_raise_not_batchable_naming_the_transform(spec):
    with pytest.raises(NotBatchable, match=spec[0]):
        build_transforms([spec], family="batched")


def test_normalize_without_arguments_uses_the_given_mean_and_std():
    images = random_uint8((3, 1, 4, 4), seed=25)
    compose = build_transforms([("ToTensor", {}), ("Normalize", {})], mean=[0.5], std=[0.25], family="batched")
    torch.testing.assert_close(compose(ImageBatch(images), generator()), (images.float() / 255 - 0.5) / 0.25,
                               atol=1e-6, rtol=0)
    explicit = build_transforms([("Normalize", {"mean": [0.1], "std": [0.5]})], mean=[0.5], std=[0.25],
                                family="batched")
    torch.testing.assert_close(explicit(ImageBatch(images), generator()), (images.float() / 255 - 0.1) / 0.5,
                               atol=1e-6, rtol=0)
    # Whatever the list, the compose ends in float [0, 1] images.
    assert torch.equal(build_transforms([], family="batched")(ImageBatch(images), generator()), images.float() / 255)


def test_split_prefix_takes_only_the_leading_resize_and_centre_crop():
    test_list = load_config("resnet50").data.transforms.test
    prefix, rest = split_prefix(test_list)
    assert [n for n, _ in prefix] == ["Resize", "CenterCrop"] and [n for n, _ in rest] == ["ToTensor", "Normalize"]
    train_list = load_config("resnet50").data.transforms.train
    assert split_prefix(train_list) == ([], list(train_list))
    late = [("ToTensor", {}), ("Resize", {"size": 8})]
    assert split_prefix(late) == ([], late)
    assert split_prefix([("Resize", {"size": 8})]) == ([("Resize", {"size": 8})], [])
