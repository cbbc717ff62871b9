"""The cached per-item path (datasets/loading/cached_items.py): the batch normalisation, batches equal
to the workers path's up to the resize and the jitter, auto's choice on the CPU and on a GPU,
lists it refuses, a missing OpenCV, the preview, and exact resume."""
import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import functional as TF

import datasets.loading.cached_items
import datasets.loading.loaders
from datasets.loading.cached_items import CachedImages, NotCacheable, per_item_plan
from datasets.loading.item_seeds import dataset_of
from datasets.loading.preview import augmentation_preview
from datasets.oxford_pet import OxfordIIITPet
from tests.test_device_loader import (PET_TRAIN, assert_resume_is_exact, kmnist_cfg, kmnist_root,  # noqa: F401
                                      loader_notes, one_thread, pets_cfg)
from utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_per_item_plan_moves_totensor_and_normalize_to_the_batch():
    transform, normalize = per_item_plan(PET_TRAIN, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    names = [type(t).__name__ for t in transform.transforms]
    assert names == ["RandomResizedCropArray", "RandomHorizontalFlipArray", "ColorJitterFactor8Bit"]
    pixels = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8).numpy()
    items = [{"image": pixels[0], "label": 2},  # contiguous [H, W, 3] and a view of [3, H, W] planes
             {"image": np.ascontiguousarray(pixels[1].transpose(2, 0, 1)).transpose(1, 2, 0), "label": 0}]
    batch = normalize(items)
    expected = TF.normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255, [0.5, 0.4, 0.3],
                            [0.2, 0.25, 0.3])
    torch.testing.assert_close(batch["image"], expected, atol=1e-6, rtol=0)
    assert batch["label"].tolist() == [2, 0] and batch["label"].dtype == torch.long
    with pytest.raises(ValueError, match=r"shapes \(4, 5, 3\) and \(5, 4, 3\)"):
        normalize([items[0], {"image": pixels[1].transpose(1, 0, 2), "label": 1}])


@pytest.mark.parametrize("specs", [[("RandomHorizontalFlip", {})],
                                   [("ToTensor", {}), ("RandomErasing", {}), ("Normalize", {})],
                                   [("Normalize", {}), ("ToTensor", {})]])
def test_per_item_plan_refuses_lists_without_a_trailing_totensor(specs):
    with pytest.raises(NotCacheable, match="ToTensor"):
        per_item_plan(specs)


def build(cfg, loader):
    """(train batches of 4 epochs, test batches, train loader) of a fresh build on `loader`."""
    cfg = copy.deepcopy(cfg)
    cfg.data.loader = loader
    train, test, _ = datasets.loading.loaders.build_loaders(cfg)
    batches = []
    for epoch in range(4):
        train.set_epoch(epoch)
        batches += list(train)
    return batches, list(test), train


def unit_pixels(batches, cfg):
    """Normalised batches back in [0, 1]: float [N, 3, H, W]."""
    images = torch.cat([batch["image"] for batch in batches])
    return images * torch.tensor(cfg.data.std).view(1, 3, 1, 1) + torch.tensor(cfg.data.mean).view(1, 3, 1, 1)


def test_cached_batches_are_the_workers_batches_without_jitter(pets_cfg):
    pets_cfg.data.transforms.train = [spec for spec in PET_TRAIN if spec[0] != "ColorJitterFactor"]
    cached_train, cached_test, loader = build(pets_cfg, "cached")
    workers_train, workers_test, _ = build(pets_cfg, "workers")
    assert isinstance(dataset_of(loader), CachedImages) and len(cached_train) == len(workers_train) == 12
    for ours, theirs in zip(cached_train + cached_test, workers_train + workers_test):
        assert torch.equal(ours["label"], theirs["label"])  # the same shuffle
        levels = (unit_pixels([ours], pets_cfg) - unit_pixels([theirs], pets_cfg)).abs() * 255
        assert levels.max() < 1.01 and levels.mean() < 0.3  # the same crops and flips; torch's resize, not PIL's
    for ours, theirs in zip(cached_test, workers_test):  # no random steps: the same pixels
        torch.testing.assert_close(ours["image"], theirs["image"], atol=1e-6, rtol=0)


def test_cached_batches_are_the_workers_batches_up_to_the_8bit_jitter(pets_cfg):
    cached_train, _, _ = build(pets_cfg, "cached")
    workers_train, _, _ = build(pets_cfg, "workers")
    assert all(torch.equal(a["label"], b["label"]) for a, b in zip(cached_train, workers_train))
    ours, theirs = unit_pixels(cached_train, pets_cfg), unit_pixels(workers_train, pets_cfg)
    assert (ours - theirs).abs().mean() * 255 < 3  # levels; hue differs most where red wraps round the wheel
    torch.testing.assert_close(ours.mean(dim=(0, 2, 3)), theirs.mean(dim=(0, 2, 3)), rtol=0.01, atol=0)
    # 2%: these saturated synthetic colours sit where PIL's and OpenCV's 8-bit HSV round
    # differently (green's std 0.8-1.2% apart over seeds 0-3); on 200 real pet photos the
    # per-channel stds of the two jitters agree to 0.1%
    torch.testing.assert_close(ours.std(dim=(0, 2, 3)), theirs.std(dim=(0, 2, 3)), rtol=0.02, atol=0)


