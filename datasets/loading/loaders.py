"""Datasets and loaders from the config: the one place that knows every dataset class,
chooses between the loader paths (`data.loader`) and builds the chosen path's loaders.

The choice is a plain decision: choose_loader returns (path, reason) from checks that each
return a refusal (an UnsuitableLoader: the problem and what to do) or None. Paths: `device`
(each split held on the training device as uint8 and batched there: device_loader.py),
`cached` (DataLoader workers over the decoded cache with 8-bit transforms: cached_items.py),
`workers` (DataLoader workers with PIL transforms). `auto` takes `device` for in-memory data
or on a GPU, when every split's transforms have batched versions and the splits take at most
DEVICE_MEMORY_SHARE of the device's memory. Image files that do not take it (always on the
CPU) take `cached`, measured fastest there (README, "Speed"), when their lists allow it and
they fit DEVICE_MEMORY_SHARE of the RAM; otherwise `workers`, with a one-line note saying why.
Image files that could take either on a CUDA GPU, in a single-process run given a `step_rate`,
take the one a short measured probe finds trains faster (loader_probe.py), the note giving
both training rates.

With `data.val_fraction` > 0 a stratified share of the training split, fixed by
`data.val_seed` (None: the run's seed), becomes a third split, "val", evaluated with the
test transforms on either path.
"""
import os
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from datasets.kmnist import KMNIST
from datasets.loading.cached_items import CachedImages, NotCacheable, per_item_plan
from datasets.loading.device_data import device_memory_bytes, estimated_bytes, is_in_memory, split_tensors
from datasets.loading.device_loader import DeviceLoader
from datasets.loading.item_seeds import EpochItems, SeededItems
from datasets.loading.loader_probe import probe_choice
from datasets.loading.splits import TRANSFORMS_OF, holdout_indices, subset, transform_specs
from datasets.oxford_pet import OxfordIIITPet
from datasets.transforms.batched_transforms import NotBatchable, split_prefix
from datasets.transforms.building import build_transforms
from utils.errors import ConfigError, DataError, UnsuitableLoader, did_you_mean
from utils.runtime import resolve_device
from utils.validation import LOADERS

DATASETS = {"KMNIST": KMNIST, "OxfordIIITPet": OxfordIIITPet}
DEVICE_MEMORY_SHARE = 0.25


@dataclass
class Loaders:
    """The loaders of one run: `train`, `test`, `val` (None without data.val_fraction) and the
    class names. Iterating gives (train, test, class_names), so Trainer(cfg, *loaders,
    val_loader=loaders.val) takes them."""

    train: object
    test: object
    class_names: list
    val: object = None

    def __iter__(self):
        return iter((self.train, self.test, self.class_names))


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
    transforms = build_transforms(transform_specs(data_cfg, split), data_cfg.mean, data_cfg.std)
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


def split_batch_size(cfg, split: str) -> int:
    """The global batch of `split`: train.batch_size for "train", else eval.batch_size (None: the same)."""
    return cfg.train.batch_size if split == "train" else cfg.eval.get("batch_size") or cfg.train.batch_size


def make_loader(dataset, cfg, split, batch_size=None, rank=0, world_size=1, collate_fn=None, drop_single_last=False):
    """DataLoader over `dataset` for process `rank` of `world_size`, with its share of the
    global batch and data.num_workers worker processes (at most usable_cpus()); the training
    split is shuffled per epoch, and every item's randomness is fixed by (cfg.seed, epoch,
    index) (datasets/loading/item_seeds.py), so the worker processes stay alive from epoch to epoch.
    collate_fn None: torch's default (stacks the items' tensors). drop_single_last: leave out a
    last training batch of one image (see EpochItems)."""
    workers, _ = worker_count(cfg.data.num_workers)
    per_process = (batch_size or split_batch_size(cfg, split)) // world_size
    sampler = EpochItems(len(dataset), cfg.seed, shuffle=split == "train", rank=rank, world_size=world_size,
                         batch_size=per_process, drop_single_last=drop_single_last)
    return EpochDataLoader(SeededItems(dataset), batch_size=per_process,
                           sampler=sampler, num_workers=workers, collate_fn=collate_fn,
                           pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                           prefetch_factor=4 if workers else None,
                           generator=torch.Generator().manual_seed(cfg.seed))  # its base seed, not the run's stream


