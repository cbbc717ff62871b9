"""Synthetic Oxford-IIIT Pet in the official layout: JPEG images, annotation lists, tar.gz archives.

Three breeds with their official ids: Abyssinian (class 1, cat), american_bulldog (class 2,
dog), Bengal (class 6, cat). Each image is its class colour plus noise, so it is learnable.
"""
import io
import tarfile

import numpy as np
from PIL import Image

from datasets.files.download import md5sum

BREEDS = [("Abyssinian", 1, 1, 1, (200, 60, 40)), ("american_bulldog", 2, 2, 1, (40, 160, 60)),
          ("Bengal", 6, 1, 2, (50, 70, 200))]


def write_pets(root, train_per_class=4, test_per_class=2, size=(40, 32)):
    """Write images/ and annotations/{trainval,test}.txt under `root`; returns root."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    lists = {"trainval.txt": [], "test.txt": []}
    for breed, class_id, species, breed_id, colour in BREEDS:
        for number in range(1, train_per_class + test_per_class + 1):
            name = f"{breed}_{number}"
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8), "RGB").save(root / "images" / f"{name}.jpg", quality=90)
            split = "trainval.txt" if number <= train_per_class else "test.txt"
            lists[split].append(f"{name} {class_id} {species} {breed_id}")
    for file, lines in lists.items():
        (root / "annotations" / file).write_text("\n".join(lines) + "\n")
    return root


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
