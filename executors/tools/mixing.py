"""Mixup and CutMix of a training batch, per sample, as one batched operation on its device.

The definitions are torchvision.transforms.v2.MixUp's and CutMix's (Zhang et al. 2018, Yun et
al. 2019), drawn for each sample instead of once per batch:

* lam_i ~ Beta(alpha, alpha): the share of sample i's own image and label.
* partner p(i): the sample mixed into i. The batch is put in a random order and each sample
  takes the one before it in that order: v2's `roll(1, 0)` pairing inside a random shuffle, so
  no sample is its own partner (B > 1) and every image is someone's partner exactly once.
* mixup: x_i = lam_i * x_i + (1 - lam_i) * x_p(i).
* cutmix: a box of about (1 - lam_i) of the image takes x_p(i)'s pixels. Its centre is a
  uniform pixel, its half-sides floor(0.5 * sqrt(1 - lam_i) * side), clipped to the image; lam_i
  then becomes the exact share left, 1 - box area / image area.
* target_i = lam_i * onehot(y_i) + (1 - lam_i) * onehot(y_p(i)), float32 [B, K].
* With both alphas > 0 each sample takes cutmix with probability `switch_prob`, else mixup
  (timm's per-element choice); with probability 1 - `mix_prob` the whole batch stays unmixed
  (lam = 1 for every sample).

Every draw comes from the torch.Generator the caller passes, on the batch's device, and no
value is read back to the host. Resume: the generator's state (a uint8 CPU tensor) goes into
the checkpoint and back into the generator on resume (`mixer_state`, `restore_mixer`); the
next batches are then mixed exactly as in the uninterrupted run.

Loss: `soft_cross_entropy(logits, targets, eps)` smooths the mixed target, (1 - eps) * target
+ eps / K, which is the same mixture of the two smoothed one-hots; on one-hot targets it
equals nn.CrossEntropyLoss(label_smoothing=eps). Train accuracy under mixing is measured
against `MixedBatch.dominant`, the label with the larger weight per sample (own label on a tie).

The Trainer (executors/trainer.py) mixes each batch after it is on the device and before the
forward pass, trains on `training_criterion`'s loss of the soft targets and counts its step
accuracy against the dominant labels.
"""
import functools
import sys
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from datasets.loading.item_seeds import SEED_STRIDE


class MixParams(NamedTuple):
    """The draws for one batch of B samples, on its device."""
    lam: torch.Tensor  # float32 [B]: Beta(alpha, alpha), the own sample's share; 1 in an unmixed batch
    partner: torch.Tensor  # int64 [B]: index of the sample mixed into each one
    cutmix: torch.Tensor  # bool [B]: cutmix (True) or mixup (False)
    centre: torch.Tensor  # int64 [B, 2]: the cutmix box centre, (row, column) in pixels


class MixedBatch(NamedTuple):
    images: torch.Tensor  # [B, C, H, W]: the input's dtype and memory format
    targets: torch.Tensor  # float32 [B, K]: each row a probability distribution over the K classes
    dominant: torch.Tensor  # int64 [B]: the label of larger weight (the own label on a tie)


def draw_params(batch_size: int, height: int, width: int, generator: torch.Generator, mixup_alpha=0.0,
                cutmix_alpha=0.0, mix_prob=1.0, switch_prob=0.5) -> MixParams:
    """MixParams for a batch of [batch_size, C, height, width] images, drawn from `generator`
    (on the batch's device) in a fixed order. An alpha of 0 turns its method off; at least one
    must be > 0."""
    device = generator.device
    mixed = torch.rand((), generator=generator, device=device) < mix_prob
    cutmix_share = switch_prob if mixup_alpha > 0 and cutmix_alpha > 0 else float(cutmix_alpha > 0)
    cutmix = torch.rand(batch_size, generator=generator, device=device) < cutmix_share
    alpha = torch.where(cutmix, cutmix_alpha, mixup_alpha).to(torch.float32)
    # Beta(a, a) is the first coordinate of Dirichlet(a, a); torch.distributions.Beta takes no generator.
    lam = torch._sample_dirichlet(alpha[:, None].expand(batch_size, 2).contiguous(), generator=generator)[:, 0]
    order = torch.rand(batch_size, generator=generator, device=device).argsort()
    partner = torch.empty_like(order).scatter_(0, order, order.roll(1))  # partner[order[k]] = order[k - 1]
    centre = torch.stack([torch.randint(height, (batch_size,), generator=generator, device=device),
                          torch.randint(width, (batch_size,), generator=generator, device=device)], dim=1)
    return MixParams(torch.where(mixed, lam, 1.0), partner, cutmix, centre)


def cutmix_boxes(lam: torch.Tensor, centre: torch.Tensor, height: int, width: int):
    """(in_box: bool [B, 1, H, W], exact own share: float32 [B]) of the cutmix boxes of area
    ratio about 1 - lam around `centre` (as torchvision v2 CutMix, per sample)."""
    half = 0.5 * torch.sqrt(1.0 - lam)
    half_h, half_w = (half * height).long(), (half * width).long()  # truncation: floor, as v2's int()
    row, col = centre.unbind(dim=1)
    top, bottom = (row - half_h).clamp(min=0), (row + half_h).clamp(max=height)
    left, right = (col - half_w).clamp(min=0), (col + half_w).clamp(max=width)
    rows = torch.arange(height, device=lam.device)
    cols = torch.arange(width, device=lam.device)
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])  # [B, H]
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])  # [B, W]
    in_box = in_rows[:, None, :, None] & in_cols[:, None, None, :]
    share = 1.0 - ((bottom - top) * (right - left)).to(torch.float32) / (height * width)
    return in_box, share