def batched_refusal(data_cfg, datasets):
    """Why some split of `datasets` {split: dataset} cannot be batched on the device (a
    transform without a batched version; a prefix on in-memory images; images of several
    sizes without RandomResizedCrop first), or None."""
    for split, dataset in datasets.items():
        prefix, rest = split_prefix(transform_specs(data_cfg, split))
        try:
            transform = build_transforms(rest, data_cfg.mean, data_cfg.std, family="batched")
        except NotBatchable as refusal:
            return refusal
        if is_in_memory(dataset) and prefix:
            return NotBatchable(f"{' + '.join(n for n, _ in prefix)} on in-memory images has no batched version")
        uniform = bool(prefix) and prefix[-1][0] == "CenterCrop"
        if not is_in_memory(dataset) and not uniform and not transform.handles_ragged:
            return NotBatchable(f"the {dataset.split} images differ in size and {transform} does not start with "
                                f"RandomResizedCrop, the batched transform that takes images of several sizes")
    return None


def cached_refusal(data_cfg, datasets):
    """Why the splits cannot take the cached path (images in memory already; a list that
    does not end in ToTensor (+ Normalize); no OpenCV), or None."""
    if any(is_in_memory(dataset) for dataset in datasets.values()):
        return NotCacheable("the images are in memory already, with nothing to decode")
    for split in datasets:
        try:
            per_item_plan(split_prefix(transform_specs(data_cfg, split))[1], data_cfg.mean, data_cfg.std)
        except NotCacheable as refusal:
            return refusal
    return None


def memory_refusal(data_cfg, datasets, device: torch.device):
    """A refusal when the splits, held as uint8, need more than DEVICE_MEMORY_SHARE of
    `device`'s memory (RAM for the CPU) or it is unknown, else None."""
    needed = sum(estimated_bytes(dataset, split_prefix(transform_specs(data_cfg, split))[0], data_cfg)
                 for split, dataset in datasets.items())
    memory = device_memory_bytes(device)
    if memory is None or needed > DEVICE_MEMORY_SHARE * memory:
        return UnsuitableLoader(f"the splits need about {needed / 2**30:.1f} GiB as uint8, more than "
                                f"{DEVICE_MEMORY_SHARE:.0%} of the {device.type} memory",
                                "data.loader='device' or 'cached' forces it")
    return None


def _cached_path_refusal(data_cfg, datasets):
    """Why the splits cannot take the cached path, their lists or the RAM, or None."""
    return cached_refusal(data_cfg, datasets) or memory_refusal(data_cfg, datasets, torch.device("cpu"))


def choose_loader(cfg, datasets, device: torch.device, step_rate=None, world_size=1):
    """(path: "device" | "cached" | "workers", reason: words for the note) for `datasets`
    {split: dataset} on `device`, as data.loader asks. A forced path the splits cannot take
    raises its refusal (a ConfigError); an unknown data.loader is a ConfigError. `auto` probes
    both paths (loader_probe.probe_choice) for image files either can take on a CUDA device when
    `step_rate` (build_loaders) is given and `world_size` is 1."""
    choice, data_cfg = cfg.data.get("loader", "auto"), cfg.data
    if choice not in LOADERS:
        raise ConfigError(f"data.loader='{choice}' is not one of {', '.join(LOADERS)}.{did_you_mean(choice, LOADERS)}")
    if choice != "auto":
        check = {"device": batched_refusal, "cached": cached_refusal}.get(choice)
        refusal = check(data_cfg, datasets) if check else None
        if refusal:
            raise refusal
        return choice, f"data.loader='{choice}'"
    files = not is_in_memory(datasets["train"])
    if files and device.type == "cpu":
        not_device = "image files on the CPU"
    else:
        refusal = batched_refusal(data_cfg, datasets) or memory_refusal(data_cfg, datasets, device)
        if refusal is None:
            if (files and device.type == "cuda" and step_rate is not None and world_size == 1
                    and _cached_path_refusal(data_cfg, datasets) is None):
                return probe_choice(cfg, datasets["train"], device, step_rate, make_loader,
                                    worker_count(data_cfg.num_workers)[0])
            return "device", f"both splits fit in {device.type} memory as uint8"
        if not files:
            return "workers", str(refusal)
        not_device = refusal.problem
    refusal = _cached_path_refusal(data_cfg, datasets)
    if refusal:
        return "workers", str(refusal)
    return "cached", f"{not_device}; the cached path measured fastest"


