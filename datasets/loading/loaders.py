"""Datasets and loaders from the config: the one place that knows every dataset class and
chooses between the loader paths (`data.loader`):

* `workers`: per-item Dataset -> PIL transforms -> torch DataLoader with `data.num_workers`.
* `device`: the whole split held on the training device as uint8, batches shuffled and
  augmented there (datasets/loading/device_loader.py).
* `cached`: per-item workers as above, but taking each image from the decoded cache and
  transforming it as an 8-bit array (crop, flip and colour jitter with their own twins),
  normalised into the batch (datasets/loading/cached_items.py).
* `auto`: `device` when every transform of every split has a batched version, the splits
  together take at most DEVICE_MEMORY_SHARE of the device's memory (GPU memory, or RAM for
  the CPU), and the data is in memory already or the device is a GPU. Image files that do
  not take it (always on the CPU) take `cached`, which measured fastest there (README,
  "Speed"), when their lists allow it and they fit DEVICE_MEMORY_SHARE of the RAM.
  Otherwise `workers`, with a one-line note saying why.

With `data.val_fraction` > 0 a stratified share of the training split, fixed by
`data.val_seed` (None: the run's seed), becomes a third split, "val", evaluated with the
test transforms on either path.
"""
import os

import torch
from torch.utils.data import DataLoader

from datasets.kmnist import KMNIST
from datasets.loading.cached_items import CachedImages, NotCacheable, per_item_plan
from datasets.loading.device_data import device_memory_bytes, estimated_bytes, is_in_memory, split_tensors
from datasets.loading.device_loader import DeviceLoader
from datasets.loading.item_seeds import EpochItems, SeededItems
from datasets.loading.splits import holdout_indices, subset
from datasets.oxford_pet import OxfordIIITPet
from datasets.transforms.batched_transforms import NotBatchable, build_batched_transforms, split_prefix
from datasets.transforms.building import build_transforms
from utils.errors import ConfigError, DataError, UnsuitableLoader, did_you_mean
from utils.runtime import resolve_device
from utils.validation import LOADERS

DATASETS = {"KMNIST": KMNIST, "OxfordIIITPet": OxfordIIITPet}
DEVICE_MEMORY_SHARE = 0.25
TRANSFORMS_OF = {"train": "train", "val": "test", "test": "test"}  # validation images are evaluated as test ones


class Loaders(tuple):
    """(train_loader, test_loader, class_names), unpacked and indexed as before; `.val` is the
    validation loader (data.val_fraction > 0) or None."""

    def __new__(cls, train, test, class_names, val=None):
        loaders = super().__new__(cls, (train, test, class_names))
        loaders.val = val
        return loaders


def dataset_class(name):
    """The dataset class registered under `data.name`."""
    if name not in DATASETS:
        hint = did_you_mean(str(name), DATASETS)
        raise ConfigError(f"Unknown data.name '{name}'; choose one of {', '.join(DATASETS)}.{hint}")
    return DATASETS[name]


def split_datasets(cfg):
    """{"train", ["val",] "test"} datasets of cfg.data without transforms; "val" holds out
    data.val_fraction of the training split (holdout_indices, from data.val_seed, or cfg.seed
    when that is None)."""
    data_cfg = cfg.data
    datasets = {split: dataset_class(data_cfg.name)(data_cfg, split) for split in ("train", "test")}
    fraction = data_cfg.get("val_fraction") or 0.0
    if fraction > 0:
        val_seed = data_cfg.get("val_seed")
        train_indices, val_indices = holdout_indices(datasets["train"].labels, fraction,
                                                     cfg.seed if val_seed is None else val_seed)
        if len(val_indices) == 0:
            raise ConfigError(f"data.val_fraction={fraction} holds out no image: round(val_fraction x images of a "
                              f"class) is 0 for every class of the {len(datasets['train'])} training images; "
                              f"raise it, or set 0 to select on the test split.")
        datasets["val"] = subset(datasets["train"], val_indices, "val")
        datasets["train"] = subset(datasets["train"], train_indices, "train")
    return datasets


def build_dataset(data_cfg, split):
    """The `split` ("train" | "test") dataset with its configured transforms."""
    transforms = build_transforms(data_cfg.transforms[split], data_cfg.mean, data_cfg.std)
    return dataset_class(data_cfg.name)(data_cfg, split, transforms)


class EpochDataLoader(DataLoader):
    """A DataLoader over SeededItems whose EpochItems sampler is told the epoch."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def left_out(self) -> int:
        """Images of this process left out of each epoch for BatchNorm's sake (EpochItems)."""
        return self.sampler.left_out


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the system has one (as torch's
    DataLoader counts them), else os.cpu_count()."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(requested: int):
    """(worker processes to start, note or None): data.num_workers capped at usable_cpus(),
    beyond which torch's DataLoader warns that workers may run slowly or freeze."""
    cpus = usable_cpus()
    if requested <= cpus:
        return requested, None
    return cpus, (f"note: data.num_workers={requested} is more than the {cpus} CPUs this process may use: "
                  f"{cpus} worker processes are started")


