"""Randomness of the per-item paths (`workers`, `cached`) fixed by (seed, epoch, index).

An epoch's order is a permutation drawn from (seed, epoch), as on the device path
(datasets/loading/device_loader.py), and each item is transformed with torch's and Python's
generators seeded from (seed, epoch, index). So an epoch's batches depend on nothing else:
not on data.num_workers, not on which worker process transforms an item, not on the
run's other random draws (dropout). Worker processes can therefore live through the
whole run (persistent_workers), and a run resumed at an epoch boundary sees exactly the
batches it would have seen.

Splits of more than SEED_STRIDE items would share item seeds with the next epoch's.
"""
import math
import random

import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

SEED_STRIDE = 1_000_003  # epochs of one seed never reuse another seed's generator states


def stream_seed(seed: int, epoch: int, stream: int) -> int:
    """Seed in [0, 2**63) of random stream `stream` in epoch `epoch` of a run seeded `seed`."""
    return ((seed * SEED_STRIDE + epoch) * SEED_STRIDE + stream) % 2 ** 63


class EpochItems(Sampler):
    """(index, item seed) pairs of this process's share of an epoch, for SeededItems.

    shuffle=True (training): the items in a permutation drawn from stream 0 of (seed, epoch),
    the same in every process; with world_size > 1 it is padded with its first items to a
    multiple of world_size, and process `rank` takes items rank, rank + world_size, ...
    (DistributedSampler's split). shuffle=False (evaluation): item order, and each item in
    exactly one process's share. Item i is transformed from stream 1 + i.

    With drop_single_last (a model with BatchNorm, which cannot train on one image) and
    shuffle, a share whose last batch of `batch_size` would hold one item leaves that item
    out (`left_out` = 1): a different item each epoch, the same count in every process.
    """

    def __init__(self, size: int, seed: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                 batch_size: int = 1, drop_single_last: bool = False):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.share = math.ceil(size / world_size) if shuffle else len(range(rank, size, world_size))
        self.left_out = int(shuffle and drop_single_last and self.share % batch_size == 1)

    def set_epoch(self, epoch: int) -> None:
        """Choose the order and augmentations of epoch `epoch` (0-based)."""
        self.epoch = epoch

    def _order(self) -> list:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(stream_seed(self.seed, self.epoch, 0))
        order = torch.randperm(self.size, generator=generator).tolist()
        padded = self.share * self.world_size
        return (order * math.ceil(padded / max(1, self.size)))[:padded]

    def __iter__(self):
        return ((index, stream_seed(self.seed, self.epoch, 1 + index))
                for index in self._order()[self.rank::self.world_size][:len(self)])

    def __len__(self):
        return self.share - self.left_out


def _reseed(seed: int) -> None:
    torch.default_generator.manual_seed(seed)  # the CPU generator alone: torch.manual_seed also seeds GPUs, 100x slower
    random.seed(seed)  # torchvision's RandomChoice and RandomOrder draw from Python's generator


class SeededItems(Dataset):
    """`dataset` indexed by EpochItems' (index, seed) pairs: item `index`, its transforms
    drawing from generators seeded with `seed`. In a worker process the generators are just
    reseeded; in the main process (data.num_workers=0) their states are put back afterwards,
    so the run's own random stream is the same for any number of workers."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        if get_worker_info() is not None:
            _reseed(seed)
            return self.dataset[index]
        torch_state, python_state = torch.get_rng_state(), random.getstate()
        try:
            _reseed(seed)
            return self.dataset[index]
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(python_state)


def dataset_of(loader):
    """The dataset a per-item DataLoader takes its items from (inside SeededItems), or None
    for a loader without one (DeviceLoader)."""
    dataset = getattr(loader, "dataset", None)
    return dataset.dataset if isinstance(dataset, SeededItems) else dataset
