"""Test-time augmentation (TTA): a model's logits averaged over a few views of each image.

Modes (`eval.tta`, or --tta of scripts/evaluate.py and scripts/predict.py):
* "none": the image alone.
* "flip": the image and its horizontal mirror (2 views).
* "flip_crops": those two and the four corner crops of CROP_FRACTION of each side (floor:
  196 of 224 px, 56 of 64), each resized back to the input size by bilinear interpolation
  (align_corners=False, no antialiasing: it enlarges) (6 views).

The TTA logits are the mean of the views' logits in float32 (not the mean of their
probabilities): the TTA loss is then the cross-entropy of softmax(mean logits), and the
argmax is the class the views agree on most in logit space. The identity view comes first,
so its logits (the plain prediction) are computed once and serve both the plain and the TTA
metrics (executors/evaluation.evaluate_model).

KMNIST refuses flips (ConfigError): a mirrored Kuzushiji character is another glyph or none,
and no KMNIST config trains on mirrored images, so averaging in the mirror's prediction only
adds noise. Oxford-IIIT Pet trains with RandomHorizontalFlip; its TTA views are ones the
model has seen.
"""
import math

import torch
from torch.nn import functional as F

from utils.errors import ConfigError

TTA_MODES = ("none", "flip", "flip_crops")
CROP_FRACTION = 0.875
NO_FLIPS = ("KMNIST",)  # data.name values whose classes are not mirror-symmetric


def corner_crops(images: torch.Tensor) -> list:
    """The four corner crops (top-left, top-right, bottom-left, bottom-right) of CROP_FRACTION
    of each side of `images` [B, C, H, W], each resized back to [B, C, H, W]."""
    height, width = images.shape[-2:]
    crop_h, crop_w = math.floor(CROP_FRACTION * height), math.floor(CROP_FRACTION * width)
    corners = [(0, 0), (0, width - crop_w), (height - crop_h, 0), (height - crop_h, width - crop_w)]
    return [F.interpolate(images[..., top:top + crop_h, left:left + crop_w], size=(height, width),
                          mode="bilinear", align_corners=False) for top, left in corners]


def tta_views(images: torch.Tensor, mode: str) -> list:
    """The views of `images` [B, C, H, W] for `mode`, each [B, C, H, W], the images themselves first."""
    views = [images]
    if mode in ("flip", "flip_crops"):
        views.append(images.flip(-1))
    if mode == "flip_crops":
        views += corner_crops(images)
    return views


def tta_logits(model, images: torch.Tensor, mode: str, plain_logits: torch.Tensor = None) -> torch.Tensor:
    """float32 [B, K]: the mean of `model`'s logits over tta_views(images, mode). `plain_logits`:
    the model's logits of `images` when already computed (the first view is then not run again)."""
    views = tta_views(images, mode)
    first = model(views[0]) if plain_logits is None else plain_logits
    logits = [first] + [model(view) for view in views[1:]]
    return torch.stack([view_logits.float() for view_logits in logits]).mean(dim=0)


def resolve_tta(cfg, mode: str = None) -> str:
    """The TTA mode to use: `mode` (a --tta option) if given, else cfg.eval.tta ("none" for a
    config saved before eval.tta existed). Raises ConfigError for a mode outside TTA_MODES
    (naming the key and the choices) and for flips on a dataset in NO_FLIPS."""
    key = "--tta" if mode is not None else "eval.tta"
    mode = mode if mode is not None else cfg.get("eval", {}).get("tta", "none")
    if mode not in TTA_MODES:
        raise ConfigError(f"{key}={mode!r} must be one of {', '.join(TTA_MODES)}.")
    if mode != "none" and cfg.data.name in NO_FLIPS:
        raise ConfigError(f"{key}={mode!r} mirrors the images, and {cfg.data.name} characters are not "
                          f"mirror-symmetric (a mirrored character is another glyph or none): use {key}=none.")
    return mode