def make_loader(dataset, cfg, split, batch_size=None, rank=0, world_size=1, collate_fn=None, drop_single_last=False):
    """DataLoader over `dataset` for process `rank` of `world_size`, with its share of the
    global batch and data.num_workers worker processes (at most usable_cpus()); the training
    split is shuffled per epoch, and every item's randomness is fixed by (cfg.seed, epoch,
    index) (datasets/loading/item_seeds.py), so the worker processes stay alive from epoch to epoch.
    collate_fn None: torch's default (stacks the items' tensors). drop_single_last: leave out a
    last training batch of one image (see EpochItems)."""
    workers, _ = worker_count(cfg.data.num_workers)
    per_process = (batch_size or cfg.train.batch_size) // world_size
    sampler = EpochItems(len(dataset), cfg.seed, shuffle=split == "train", rank=rank, world_size=world_size,
                         batch_size=per_process, drop_single_last=drop_single_last)
    return EpochDataLoader(SeededItems(dataset), batch_size=per_process,
                           sampler=sampler, num_workers=workers, collate_fn=collate_fn,
                           pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                           prefetch_factor=4 if workers else None,
                           generator=torch.Generator().manual_seed(cfg.seed))  # its base seed, not the run's stream


def _device_problem(dataset, prefix, transform):
    """Why a split (its dataset, deterministic prefix specs and BatchedCompose) cannot take
    the device path, or None when it can."""
    if is_in_memory(dataset):
        if prefix:
            return f"{' + '.join(n for n, _ in prefix)} on in-memory images has no batched version"
        return None
    uniform = bool(prefix) and prefix[-1][0] == "CenterCrop"
    if not uniform and not transform.handles_ragged:
        return (f"the {dataset.split} images differ in size and {transform} does not start with "
                f"RandomResizedCrop, the batched transform that takes images of several sizes")
    return None


def _batched_plans(data_cfg, datasets):
    """{split: (prefix specs, BatchedCompose)}; raises NotBatchable naming what cannot be batched."""
    plans = {}
    for split, dataset in datasets.items():
        prefix, rest = split_prefix(data_cfg.transforms[TRANSFORMS_OF[split]])
        plans[split] = prefix, build_batched_transforms(rest, data_cfg.mean, data_cfg.std)
        problem = _device_problem(dataset, *plans[split])
        if problem:
            raise NotBatchable(problem)
    return plans


def _cached_plans(data_cfg, datasets):
    """{split: (prefix specs, per-item transform, NormalizeBatch)}; raises NotCacheable."""
    if any(is_in_memory(dataset) for dataset in datasets.values()):
        raise NotCacheable("the images are in memory already, with nothing to decode")
    plans = {}
    for split in datasets:
        prefix, rest = split_prefix(data_cfg.transforms[TRANSFORMS_OF[split]])
        plans[split] = (prefix, *per_item_plan(rest, data_cfg.mean, data_cfg.std))
    return plans


def _check_fits(data_cfg, datasets, plans, device):
    """Raise UnsuitableLoader when the splits, held as uint8 (plans: {split: (prefix specs,
    ...)}), take more than DEVICE_MEMORY_SHARE of `device`'s memory (RAM for the CPU)."""
    needed = sum(estimated_bytes(datasets[split], plans[split][0], data_cfg) for split in plans)
    memory = device_memory_bytes(device)
    if memory is None or needed > DEVICE_MEMORY_SHARE * memory:
        raise UnsuitableLoader(f"the splits need about {needed / 2**30:.1f} GiB as uint8, more than "
                               f"{DEVICE_MEMORY_SHARE:.0%} of the {device.type} memory",
                               "data.loader='device' or 'cached' forces it")


def _cached_or_workers(cfg, datasets, why_not_device):
    """auto's choice for image files that do not take the device path: ("cached", plans,
    reason) when the transform lists allow it and the splits fit DEVICE_MEMORY_SHARE of the
    RAM, else ("workers", None, reason)."""
    try:
        plans = _cached_plans(cfg.data, datasets)
        _check_fits(cfg.data, datasets, plans, torch.device("cpu"))
    except UnsuitableLoader as refusal:
        return "workers", None, str(refusal)
    return "cached", plans, f"{why_not_device}; the cached path measured fastest"


def choose_loader(cfg, datasets, device):
    """(kind, plans, reason): kind "device" with plans {split: (prefix, BatchedCompose)},
    "cached" with plans {split: (prefix, per-item transform, NormalizeBatch)}, or "workers"
    with plans None, for `datasets` {split: dataset}, as data.loader asks."""
    choice = cfg.data.get("loader", "auto")
    if choice not in LOADERS:
        raise ConfigError(f"data.loader='{choice}' is not one of {', '.join(LOADERS)}.{did_you_mean(choice, LOADERS)}")
    if choice in ("workers", "cached"):
        plans = _cached_plans(cfg.data, datasets) if choice == "cached" else None
        return choice, plans, f"data.loader='{choice}'"
    files = not is_in_memory(datasets["train"])
    if choice == "auto" and files and device.type == "cpu":
        return _cached_or_workers(cfg, datasets, "image files on the CPU")
    try:
        plans = _batched_plans(cfg.data, datasets)
        if choice == "auto":
            _check_fits(cfg.data, datasets, plans, device)
    except UnsuitableLoader as refusal:
        if choice == "device":
            raise
        return _cached_or_workers(cfg, datasets, refusal.problem) if files else ("workers", None, str(refusal))
    if choice == "device":
        return "device", plans, "data.loader='device'"
    return "device", plans, f"both splits fit in {device.type} memory as uint8"


