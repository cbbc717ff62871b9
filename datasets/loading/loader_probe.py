"""`data.loader='auto'` on a GPU: choose between the device path and the cached workers from a
short measured probe of both at the run's batch size, each counted as images/s of training.

The device path builds its batches on the GPU, where they share the GPU with the training steps
(partly overlapping them: the next batch is built on a side stream), so its rate is measured
directly: training steps fed by the device path. The cached path's worker processes build batches
on the CPU while the GPU trains, so its rate is predicted as min(cached_input, step), from the
rate at which the workers deliver batches and that of steps on a batch already on the GPU (with
data.num_workers=0 the main process builds them between steps: 1 / (1/cached_input + 1/step)).
The cached path is taken only when it beats the device path by more than CACHED_MARGIN: within
it, or on a tie, the device path stays (no worker processes, and the choice `auto` made before
the probe existed).

The probe (probe_choice) builds throwaway loaders over the first few batches of the training
split, times one pass of the cached one after an untimed warm-up pass, and times training steps
through the caller's `step_rate` (a throwaway model, replayed from a CUDA graph where the run's
would be). It forks torch's random streams (CPU and the GPU), so the run draws the same numbers as
without it, and the run's own loaders are built afterwards, untouched.
"""
import itertools
import math
import time
from dataclasses import dataclass

import torch

from datasets.loading.cached_items import CachedImages, per_item_plan
from datasets.loading.device_data import split_tensors
from datasets.loading.device_loader import DeviceLoader
from datasets.loading.splits import transform_specs
from datasets.transforms.batched_transforms import split_prefix
from datasets.transforms.building import build_transforms
from utils.runtime import forked_rng, synchronize

CACHED_MARGIN = 0.05  # the cached path must predict more than 5% faster training to be taken
PROBE_BATCHES = 4  # timed batches of each path, rounded up to a multiple of the worker processes


@dataclass(frozen=True)
class ProbeRates:
    """Measured rates, in images/s.

    device_training: training steps fed by the device path (batches built on the GPU).
    cached_input: the cached path's workers delivering batches, moved to the device.
    step: training steps on a batch already on the device.
    cached_in_parallel: the cached batches are built by worker processes (data.num_workers > 0),
        alongside the steps; False: by the training process itself, between steps.
    """

    device_training: float
    cached_input: float
    step: float
    cached_in_parallel: bool = True

    def __post_init__(self):
        for name in ("device_training", "cached_input", "step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"ProbeRates.{name} must be a positive finite number of images/s, not {value}")


def _shown(rate: float) -> str:
    """`rate` for the note: whole images/s with thousands separators, 3 significant digits below 100."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def prefer_loader(rates: ProbeRates):
    """(path: "device" | "cached", reason: both training rates) for measured `rates` (see the module
    docstring for the rule)."""
    device = rates.device_training
    if rates.cached_in_parallel:
        cached = min(rates.cached_input, rates.step)
    else:
        cached = 1 / (1 / rates.cached_input + 1 / rates.step)
    reason = f"probe: device path {_shown(device)} img/s of training, cached workers ~{_shown(cached)} img/s"
    if cached > device * (1 + CACHED_MARGIN):
        return "cached", reason
    return "device", reason + (f", within {CACHED_MARGIN:.0%}" if cached > device else "")


def _pass_rate(loader, device: torch.device):
    """(images/s of one pass over `loader` with its batches moved to `device`, synchronised; the pass's
    last batch on `device`), timed after an untimed warm-up pass (worker start-up, first kernels)."""
    for _ in loader:
        pass
    synchronize(device)
    start, images = time.perf_counter(), 0
    for batch in loader:
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        images += len(batch["label"])
    synchronize(device)
    return images / (time.perf_counter() - start), batch


def probe_rates(device_loader, cached_loader, step_rate, device: torch.device, cached_in_parallel=True) -> ProbeRates:
    """ProbeRates of the throwaway loaders (batches {"image": float [B, C, H, W], "label": int64 [B]}
    of one shape) and `step_rate`: callable(iterator of batches on `device`) -> images/s of training
    steps (executors/step/rate.py), fed first by passes over the device loader, then by its first
    batch over and over."""
    with forked_rng(device):
        cached_input, _ = _pass_rate(cached_loader, device)
        device_training = step_rate(itertools.chain.from_iterable(itertools.repeat(device_loader)))
        step = step_rate(itertools.repeat(next(iter(device_loader))))
    return ProbeRates(device_training, cached_input, step, cached_in_parallel)


def measure_paths(cfg, dataset, device: torch.device, step_rate, make_loader, workers: int) -> ProbeRates:
    """ProbeRates of the training split `dataset` (image files) on `device` at cfg.train.batch_size.

    Both throwaway loaders hold the split's first PROBE_BATCHES batches (rounded up to a multiple of
    `workers`, so each worker builds whole batches), taken from its decoded cache (built here when
    missing, as either path would).
    step_rate: callable(num_classes, device) -> callable(batches) -> images/s (probe_rates).
    make_loader: loaders.make_loader (handed in: loaders.py imports this module), which starts
    `workers` worker processes (loaders.worker_count)."""
    data_cfg, batch_size = cfg.data, cfg.train.batch_size
    prefix, rest = split_prefix(transform_specs(data_cfg, "train"))
    with forked_rng(device):  # building the decoded cache draws its DataLoader's seed
        images, sizes, labels = split_tensors(dataset, prefix, data_cfg, torch.device("cpu"))
    count = batch_size * max(workers, 1) * math.ceil(PROBE_BATCHES / max(workers, 1))
    images, labels = images[:count], labels[:count]
    sizes = sizes[:count] if sizes is not None else None
    device_loader = DeviceLoader(images.to(device), labels.to(device),
                                 build_transforms(rest, data_cfg.mean, data_cfg.std, family="batched"),
                                 batch_size, shuffle=True, seed=cfg.seed, sizes=sizes)
    transform, normalize = per_item_plan(rest, data_cfg.mean, data_cfg.std)
    cached_loader = make_loader(CachedImages(images, sizes, labels, transform, "train"), cfg, "train",
                                collate_fn=normalize)
    return probe_rates(device_loader, cached_loader, step_rate(len(dataset.classes), device), device,
                       cached_in_parallel=workers > 0)


def probe_choice(cfg, dataset, device: torch.device, step_rate, make_loader, workers: int):
    """(path, reason) of prefer_loader on measure_paths' rates (same arguments); when the probe raises
    (a worker that cannot start, a GPU out of memory, ...) ("device", the failure in one line)."""
    try:
        return prefer_loader(measure_paths(cfg, dataset, device, step_rate, make_loader, workers))
    except Exception as error:  # the run can still train on the path auto took before the probe
        lines = str(error).strip().splitlines()
        return "device", f"the loader probe failed ({type(error).__name__}: {lines[0] if lines else ''}); " \
                         f"the device path, as without it"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the throwaway model's and loaders' blocks, back to the run
