"""Synthetic KMNIST and Oxford-IIIT Pet in the official on-disk formats, for the tests, the
benchmark and the notebook's smoke run (no download needed).

KMNIST: idx.gz files or the NumPy release's .npz files of learnable 28x28 images (a fixed
random pattern per class plus noise). Oxford pets: JPEG images, annotation lists and the
release's tar.gz archives; either tiny learnable images (three breeds, each its class colour
plus noise) or photo-like ones whose sizes follow the real release's: on the 940-image sample
of the official files the mean size is 436x388 px, most images are 500 px on the longer side,
and 3.7% are larger than 500 px.
"""
import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.files.download import md5sum
from datasets.kmnist import IDX_FILES, NPZ_FILES, idx_bytes
from datasets.oxford_pet import CLASSES, official_row

SWATCH_COLOURS = {1: (200, 60, 40), 2: (40, 160, 60), 6: (50, 70, 200)}  # Abyssinian, american_bulldog, Bengal
LARGE_SHARE, PORTRAIT_SHARE = 0.04, 0.25


def kmnist_arrays(per_class, seed):
    """(images uint8 [10 * per_class, 28, 28], labels uint8 [10 * per_class])."""
    prototypes = np.random.default_rng(1234).integers(0, 256, (10, 28, 28))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    rng.shuffle(labels)
    images = np.clip(prototypes[labels] + rng.normal(0, 40, (len(labels), 28, 28)), 0, 255)
    return images.astype(np.uint8), labels.astype(np.uint8)


def _kmnist_splits(train_per_class, test_per_class):
    """(split, (images, labels)) of the train and the test split."""
    return [(split, kmnist_arrays(per_class, seed))
            for split, per_class, seed in (("train", train_per_class, 0), ("test", test_per_class, 1))]


def write_kmnist_idx(root, train_per_class=20, test_per_class=5):
    """Write the four idx.gz files into `root`; returns {file name: md5}."""
    root.mkdir(parents=True, exist_ok=True)
    for split, arrays in _kmnist_splits(train_per_class, test_per_class):
        for name, array in zip(IDX_FILES[split], arrays):
            with gzip.open(root / name, "wb", compresslevel=1) as file:
                file.write(idx_bytes(array))
    return {name: md5sum(root / name) for names in IDX_FILES.values() for name in names}


def write_kmnist_npz(root, train_per_class=20, test_per_class=5):
    """Write the four .npz files of the NumPy release (arrays under 'arr_0') into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for split, arrays in _kmnist_splits(train_per_class, test_per_class):
        for name, array in zip(NPZ_FILES[split], arrays):
            np.savez_compressed(root / name, array)


def pet_size(rng):
    """(width, height) of one photo, drawn to match the release's size distribution."""
    if rng.random() < LARGE_SHARE:
        return 1024, 768
    short = int(rng.integers(280, 401))
    return (short, 500) if rng.random() < PORTRAIT_SHARE else (500, short)


def _picture(rng, class_id, size):
    """One image: with a `size` (width, height), its class colour plus noise; with None, a
    photo-like smooth colour field with texture at a size drawn like the release's."""
    if size is not None:
        pixels = np.clip(np.array(SWATCH_COLOURS[class_id]) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
        return Image.fromarray(pixels.astype(np.uint8), "RGB")
    width, height = pet_size(rng)
    field = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    pixels = np.asarray(field, dtype=np.float32) + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_pets(root, train_per_class=4, test_per_class=2, size=(40, 32)):
    """Write images/ and annotations/{trainval,test}.txt under `root`; returns root.

    With a `size` (width, height): three breeds with their official ids, Abyssinian (class 1,
    cat), american_bulldog (class 2, dog) and Bengal (class 6, cat), every image its class
    colour plus noise, so it is learnable. With size=None: all 37 breeds, photo-like JPEGs of
    the release's sizes. Images are named <breed>_<n>, n from 1 per breed, the first
    `train_per_class` of each breed in trainval.txt.
    """
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    lists = {"trainval.txt": [], "test.txt": []}
    for class_id in SWATCH_COLOURS if size is not None else range(1, len(CLASSES) + 1):
        breed, species, breed_id = official_row(class_id)
        for number in range(1, train_per_class + test_per_class + 1):
            name = f"{breed}_{number}"
            _picture(rng, class_id, size).save(root / "images" / f"{name}.jpg", quality=90)
            split = "trainval.txt" if number <= train_per_class else "test.txt"
            lists[split].append(f"{name} {class_id} {species} {breed_id}")
    for file, lines in lists.items():
        (root / "annotations" / file).write_text("\n".join(lines) + "\n")
    return root


def pet_training_files(root):
    """(image paths, labels from 0) of the trainval list under `root`, as write_pets wrote it."""
    rows = [line.split() for line in (Path(root) / "annotations" / "trainval.txt").read_text().splitlines()]
    return [Path(root) / "images" / f"{name}.jpg" for name, *_ in rows], [int(class_id) - 1 for _, class_id, *_ in rows]


def add_quirky_images(root):
    """Overwrite two training images the way the official release has them: a GIF and an
    RGBA PNG under .jpg names."""
    rgb = Image.new("RGB", (40, 32), (200, 60, 40))
    rgb.convert("P").save(root / "images" / "Abyssinian_1.jpg", format="GIF")
    rgba = Image.new("RGBA", (40, 32), (200, 60, 40, 128))
    rgba.save(root / "images" / "Abyssinian_2.jpg", format="PNG")


def pack_archives(source_root, out_dir):
    """images.tar.gz and annotations.tar.gz of `source_root` into `out_dir`; returns {name: md5}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in ("images", "annotations"):
        with tarfile.open(out_dir / f"{folder}.tar.gz", "w:gz") as tar:
            tar.add(source_root / folder, arcname=folder)
    return {f"{folder}.tar.gz": md5sum(out_dir / f"{folder}.tar.gz") for folder in ("images", "annotations")}


def pack_evil_images_archive(out_dir, member_name):
    """An images.tar.gz with one good member and one named `member_name` (e.g. '../x')."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out_dir / "images.tar.gz", "w:gz") as tar:
        for name in ("images/Abyssinian_1.jpg", member_name):
            data = b"data"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return md5sum(out_dir / "images.tar.gz")
