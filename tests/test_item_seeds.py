"""Per-item randomness of the workers and cached paths (datasets/loading/item_seeds.py): the epoch's
order and every item's augmentation follow from (seed, epoch, index) alone, so batches do not
depend on the number of worker processes, the main process's random stream is untouched, and
the workers live through the run."""
import os
import random

import pytest
import torch
from torch.utils.data import Dataset

import datasets.loading.loaders
from datasets.kmnist import KMNIST
from datasets.loading.item_seeds import EpochItems, SeededItems, dataset_of, stream_seed
from tests.test_device_loader import kmnist_cfg, kmnist_root  # noqa: F401


def shares(size, world_size, shuffle, epoch=0, seed=4):
    """[[(index, item seed), ...] of each rank] of one epoch."""
    samplers = [EpochItems(size, seed, shuffle, rank, world_size) for rank in range(world_size)]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers]


def test_training_order_is_a_permutation_fixed_by_seed_and_epoch():
    (first,) = shares(50, 1, shuffle=True, epoch=2)
    assert sorted(index for index, _ in first) == list(range(50)) and len(EpochItems(50, 4, True)) == 50
    assert first == shares(50, 1, shuffle=True, epoch=2)[0]
    assert [i for i, _ in first] != [i for i, _ in shares(50, 1, shuffle=True, epoch=3)[0]]
    assert [i for i, _ in first] != [i for i, _ in shares(50, 1, shuffle=True, epoch=2, seed=5)[0]]
    assert all(seed == stream_seed(4, 2, 1 + index) for index, seed in first)
    assert len({seed for _, seed in first} | {seed for _, seed in shares(50, 1, True, epoch=3)[0]}) == 100


def test_training_shares_split_one_padded_permutation_as_distributed_sampler_does():
    (whole,) = shares(10, 1, shuffle=True)
    parts = shares(10, 3, shuffle=True)
    assert [len(part) for part in parts] == [4, 4, 4]
    padded = whole + whole[:2]
    assert all(parts[rank] == padded[rank::3] for rank in range(3))
    tiny = shares(2, 3, shuffle=True)  # fewer items than processes: every rank still gets one
    assert [len(part) for part in tiny] == [1, 1, 1]


def test_evaluation_shares_count_every_item_once_in_order():
    parts = shares(10, 3, shuffle=False)
    assert [[i for i, _ in part] for part in parts] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert [len(EpochItems(10, 0, False, rank, 3)) for rank in range(3)] == [4, 3, 3]


class Draws(Dataset):
    """Item i: {"image": the next torch and Python random numbers, "label": the process id}."""

    def __len__(self):
        return 12

    def __getitem__(self, index):
        draws = torch.tensor([torch.rand(()).item(), random.random()], dtype=torch.float64)
        return {"image": draws, "label": os.getpid()}


def epochs_of(loader, count):
    """[[batch, ...] of each epoch] for epochs 0 .. count - 1."""
    out = []
    for epoch in range(count):
        loader.set_epoch(epoch)
        out.append(list(loader))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_items_draw_from_their_own_seeds_and_leave_the_run_s_stream_alone(kmnist_root, tmp_path, workers):  # noqa: F811
    cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp", f"data.num_workers={workers}")
    loader = datasets.loading.loaders.make_loader(Draws(), cfg, "train", batch_size=4)
    torch.manual_seed(0)
    random.seed(0)
    expected = torch.rand(()), random.random()
    torch.manual_seed(0)
    random.seed(0)
    epochs = epochs_of(loader, 2)
    assert (torch.rand(()), random.random()) == expected  # not one draw taken from the main process's generators
    for epoch, batches in enumerate(epochs):
        draws = torch.cat([batch["image"] for batch in batches])
        loader.set_epoch(epoch)
        for row, (index, seed) in zip(draws, loader.sampler):
            torch.manual_seed(seed)
            random.seed(seed)
            assert row.tolist() == [torch.rand(()).item(), random.random()]
    assert not torch.equal(epochs[0][0]["image"], epochs[1][0]["image"])


def test_worker_processes_live_through_the_epochs(kmnist_root, tmp_path):  # noqa: F811
    cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp", "data.num_workers=2")
    loader = datasets.loading.loaders.make_loader(Draws(), cfg, "train", batch_size=4)
    pids = [{pid for batch in batches for pid in batch["label"].tolist()} for batches in epochs_of(loader, 3)]
    assert len(pids[0]) == 2 and os.getpid() not in pids[0] and pids[0] == pids[1] == pids[2]


def test_augmented_kmnist_batches_do_not_depend_on_the_number_of_workers(kmnist_root, tmp_path):  # noqa: F811
    batches = {}
    for workers in (0, 2):
        cfg = kmnist_cfg(kmnist_root, tmp_path, "mlp_augment", "data.loader='workers'",
                         f"data.num_workers={workers}")
        train = datasets.loading.loaders.build_loaders(cfg).train
        assert isinstance(train.dataset, SeededItems) and isinstance(dataset_of(train), KMNIST)
        batches[workers] = [batch for epoch in epochs_of(train, 2) for batch in epoch[:3]]
    for alone, parallel in zip(batches[0], batches[2]):
        assert torch.equal(alone["label"], parallel["label"]) and torch.equal(alone["image"], parallel["image"])
    assert not torch.equal(batches[0][0]["image"], batches[0][3]["image"])  # epoch 1 is another epoch
    device_train = datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "mlp_augment")).train
    assert dataset_of(device_train) is None  # the device loader holds tensors, not a dataset
