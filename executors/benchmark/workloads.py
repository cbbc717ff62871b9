"""What scripts/benchmark.py measures: this library's path against a course template's
per-item PIL DataLoader baseline (executors/benchmark/baseline.py), in the same process and run, on
synthetic data in the real formats (datasets/synthetic.py).

Each workload returns a row: images/s of ours and of the baseline (each at its fastest
intra-op thread count among 1, 2, 4, ... cores on the CPU), their ratio and seconds per
epoch. Both sides use the same batch size, model and number of DataLoader workers.
"""
import contextlib
import io
import os
import time

import torch
import torchvision
from torchvision import transforms as T

from datasets.kmnist import KMNIST
from datasets.loading.item_seeds import dataset_of
from datasets.loading.loaders import build_loaders
from datasets.oxford_pet import CLASSES
from datasets.synthetic import pet_training_files, write_kmnist_idx, write_pets
from datasets.transforms.color_jitter import ColorJitterFactor
from executors.benchmark.baseline import ArrayImages, ImageFiles, template_input, template_loader, template_train
from executors.trainer import Trainer
from models.registry import build_model
from utils.config import load_config
from utils.runtime import resolve_precision, synchronize
from utils.threads import candidate_counts

PETS_TRAIN, PETS_TEST = 3680, 3669  # images in the official splits, for per-epoch times


def row(name, ours, baseline, epoch_images, **details):
    """A result: ours/baseline are (images per second, threads)."""
    return {"workload": name, "ours_images_per_second": ours[0], "baseline_images_per_second": baseline[0],
            "ratio": ours[0] / baseline[0], "ours_threads": ours[1], "baseline_threads": baseline[1],
            "ours_epoch_seconds": epoch_images / ours[0], "baseline_epoch_seconds": epoch_images / baseline[0],
            "epoch_images": epoch_images, **details}


def fastest(run, device):
    """(images per second, threads) of `run() -> (images, seconds)` at its best thread count.
    On a GPU: the better of two runs at PyTorch's default count, so that one-time costs (cuDNN
    autotuning for new shapes, worker start-up) are timed on neither side."""
    counts = [torch.get_num_threads()] * 2 if device.type == "cuda" else candidate_counts(_cores())
    results = []
    for threads in counts:
        torch.set_num_threads(threads)
        images, seconds = run()
        results.append((images / seconds, threads))
    return max(results)


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def quiet(function, *args, **kwargs):
    """Call `function` with its prints and progress bars (loader choice, parameter counts) swallowed."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return function(*args, **kwargs)


def timed_epoch(trainer):
    """(images, seconds) of one Trainer.train_epoch, GPU work included."""
    start = time.perf_counter()
    quiet(trainer.train_epoch, 0)
    synchronize(trainer.device)
    return split_size(trainer.train_loader), time.perf_counter() - start


def split_size(loader):
    """Images in one epoch of a DataLoader or a DeviceLoader."""
    return len(loader.dataset) if hasattr(loader, "dataset") else len(loader.labels)


def timed_evaluation(trainer):
    """Images per second of Trainer.evaluate on the test split (after a warm-up pass)."""
    quiet(trainer.evaluate)
    start = time.perf_counter()
    quiet(trainer.evaluate)
    return split_size(trainer.test_loader) / (time.perf_counter() - start)


def base_overrides(root, device, cache_dir=None):
    overrides = [f"data.root='{root}'", "data.md5=None", "data.download=False", "logger.backend='none'",
                 f"device='{device}'"]
    return overrides + ([f"data.cache_dir='{cache_dir}'"] if cache_dir else [])


def kmnist_mlp(workdir, quick, device):
    """mlp_augment (Pad 2 + RandomCrop 28) for one epoch of synthetic KMNIST-format data."""
    count = 20_000 if quick else 60_000
    root = workdir / "kmnist"
    write_kmnist_idx(root, count // 10, 200)
    cfg = load_config("mlp_augment", base_overrides(root, device.type))
    ours = fastest(lambda: timed_epoch(quiet(lambda: Trainer(cfg, *build_loaders(cfg)))), device)
    train = KMNIST(cfg.data, "train")
    transform = T.Compose([T.Pad(2), T.RandomCrop(28), T.ToTensor(), T.Normalize(cfg.data.mean, cfg.data.std)])
    loader = template_loader(ArrayImages(train.images.numpy(), train.labels.numpy(), transform),
                             cfg.train.batch_size, cfg.data.num_workers)

    def baseline():
        model = quiet(build_model, "MLP", cfg.model, 10).to(device)
        return template_train(model, loader, device, count, lr=cfg.train.lr)
    return row("kmnist_mlp", ours, fastest(baseline, device), count, workers=cfg.data.num_workers,
               batch_size=cfg.train.batch_size)


def pets_cfg(name, root, device, cache_dir, size):
    """The config `name` with the assignment's pets transforms at `size` px (test: Resize 8/7 size, CenterCrop)."""
    cfg = load_config(name, base_overrides(root, device.type, cache_dir))
    cfg.data.num_workers = min(cfg.data.num_workers, _cores())
    cfg.data.transforms.train[0] = ("RandomResizedCrop", {"size": size})
    cfg.data.transforms.test[:2] = [("Resize", {"size": size * 8 // 7}), ("CenterCrop", {"size": size})]
    return cfg


def template_pets_transform(cfg, size):
    return T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), ColorJitterFactor(), T.ToTensor(),
                      T.Normalize(cfg.data.mean, cfg.data.std)])