def _device_loaders(cfg, datasets, plans, device, rank, world_size, drop_single_last):
    loaders = {}
    for split, (prefix, transform) in plans.items():
        images, sizes, labels = split_tensors(datasets[split], prefix, cfg.data, device)
        loaders[split] = DeviceLoader(images, labels, transform, cfg.train.batch_size, shuffle=split == "train",
                                      seed=cfg.seed, sizes=sizes, rank=rank, world_size=world_size,
                                      drop_single_last=drop_single_last)
    return loaders


def _cached_loaders(cfg, datasets, plans, rank, world_size, drop_single_last):
    """{split: DataLoader over CachedImages of the split's decoded cache, batched by its NormalizeBatch}."""
    loaders = {}
    for split, (prefix, transform, normalize) in plans.items():
        images, sizes, labels = split_tensors(datasets[split], prefix, cfg.data, torch.device("cpu"))
        items = CachedImages(images, sizes, labels, transform, split)
        loaders[split] = make_loader(items, cfg, split, rank=rank, world_size=world_size, collate_fn=normalize,
                                     drop_single_last=drop_single_last)
    return loaders


def _check_training_batches(loader, world_size) -> None:
    """Print a note when BatchNorm's sake leaves images out of each epoch; DataError when no
    training batch is left."""
    if loader.left_out:
        print(f"note: the last training batch of each epoch would hold 1 image{' per process' * (world_size > 1)}, "
              f"on which BatchNorm cannot train: it is left out (a different image each epoch)")
    if len(loader) == 0:
        raise DataError("The training split holds a single image, on which BatchNorm cannot train: give it at "
                        "least 2 images.")


def build_loaders(cfg, rank=0, world_size=1, drop_single_last=False) -> Loaders:
    """Loaders (train_loader, test_loader, class_names; `.val` the validation loader or None),
    on the path data.loader chooses, for process `rank` of `world_size` (each gets its share of
    every global batch of cfg.train.batch_size). With data.val_fraction > 0 the validation
    images are held out of the training split (split_datasets) and transformed as test images.
    data.num_workers is capped at the CPUs this process may use, with a note (worker_count).
    drop_single_last (for a model with BatchNorm): a last training batch that would give a
    process one image is left out of each epoch, with a note.

    When data.mean/std are None they are computed from the training images (what
    show_statistic prints) and written into cfg, so the saved config records them.
    """
    data_cfg = cfg.data
    datasets = split_datasets(cfg)
    if data_cfg.mean is None or data_cfg.std is None:
        mean, std = datasets["train"].pixel_statistics()
        data_cfg.mean, data_cfg.std = [round(m, 6) for m in mean], [round(s, 6) for s in std]
        print(f"{data_cfg.name} training-set statistics for Normalize: mean={data_cfg.mean} std={data_cfg.std}")
    device = resolve_device(cfg.device)
    kind, plans, reason = choose_loader(cfg, datasets, device)
    workers, workers_note = worker_count(data_cfg.num_workers)
    if kind == "device":
        loaders = _device_loaders(cfg, datasets, plans, device, rank, world_size, drop_single_last)
        print(f"Data loader: device, batches built on {device} ({reason})")
    elif kind == "cached":
        loaders = _cached_loaders(cfg, datasets, plans, rank, world_size, drop_single_last)
        print(f"Data loader: cached, {workers} worker processes over the decoded cache ({reason})")
    else:
        for split, dataset in datasets.items():
            key = f"data.transforms.{TRANSFORMS_OF[split]}"
            dataset.transforms = build_transforms(data_cfg.transforms[TRANSFORMS_OF[split]], data_cfg.mean,
                                                  data_cfg.std, key=key)
        loaders = {split: make_loader(dataset, cfg, split, rank=rank, world_size=world_size,
                                      drop_single_last=drop_single_last)
                   for split, dataset in datasets.items()}
        print(f"Data loader: workers, {workers} worker processes ({reason})")
    if workers_note and kind != "device":
        print(workers_note)
    _check_training_batches(loaders["train"], world_size)
    if "val" in loaders:
        print(f"Validation: {len(datasets['val'])} training images held out (data.val_fraction="
              f"{data_cfg.val_fraction}); best.pt is chosen on them")
    return Loaders(loaders["train"], loaders["test"], list(datasets["train"].classes), loaders.get("val"))