def test_auto_takes_the_cached_path_for_pets_files_on_the_cpu_when_they_fit(pets_cfg, capsys, monkeypatch):
    pets_cfg.data.loader = "auto"
    train, test, _ = datasets.loading.loaders.build_loaders(pets_cfg)
    assert isinstance(dataset_of(train), CachedImages) and isinstance(dataset_of(test), CachedImages)
    notes = loader_notes(capsys)
    assert len(notes) == 1 and "cached" in notes[0] and "CPU" in notes[0]

    monkeypatch.setattr(datasets.loading.loaders, "device_memory_bytes", lambda device: 1000)
    train, _, _ = datasets.loading.loaders.build_loaders(pets_cfg)
    assert isinstance(dataset_of(train), OxfordIIITPet)
    notes = loader_notes(capsys)
    assert len(notes) == 1 and "workers" in notes[0] and "GiB" in notes[0] and "'cached' forces it" in notes[0]


def assert_auto_takes_workers_and_cached_fails(pets_cfg, capsys, reason):
    """With pets_cfg as it is, auto falls back to workers with one note naming `reason`, and
    data.loader='cached' is a config error matching it."""
    pets_cfg.data.loader = "auto"
    train, _, _ = datasets.loading.loaders.build_loaders(pets_cfg)
    assert isinstance(dataset_of(train), OxfordIIITPet)
    notes = loader_notes(capsys)
    assert len(notes) == 1 and "workers" in notes[0] and reason in notes[0]
    pets_cfg.data.loader = "cached"
    with pytest.raises(ConfigError, match=reason):
        datasets.loading.loaders.build_loaders(pets_cfg)


def test_lists_the_cached_path_cannot_run_fall_back_or_fail(pets_cfg, kmnist_root, tmp_path, capsys):  # noqa: F811
    pets_cfg.data.transforms.train = PET_TRAIN[:-2]  # no ToTensor
    assert_auto_takes_workers_and_cached_fails(pets_cfg, capsys, "ToTensor")
    with pytest.raises(ConfigError, match="in memory"):
        datasets.loading.loaders.build_loaders(kmnist_cfg(kmnist_root, tmp_path, "mlp", "data.loader='cached'"))


def test_preview_of_the_cached_path_shows_cached_originals_and_normalised_batches(pets_cfg):
    pets_cfg.data.loader = "cached"
    train = datasets.loading.loaders.build_loaders(pets_cfg).train
    state = torch.get_rng_state()
    originals, augmented, labels = augmentation_preview(train, count=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(isinstance(image, np.ndarray) and image.dtype == np.uint8 for image in originals)
    sizes = [image.shape[:2] for image in originals]
    assert sizes == [tuple(dataset_of(train).sizes[i].tolist()) for i in range(0, 12, 3)]
    assert augmented.shape == (4, 3, 32, 32) and augmented.dtype == torch.float32
    unit = unit_pixels([{"image": augmented}], pets_cfg)
    assert unit.min() > -1e-5 and unit.max() < 1 + 1e-5 and unit.std() > 0.05
    assert labels == [dataset_of(train).labels[i].item() for i in range(0, 12, 3)]


@pytest.mark.parametrize("workers", [0, 2])  # 2: worker processes that live through the epochs
def test_cached_run_resumed_after_an_epoch_ends_with_the_same_weights(pets_cfg, tmp_path, one_thread,  # noqa: F811
                                                                      workers):
    def cfg(name):
        run_cfg = copy.deepcopy(pets_cfg)
        run_cfg.data.loader, run_cfg.exp_name, run_cfg.data.num_workers = "cached", name, workers
        run_cfg.train.epochs, run_cfg.train.warmup_epochs = 2, 1.0
        return run_cfg

    assert_resume_is_exact(cfg, tmp_path)


def test_auto_on_a_gpu_takes_the_cached_path_for_files_the_device_path_cannot_take(pets_cfg, monkeypatch):
    pets_cfg.data.loader = "auto"
    splits = datasets.loading.loaders.split_datasets(pets_cfg)
    gpu = torch.device("cuda")  # only named: choose_loader asks the GPU nothing but its memory, patched here
    monkeypatch.setattr(datasets.loading.loaders, "device_memory_bytes",
                        lambda device: 1000 if device.type == "cuda" else 2**40)
    kind, reason = datasets.loading.loaders.choose_loader(pets_cfg, splits, gpu)
    assert kind == "cached" and "cuda memory" in reason and set(splits) == {"train", "test"}
    assert datasets.loading.loaders.cached_refusal(pets_cfg.data, splits) is None  # both splits can take it

    monkeypatch.setattr(datasets.loading.loaders, "device_memory_bytes", lambda device: 2**40)
    pets_cfg.data.transforms.train = [("RandomResizedCrop", {"size": 32}), ("RandomRotation", {"degrees": 10}),
                                      ("ToTensor", {}), ("Normalize", {})]
    kind, reason = datasets.loading.loaders.choose_loader(pets_cfg, splits, gpu)
    assert kind == "cached" and "RandomRotation" in reason
    assert datasets.loading.loaders.choose_loader(pets_cfg, splits, torch.device("cpu"))[0] == "cached"


def test_without_opencv_the_library_works_and_only_the_cached_path_says_what_is_missing(pets_cfg, capsys, monkeypatch):
    script = ("import sys; sys.modules['cv2'] = None  # as if OpenCV were not installed\n"
              "import executors.trainer, datasets.loading.loaders\n"
              "from datasets.loading.cached_items import NotCacheable, per_item_plan\n"
              "try:\n    per_item_plan([('ToTensor', {})])\nexcept NotCacheable as error:\n    print(error)\n")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "needs OpenCV" in finished.stdout and "opencv-python-headless" in finished.stdout

    monkeypatch.setattr(datasets.loading.cached_items, "cv2", None)  # what that import leaves
    assert_auto_takes_workers_and_cached_fails(pets_cfg, capsys, "needs OpenCV")