def apply_mix(images: torch.Tensor, labels: torch.Tensor, num_classes: int, params: MixParams) -> MixedBatch:
    """Mix floating-point `images` [B, C, H, W] and int64 `labels` [B] by `params`."""
    height, width = images.shape[-2:]
    partners = images[params.partner]
    in_box, box_share = cutmix_boxes(params.lam, params.centre, height, width)
    share = torch.where(params.cutmix, box_share, params.lam)  # float32 [B]: own image's share
    lam = params.lam.to(images.dtype)[:, None, None, None]
    mixed_up = images * lam + partners * (1 - lam)
    cut = torch.where(in_box, partners, images)
    out = torch.where(params.cutmix[:, None, None, None], cut, mixed_up)
    if images.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    one_hot = _one_hot(labels, num_classes)
    targets = one_hot * share[:, None] + one_hot[params.partner] * (1 - share[:, None])
    dominant = torch.where(share >= 0.5, labels, labels[params.partner])
    return MixedBatch(out, targets, dominant)


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """float32 [B, num_classes] of int64 `labels` [B], without F.one_hot's range checks (which
    read the labels back to the host on some devices)."""
    return (labels[:, None] == torch.arange(num_classes, device=labels.device)).to(torch.float32)


class BatchMixer:
    """Mixup/CutMix as a config's train section sets them, drawing from `generator`:
    `mixer(images [B, C, H, W] float, labels int64 [B]) -> MixedBatch`."""

    def __init__(self, train_cfg, num_classes: int, generator: torch.Generator):
        self.num_classes, self.generator = num_classes, generator
        self.mixup_alpha, self.cutmix_alpha = float(train_cfg.mixup_alpha), float(train_cfg.cutmix_alpha)
        self.mix_prob = 1.0 if train_cfg.mix_prob is None else float(train_cfg.mix_prob)
        self.switch_prob = 0.5 if train_cfg.mix_switch_prob is None else float(train_cfg.mix_switch_prob)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> MixedBatch:
        params = draw_params(images.shape[0], *images.shape[-2:], self.generator, self.mixup_alpha,
                             self.cutmix_alpha, self.mix_prob, self.switch_prob)
        return apply_mix(images, labels, self.num_classes, params)


def make_mixer(train_cfg, num_classes: int, generator: torch.Generator):
    """A BatchMixer for `train_cfg`, or None when train.mixup_alpha and train.cutmix_alpha are
    both 0 (or absent: a config saved before mixing existed)."""
    if not (train_cfg.get("mixup_alpha") or train_cfg.get("cutmix_alpha")):
        return None
    return BatchMixer(train_cfg, num_classes, generator)


def mix_generator(seed: int, device, rank: int = 0) -> torch.Generator:
    """A generator on `device` for process `rank`'s mixing draws, seeded from the run's `seed`
    but not with it: its stream is not the one of torch.manual_seed(seed)."""
    return torch.Generator(device=device).manual_seed((seed * SEED_STRIDE + 1 + rank) % 2 ** 63)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy (0-d, nats) of `logits` [B, K] against probability `targets` [B, K]
    (or int64 labels [B], taken as one-hot) smoothed as (1 - label_smoothing) * targets +
    label_smoothing / K."""
    if targets.dim() == 1:
        targets = _one_hot(targets, logits.shape[1])
    smoothed = targets * (1.0 - label_smoothing) + label_smoothing / logits.shape[1]
    return -(smoothed * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def training_criterion(train_cfg, mixer):
    """The training loss of (logits [B, K], targets) -> 0-d, with train.label_smoothing:
    nn.CrossEntropyLoss of int64 labels [B] without a mixer, soft_cross_entropy of the mixed
    float32 targets [B, K] (or of int64 labels) with one."""
    if mixer is None:
        return nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
    return functools.partial(soft_cross_entropy, label_smoothing=train_cfg.label_smoothing)


def mixer_state(mixer) -> dict:
    """What a checkpoint holds of `mixer`: nothing without one, else {"mix_generator": {"device_type":
    the generator's device type, "state": its uint8 CPU state}}."""
    if mixer is None:
        return {}
    return {"mix_generator": {"device_type": mixer.generator.device.type, "state": mixer.generator.get_state()}}


def restore_mixer(mixer, state: dict) -> None:
    """Put a checkpoint's mixing generator state (mixer_state) back into `mixer`, so that the next
    batches are mixed as in the uninterrupted run. A checkpoint without one (written before
    mixing was wired into training) or from another device type (its generator's state has
    another form) leaves the generator at its seed; the latter says so."""
    saved = state.get("mix_generator")
    if mixer is None or saved is None:
        return
    if saved["device_type"] != mixer.generator.device.type:
        print(f"note: the mixing draws restart from the run's seed: the checkpoint's were made on "
              f"{saved['device_type']}, this run mixes on {mixer.generator.device.type}", file=sys.stderr)
        return
    mixer.generator.set_state(saved["state"])