def _split_loader(path, cfg, split, dataset, device, **share):
    """The loader of `split` on `path`: a DeviceLoader over the split held on `device` as uint8
    (batched transforms), a DataLoader over CachedImages of its decoded cache (8-bit transforms,
    batched by NormalizeBatch), or a DataLoader over the dataset with per-item transforms.
    `share`: rank, world_size and drop_single_last, as build_loaders takes them."""
    data_cfg = cfg.data
    prefix, rest = split_prefix(transform_specs(data_cfg, split))
    if path == "device":
        images, sizes, labels = split_tensors(dataset, prefix, data_cfg, device)
        return DeviceLoader(images, labels, build_transforms(rest, data_cfg.mean, data_cfg.std, family="batched"),
                            split_batch_size(cfg, split), shuffle=split == "train", seed=cfg.seed, sizes=sizes,
                            **share)
    if path == "cached":
        transform, normalize = per_item_plan(rest, data_cfg.mean, data_cfg.std)
        images, sizes, labels = split_tensors(dataset, prefix, data_cfg, torch.device("cpu"))
        return make_loader(CachedImages(images, sizes, labels, transform, split), cfg, split, collate_fn=normalize,
                           **share)
    dataset.transforms = build_transforms(transform_specs(data_cfg, split), data_cfg.mean, data_cfg.std,
                                          key=f"data.transforms.{TRANSFORMS_OF[split]}")
    return make_loader(dataset, cfg, split, **share)


def _check_training_batches(loader, world_size) -> None:
    """Print a note when BatchNorm's sake leaves images out of each epoch; DataError when no
    training batch is left."""
    if loader.left_out:
        print(f"note: the last training batch of each epoch would hold 1 image{' per process' * (world_size > 1)}, "
              f"on which BatchNorm cannot train: it is left out (a different image each epoch)")
    if len(loader) == 0:
        raise DataError("The training split holds a single image, on which BatchNorm cannot train: give it at "
                        "least 2 images.")


def build_loaders(cfg, rank=0, world_size=1, drop_single_last=False, step_rate=None) -> Loaders:
    """Loaders (train, test, val or None, class_names) on the path choose_loader takes, for
    process `rank` of `world_size` (each gets its share of every global batch of
    cfg.train.batch_size). With data.val_fraction > 0 the validation images are held out of
    the training split (split_datasets) and transformed as test images.
    data.num_workers is capped at the CPUs this process may use, with a note (worker_count).
    drop_single_last (for a model with BatchNorm): a last training batch that would give a
    process one image is left out of each epoch, with a note. step_rate: callable(num_classes,
    device) -> callable(iterator of batches on device) -> images/s of training steps on them
    (executors/step/rate.py), which lets `auto` probe the paths on a GPU (choose_loader); None: no probe.

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
    path, reason = choose_loader(cfg, datasets, device, step_rate, world_size)
    workers, workers_note = worker_count(data_cfg.num_workers)
    loaders = {split: _split_loader(path, cfg, split, dataset, device, rank=rank, world_size=world_size,
                                    drop_single_last=drop_single_last)
               for split, dataset in datasets.items()}
    how = {"device": f"batches built on {device}", "cached": f"{workers} worker processes over the decoded cache",
           "workers": f"{workers} worker processes"}[path]
    print(f"Data loader: {path}, {how} ({reason})")
    if workers_note and path != "device":
        print(workers_note)
    _check_training_batches(loaders["train"], world_size)
    if "val" in loaders:
        print(f"Validation: {len(datasets['val'])} training images held out (data.val_fraction="
              f"{data_cfg.val_fraction}); best.pt is chosen on them")
    return Loaders(loaders["train"], loaders["test"], list(datasets["train"].classes), loaders.get("val"))
