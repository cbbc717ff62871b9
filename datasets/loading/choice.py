"""The choice between the loader paths (`data.loader`), as a plain decision: choose_loader
returns (path, reason) from checks that each return a refusal (an UnsuitableLoader: the
problem, and what to do) or None.

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
"""
import torch

from datasets.loading.cached_items import NotCacheable, per_item_plan
from datasets.loading.device_data import device_memory_bytes, estimated_bytes, is_in_memory
from datasets.loading.splits import transform_specs
from datasets.transforms.batched_transforms import NotBatchable, split_prefix
from datasets.transforms.building import build_transforms
from utils.errors import ConfigError, UnsuitableLoader, did_you_mean
from utils.validation import LOADERS

DEVICE_MEMORY_SHARE = 0.25


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


def choose_loader(cfg, datasets, device: torch.device):
    """(path: "device" | "cached" | "workers", reason: words for the note) for `datasets`
    {split: dataset} on `device`, as data.loader asks. A forced path the splits cannot take
    raises its refusal (a ConfigError); an unknown data.loader is a ConfigError."""
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
            return "device", f"both splits fit in {device.type} memory as uint8"
        if not files:
            return "workers", str(refusal)
        not_device = refusal.problem
    refusal = cached_refusal(data_cfg, datasets) or memory_refusal(data_cfg, datasets, torch.device("cpu"))
    if refusal:
        return "workers", str(refusal)
    return "cached", f"{not_device}; the cached path measured fastest"
