"""Synthetic data in the real on-disk formats, for the benchmark (no download needed).

KMNIST: idx.gz files of learnable 28x28 images (a fixed random pattern per class plus
noise). Oxford pets: JPEGs in the official layout whose sizes follow the real release's:
on the 940-image sample of the official files the mean size is 436x388 px, most images are
500 px on the longer side, and 3.7% are larger than 500 px.
"""
import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.kmnist import IDX_FILES, idx_bytes
from datasets.oxford_pet import official_row

PET_CLASSES = 37
LARGE_SHARE, PORTRAIT_SHARE = 0.04, 0.25


def write_kmnist(root: Path, train_images: int, test_images: int, seed: int = 0) -> Path:
    """The four KMNIST idx.gz files under `root` (labels balanced over 10 classes)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, (10, 28, 28))
    for split, count in (("train", train_images), ("test", test_images)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = np.clip(patterns[labels] + rng.normal(0, 60, (count, 28, 28)), 0, 255).astype(np.uint8)
        for name, array in zip(IDX_FILES[split], (images, labels.astype(np.uint8))):
            with gzip.open(root / name, "wb", compresslevel=1) as file:
                file.write(idx_bytes(array))
    return root


def pet_size(rng):
    """(width, height) of one photo, drawn to match the release's size distribution."""
    if rng.random() < LARGE_SHARE:
        return 1024, 768
    short = int(rng.integers(280, 401))
    return (short, 500) if rng.random() < PORTRAIT_SHARE else (500, short)


def write_pets(root: Path, train_images: int, test_images: int, seed: int = 0) -> Path:
    """images/ and annotations/{trainval,test}.txt under `root`: smooth colour fields with
    texture, saved as JPEG (quality 90), spread over the PET_CLASSES official breeds."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    lines = {"trainval.txt": [], "test.txt": []}
    for number in range(train_images + test_images):
        class_id = number % PET_CLASSES + 1
        breed, species, breed_id = official_row(class_id)
        name = f"{breed}_{number + 1}"
        width, height = pet_size(rng)
        field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(field, dtype=np.float32) + rng.normal(0, 12, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / "images" / f"{name}.jpg", quality=90)
        split = "trainval.txt" if number < train_images else "test.txt"
        lines[split].append(f"{name} {class_id} {species} {breed_id}")
    for file, rows in lines.items():
        (root / "annotations" / file).write_text("\n".join(rows) + "\n")
    return root


def pet_training_files(root):
    """(image paths, labels from 0) of the trainval list under `root`, as write_pets wrote it."""
    rows = [line.split() for line in (Path(root) / "annotations" / "trainval.txt").read_text().splitlines()]
    return [Path(root) / "images" / f"{name}.jpg" for name, *_ in rows], [int(class_id) - 1 for _, class_id, *_ in rows]
