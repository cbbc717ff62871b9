"""A loader that keeps a whole split on the training device as uint8 and builds every batch
there: shuffling, cropping, flipping, colour jitter and normalisation in batched tensor
operations, with no per-item Python work and no worker processes.

Randomness comes from CPU generators seeded by (seed, epoch, stream), so an epoch's batches
depend on nothing else: a run resumed at an epoch boundary sees exactly the batches it would have
seen, and every device sees the same ones. With `world_size` > 1 each process takes its
share of every global batch (rank r takes items r, r + world_size, ... of it). In training
(shuffle=True) the epoch's last global batch is then cut to a multiple of world_size, so
every process has a share of the same size (at most world_size - 1 images, a different
few each epoch, are left out); in evaluation every image is counted once.
"""
import math

import numpy as np
import torch

from datasets.loading.item_seeds import stream_seed
from datasets.loading.side_stream import built_ahead
from datasets.transforms.batch import ImageBatch, to_device_nonblocking


class DeviceLoader:
    """Batches {"image": float [b, C, h, w], "label": int64 [b]} of a split held on one device.

    Args:
        images: uint8 [N, C, H, W] on the training device (a canvas; see `sizes`).
        labels: int64 [N] on the same device.
        transform: BatchedCompose for this split (datasets/transforms/batched_transforms.py).
        batch_size: global batch size; the last batch may be smaller.
        shuffle: a new order every epoch (training); False keeps item order (evaluation).
        seed: the run's seed; epoch e uses a generator seeded from (seed, e).
        sizes: int64 [N, 2] on the CPU, (height, width) of each image at the canvas's
            top-left, or None when every image fills the canvas.
        rank, world_size: this process's share of each batch under data parallelism.
        drop_single_last: with shuffle, leave out an epoch's last batch when it would give
            each process one image (`left_out` = 1, images per process), on which BatchNorm
            cannot train: different images each epoch.
    Attribute `built_ahead` (True): on a CUDA device build each batch on a side stream while the
    previous one trains (side_stream.py); the batches are the same either way.
    """

    def __init__(self, images, labels, transform, batch_size, *, shuffle, seed, sizes=None, rank=0, world_size=1,
                 drop_single_last=False):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], not {images.dtype} {list(images.shape)}")
        self.images, self.labels, self.sizes = images, labels, sizes
        self.transform, self.batch_size, self.shuffle = transform, batch_size, shuffle
        self.seed, self.epoch = seed, 0
        self.rank, self.world_size = rank, world_size
        self.built_ahead = True
        self.left_out = int(shuffle and drop_single_last and self._whole_shares() % batch_size == world_size)

    def _whole_shares(self) -> int:
        """Images per epoch cut so that every process has a share of the same size (see the module docstring)."""
        count = len(self.labels)
        if not self.shuffle or self.world_size == 1:
            return count
        return count - (count % self.batch_size) % self.world_size

    def _epoch_size(self) -> int:
        """Images per epoch over all processes: _whole_shares() less the images left out."""
        return self._whole_shares() - self.left_out * self.world_size

    def __len__(self):
        return math.ceil(self._epoch_size() / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the order and augmentations of epoch `epoch` (0-based)."""
        self.epoch = epoch

    def _generator(self, stream: int):
        """CPU generator of this epoch's stream: 0 shuffles (the same on every process), 1 + rank augments."""
        return torch.Generator().manual_seed(stream_seed(self.seed, self.epoch, stream))

    def __iter__(self):
        batches = self._batches()
        return built_ahead(batches, self.images.device) if self.built_ahead and self.images.is_cuda else batches

    def _batches(self):
        generator = self._generator(1 + self.rank)
        count = len(self.labels)
        order = torch.randperm(count, generator=self._generator(0)) if self.shuffle else torch.arange(count)
        order = order[:self._epoch_size()]
        for start in range(0, len(order), self.batch_size):
            indices = order[start:start + self.batch_size][self.rank::self.world_size]
            if len(indices):  # an evaluation share can be empty: nothing to count there
                yield self._batch(indices, generator)

    def _batch(self, indices, generator):
        on_device = to_device_nonblocking(indices, self.images.device)
        sizes = self.sizes[indices] if self.sizes is not None else None
        images = self.transform(ImageBatch(self.images.index_select(0, on_device), sizes), generator)
        return {"image": images, "label": self.labels.index_select(0, on_device)}

    def preview(self, count=8):
        """(originals: list of uint8 arrays [H, W] or [H, W, C], augmented: float [n, C, h, w],
        labels: list of ints) for `count` items spread over the split, for show_batch.
        Uses its own generator: the training run's random streams are untouched."""
        indices = torch.arange(0, len(self.labels), max(1, len(self.labels) // count))[:count]
        batch = self._batch(indices, torch.Generator().manual_seed(self.seed))
        originals = []
        for index in indices.tolist():
            image = self.images[index].cpu()
            if self.sizes is not None:
                height, width = self.sizes[index].tolist()
                image = image[:, :height, :width]
            originals.append(np.ascontiguousarray(image.permute(1, 2, 0).squeeze(-1).numpy()))
        return originals, batch["image"], batch["label"].cpu().tolist()
