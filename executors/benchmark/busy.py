"""How busy the Trainer keeps the GPU (scripts/benchmark.py --only busy; scripts/profile_gpu.py):
images/s through the Trainer (input pipeline, step, per-step metrics) against bare steps on one
resident batch, and ours against torchvision's ResNet-50, at 224 px and the config's batch.

Single figures moved by 20% between runs on an H100 (docs/performance.md), so every side is
timed in alternating rounds: each round times every side once, in the same order, and a side's
figure is the median over the rounds, with its minimum and maximum kept in the JSON.
The Trainer is timed in four ways (STEP_VARIANTS): eager steps with batches built between steps
on the step's stream (as before), batches built ahead on a side stream, steps replayed from a
CUDA graph, and both.
"""
import statistics
import traceback

import torch
import torchvision

from datasets.loading.loaders import build_loaders
from datasets.oxford_pet import CLASSES
from datasets.synthetic import write_kmnist_idx, write_pets
from executors.benchmark.step_profile import profile_steps
from executors.benchmark.workloads import (base_overrides, compute_only, pets_cfg, quiet, split_size, timed_epoch,
                                           timed_evaluation)
from executors.trainer import Trainer
from models.registry import build_model
from utils.config import apply_overrides, load_config
from utils.runtime import resolve_precision
from utils.validation import check_values

# name -> (train.cuda_graph, DeviceLoader.built_ahead)
STEP_VARIANTS = {"eager": (False, False), "built_ahead": (False, True), "cuda_graph": (True, False),
                 "graph_built_ahead": (True, True)}


def alternating(runs: dict, rounds: int) -> dict:
    """{name: {"median", "min", "max", "values"}} of `runs` {name: () -> a rate}, each called
    once per round, in order, for `rounds` rounds."""
    values = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            values[name].append(run())
    return {name: {"median": statistics.median(v), "min": min(v), "max": max(v), "values": v}
            for name, v in values.items()}


def synthetic_cfg(config: str, workdir, device, size=224, per_class=28, overrides=(), test_per_class=2):
    """`config` on synthetic data in its dataset's real format under `workdir` (written once):
    pets JPEGs of the release's sizes (`per_class` training and `test_per_class` test images per
    breed, the assignment's transforms at `size` px), or KMNIST idx files (10 * `per_class` per
    class); then `overrides` ("key=value" strings), checked."""
    if load_config(config).data.name == "KMNIST":
        root = workdir / f"kmnist_{per_class}"
        if not root.exists():
            write_kmnist_idx(root, 10 * per_class, 20)
        cfg = load_config(config, base_overrides(root, device.type))
    else:
        root = workdir / f"pets_{per_class}_{test_per_class}"
        if not root.exists():
            write_pets(root, per_class, test_per_class, size=None)
        cfg = pets_cfg(config, root, device, workdir / "cache", size)
    apply_overrides(cfg, overrides)
    check_values(cfg)
    return cfg


def step_trainers(cfg, loaders) -> dict:
    """{variant: Trainer} of STEP_VARIANTS over the same `loaders`, each warmed up by one epoch."""
    trainers = {}
    for name, (graph, ahead) in STEP_VARIANTS.items():
        cfg.train.cuda_graph = graph
        trainer = quiet(Trainer, cfg, *loaders)
        loaders.train.built_ahead = ahead
        timed_epoch(trainer)
        trainers[name] = trainer
    return trainers


def trainer_rate(trainer, ahead: bool):
    """() -> images/s of one training epoch of `trainer`, its batches built ahead or not."""
    def run():
        trainer.train_loader.built_ahead = ahead
        images, seconds = timed_epoch(trainer)
        return images / seconds
    return run


def busy_rows(workdir, device, rounds=5, per_class=28, size=224, bare_steps=50, profile_steps_=30,
              configs=(("resnet50_tricks", "ResNet50"), ("vgg16", "VGG16"))) -> dict:
    """The GPU's busy fraction through the Trainer for `configs` ((config, model name)) at `size`
    px (each STEP_VARIANT against `bare_steps` bare steps), ours (variant B) against torchvision's
    resnet50, and the step profiles before (eager) and after (graph, built ahead): a dict for the JSON."""
    precision = resolve_precision("auto", device)
    result = {"rounds": rounds, "size": size, "images_per_epoch": per_class * len(CLASSES), "models": {}}

    def bare_rate(model, batch_size):
        """() -> images/s of bare training steps of `model` on one resident batch (workloads.compute_only)."""
        return lambda: compute_only(model, device, precision, batch_size, size, bare_steps)
    for config, model_name in configs:
        try:  # one model's failure (say, out of memory) must not lose the other's figures
            result["models"][config] = _model_rows(config, model_name, workdir, device, rounds, per_class, size,
                                                   bare_rate, profile_steps_)
        except Exception as error:
            traceback.print_exc()
            result["models"][config] = {"error": f"{type(error).__name__}: {error}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ours, reference = (quiet(build_model, "ResNet50", load_config("resnet50_b").model, len(CLASSES)),
                       torchvision.models.resnet50(num_classes=len(CLASSES)))
    versus = alternating({"ours_b": bare_rate(ours, 64), "torchvision": bare_rate(reference, 64)}, rounds)
    result["ours_vs_torchvision"] = {**versus, "ratio": versus["ours_b"]["median"] / versus["torchvision"]["median"]}
    return result


def _model_rows(config, model_name, workdir, device, rounds, per_class, size, bare_rate, profile_steps_) -> dict:
    """busy_rows' figures of one (config, model name)."""
    cfg = synthetic_cfg(config, workdir, device, size, per_class, overrides=["data.loader='device'"])
    loaders = quiet(build_loaders, cfg)
    trainers = step_trainers(cfg, loaders)
    runs = {name: trainer_rate(trainer, STEP_VARIANTS[name][1]) for name, trainer in trainers.items()}
    runs["bare"] = bare_rate(quiet(build_model, model_name, cfg.model, len(CLASSES)), cfg.train.batch_size)
    rates = alternating(runs, rounds)
    return {"images_per_second": rates,
            "fraction_of_bare": {name: rates[name]["median"] / rates["bare"]["median"] for name in STEP_VARIANTS},
            "profiles": {name: profile_steps(trainers[name], profile_steps_)
                         for name in ("eager", "graph_built_ahead")},
            "loader": type(loaders.train).__name__}


def evaluation_rows(workdir, device, rounds=5, batch_sizes=(64, 128, 256), test_per_class=20, size=224,
                    configs=("resnet50_tricks", "vgg16")) -> dict:
    """Images/s of Trainer.evaluate on `test_per_class` synthetic test JPEGs per breed at `size` px for
    each of `configs`, the test loader batched by each of `batch_sizes` in alternating rounds
    (scripts/benchmark.py --only eval): a dict for the JSON."""
    result = {"rounds": rounds, "size": size, "models": {}}
    for config in configs:
        cfg = synthetic_cfg(config, workdir, device, size, 2, ["data.loader='device'"], test_per_class)
        loaders = quiet(build_loaders, cfg)
        trainer = quiet(Trainer, cfg, *loaders)

        def run(batch_size):
            loaders.test.batch_size = batch_size
            return timed_evaluation(trainer)
        rates = alternating({str(b): lambda b=b: run(b) for b in batch_sizes}, rounds)
        result["models"][config] = {**rates, "images": split_size(loaders.test)}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result