def template_pets_files(cfg, size):
    return ImageFiles(*pet_training_files(cfg.data.root), template_pets_transform(cfg, size))


def pets_input(workdir, quick, device, size=224, loader="auto"):
    """The training input pipeline alone: decode/cache, crop, flip, jitter, normalise, onto the
    device, on the path data.loader=`loader` takes."""
    per_class = 7 if quick else 27  # 259 or 999 images
    count = per_class * len(CLASSES)
    root = workdir / "pets_input"
    if not root.exists():
        write_pets(root, per_class, 2, size=None)
    cfg = pets_cfg("resnet50_tricks", root, device, workdir / "cache", size)
    cfg.data.loader = loader
    start = time.perf_counter()
    train_loader = quiet(build_loaders, cfg).train
    setup_seconds = time.perf_counter() - start

    def ours(min_seconds=1.0):
        """Whole passes over the split until `min_seconds` have gone by: one pass of 256 images
        on a GPU takes tens of milliseconds, too short to time."""
        start, seen = time.perf_counter(), 0
        while time.perf_counter() - start < min_seconds:
            for batch in train_loader:
                batch["image"].to(device, non_blocking=True)
                seen += len(batch["label"])
            synchronize(device)
        return seen, time.perf_counter() - start
    ours()  # warm-up: worker start-up, kernel selection
    baseline_loader = template_loader(template_pets_files(cfg, size), cfg.train.batch_size, cfg.data.num_workers)
    result = row(f"pets_input_{size}" + ("" if loader == "auto" else f"_{loader}"), fastest(ours, device),
                 fastest(lambda: template_input(baseline_loader, device, count), device), PETS_TRAIN,
                 path=type(dataset_of(train_loader) or train_loader).__name__, workers=cfg.data.num_workers,
                 batch_size=cfg.train.batch_size, setup_seconds=setup_seconds)
    return result


def pets_train(workdir, quick, device, model_name, size, compile_model=False, baseline=None):
    """Training steps of VGG-16 or ResNet-50 (resnet50_tricks recipe) at `size` px on synthetic pets,
    against the baseline's (images/s, threads), measured here unless given."""
    # images per breed: 111, 518, 1,036 or 3,663 training images
    per_class = (3 if quick else 14) if device.type == "cpu" else (28 if quick else 99)
    count = per_class * len(CLASSES)
    config = {"VGG16": "vgg16", "ResNet50": "resnet50_tricks"}[model_name]
    root = workdir / f"pets_{size}"
    if not root.exists():
        write_pets(root, per_class, 2 if device.type == "cpu" else 14, size=None)
    cfg = pets_cfg(config, root, device, workdir / "cache", size)
    if compile_model:
        cfg.train.compile = True
    trainer = quiet(lambda: Trainer(cfg, *build_loaders(cfg)))
    timed_epoch(trainer)  # warm-up: cudnn autotuning, compilation, cache build
    ours = fastest(lambda: timed_epoch(trainer), device)
    precision = resolve_precision(cfg.train.amp, device)

    def template():
        loader = template_loader(template_pets_files(cfg, size), cfg.train.batch_size, cfg.data.num_workers)
        model = quiet(build_model, model_name, cfg.model, 37).to(device)
        return template_train(model, loader, device, count, autocast_dtype=precision.dtype)
    name = f"pets_{model_name.lower()}_{size}" + ("_compiled" if compile_model else "")
    return row(name, ours, baseline or fastest(template, device), PETS_TRAIN, precision=precision.name,
               batch_size=cfg.train.batch_size, workers=cfg.data.num_workers,
               ours_eval_images_per_second=timed_evaluation(trainer))


def compute_only(model, device, precision, batch_size=64, size=224, steps=50):
    """Images per second of training steps on one batch resident on the device (no input pipeline)."""
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, 3, size, size, device=device).to(memory_format=torch.channels_last)
    labels = torch.randint(0, 37, (batch_size,), device=device)
    for step in range(steps + 5):
        if step == 5:
            synchronize(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def gpu_rows(workdir, quick, device):
    """224 px rows on CUDA (the input pipeline's row is pets_input_224): training steps,
    compiled steps, ours vs torchvision's ResNet-50 (variant B, the same architecture), the
    GPU's busy fraction while training resnet50_tricks (images/s with the input pipeline and the
    Trainer / images/s of bare steps on one resident batch), and the assignment's three
    100-epoch runs projected."""
    precision = resolve_precision("auto", device)
    trained = {name: pets_train(workdir, quick, device, name, 224) for name in ("VGG16", "ResNet50")}
    rows = list(trained.values())
    eager = trained["ResNet50"]
    rows.append(pets_train(workdir, quick, device, "ResNet50", 224, compile_model=True,  # against the same eager baseline
                           baseline=(eager["baseline_images_per_second"], eager["baseline_threads"])))
    variant_b, tricks = (load_config(name).model for name in ("resnet50_b", "resnet50_tricks"))
    ours_b = compute_only(quiet(build_model, "ResNet50", variant_b, 37), device, precision)
    reference = compute_only(torchvision.models.resnet50(num_classes=37), device, precision)
    rows.append(row("resnet50_ours_vs_torchvision_224", (ours_b, None), (reference, None), PETS_TRAIN,
                    precision=precision.name, note="compute only: one resident batch, channels_last, "
                                                   "ours in variant B (torchvision's architecture)"))
    tricks_compute = compute_only(quiet(build_model, "ResNet50", tricks, 37), device, precision)
    busy = trained["ResNet50"]["ours_images_per_second"] / tricks_compute
    epoch_seconds = {name: PETS_TRAIN / r["ours_images_per_second"] + PETS_TEST / r["ours_eval_images_per_second"]
                     for name, r in trained.items()}
    projection = 100 * (epoch_seconds["VGG16"] + 2 * epoch_seconds["ResNet50"])
    return rows, {"gpu_busy_fraction_resnet50": busy, "resnet50_tricks_compute_only_images_per_second": tricks_compute,
                  "projected_three_100_epoch_runs_minutes": projection / 60,
                  "projection_note": "vgg16 + resnet50 + resnet50_tricks: 100 epochs of 3,680 training and "
                                     "3,669 test images each, at the measured training and evaluation speeds"}
