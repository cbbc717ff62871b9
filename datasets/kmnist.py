"""Kuzushiji-MNIST: 70,000 grey 28x28 images of 10 hiragana (60,000 train / 10,000 test).

Reads either official release format from `data.root`: the MNIST-style idx files
(`train-images-idx3-ubyte.gz`, ...), downloaded from the mirrors when missing, or the
NumPy release (`kmnist-train-imgs.npz`, ...), used when present instead of the idx files.
"""
import gzip
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from datasets.files.download import ensure_files
from datasets.files.image_files import PREDICTION_ADVICE, read_image
from utils.errors import DataError

IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
# The NumPy release has no published checksums: its files are checked for shape and dtype only.
NPZ_FILES = {"train": ("kmnist-train-imgs.npz", "kmnist-train-labels.npz"),
             "test": ("kmnist-test-imgs.npz", "kmnist-test-labels.npz")}


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """The uint8 array of a gzipped idx file with `ndim` dimensions (3: images, 1: labels)."""
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path} is not a readable gzip file ({error}): delete it and download again.") from None
    if len(data) < 4 + 4 * ndim or data[:4] != bytes([0, 0, 0x08, ndim]):
        raise DataError(f"{path} is not an idx file of {ndim}-D unsigned bytes (bad header): "
                        f"delete it and download again.")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {body.size} bytes of data but its header announces {shape}: "
                        f"the file is truncated or corrupt; delete it and download again.")
    return body.reshape(shape)


def check_idx(name: str, path: Path) -> None:
    """ValueError unless the gzip file `path` (stored as `name`) starts with the idx header of
    unsigned bytes of KMNIST's images (3-D) or labels (1-D): how a download with data.md5=None is checked."""
    ndim = 3 if "images" in name else 1
    with gzip.open(path, "rb") as file:
        if file.read(4) != bytes([0, 0, 0x08, ndim]):
            raise ValueError(f"not an idx file of {ndim}-D unsigned bytes (bad header)")


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding of a uint8 array (what read_idx reads back): magic 0x0000080N, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path) as archive:
            return archive["arr_0"]
    except (OSError, ValueError, KeyError, zlib.error) as error:
        raise DataError(f"{path} is not a KMNIST .npz file ({error}).") from None


class KMNIST(Dataset):
    """One split of KMNIST.

    Args:
        cfg: the `data` config section (root, download, mirrors, md5).
        split: "train" or "test".
        transforms: callable applied to each PIL image (mode "L", 28x28), or None.

    Items: {"image": transforms(PIL image), "label": int in [0, 10)}.
    """

    classes = ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]  # romanised hiragana
    image_mode, image_size = "L", (28, 28)
    sample_sizes = (image_size,)  # (width, height) of the images, for checks that read none (executors/preflight.py)

    def __init__(self, cfg, split, transforms=None):
        if split not in IDX_FILES:
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        self.split, self.transforms = split, transforms
        images, labels = self._read_arrays(cfg, split)
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"KMNIST {split} files in {cfg.root} hold {images.shape} images and "
                            f"{labels.shape} labels instead of [N, 28, 28] and [N].")
        if len(labels) == 0:
            raise DataError(f"The KMNIST {split} files in {cfg.root} hold no images: the {split} split would be "
                            f"empty. Delete them and download again.")
        if labels.max() >= len(self.classes):
            raise DataError(f"KMNIST {split} labels in {cfg.root} go up to {labels.max()}; expected 0-9.")
        self.images = torch.from_numpy(images.astype(np.uint8, copy=True))  # [N, 28, 28]
        self.labels = torch.from_numpy(labels.astype(np.int64))  # [N]

    @staticmethod
    def _read_arrays(cfg, split):
        root = Path(cfg.root)
        npz_images, npz_labels = (root / name for name in NPZ_FILES[split])
        images_name, labels_name = IDX_FILES[split]
        if not (root / images_name).exists() and npz_images.is_file() and npz_labels.is_file():
            return read_npz(npz_images), read_npz(npz_labels)
        md5 = cfg.md5 or {}
        other = "test" if split == "train" else "train"  # named too when missing, so one message lists all four
        ensure_files(root, {name: md5.get(name) for name in IDX_FILES[split]}, cfg.mirrors, cfg.download,
                     "KMNIST", companions={name: md5.get(name) for name in IDX_FILES[other]}, validate=check_idx)
        return read_idx(root / images_name, 3), read_idx(root / labels_name, 1)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index].numpy(), mode="L")
        return {"image": self.transforms(image) if self.transforms else image, "label": int(self.labels[index])}

    def class_counts(self) -> list:
        """Number of images of each class, in class order."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def pixel_statistics(self):
        """([mean], [std]) of all pixels scaled to [0, 1], exact (from the 256-bin histogram)."""
        histogram = torch.zeros(256, dtype=torch.float64)
        for chunk in self.images.split(8192):
            histogram += torch.bincount(chunk.flatten().long(), minlength=256).double()
        values = torch.arange(256, dtype=torch.float64) / 255.0
        total = histogram.sum()
        mean = (histogram * values).sum() / total
        std = ((histogram * (values - mean) ** 2).sum() / total).sqrt()
        return [float(mean)], [float(std)]

    def show_statistic(self) -> dict:
        """Print and return the split's size, images per class and normalised pixel mean/std."""
        counts = dict(zip(self.classes, self.class_counts()))
        mean, std = self.pixel_statistics()
        print(f"KMNIST {self.split}: {len(self)} images, {len(self.classes)} classes")
        for name, count in counts.items():
            print(f"  {name:>4}: {count}")
        print(f"  pixel mean {mean[0]:.4f}, std {std[0]:.4f} (images scaled to [0, 1])")
        return {"split": self.split, "size": len(self), "class_counts": counts, "mean": mean, "std": std}

    @classmethod
    def image_for_prediction(cls, path: Path):
        """(PIL image "L" 28x28, [notes]) of any image file, drawn as KMNIST is: light strokes on a
        dark background. An image whose border is light (dark ink on paper, as people draw) is
        inverted, and a note says so; a non-square one is padded to a square with its border's
        grey before the resize, so the character keeps its proportions."""
        image, notes = read_image(path, for_prediction=True, advice=PREDICTION_ADVICE)
        image = image.convert("L")
        background = border_median(image)
        if background > 127:
            notes.append(f"its background is light (border grey {background} of 255), so it was inverted to "
                         f"light strokes on dark, as KMNIST is drawn")
            image, background = ImageOps.invert(image), 255 - background
        if image.width != image.height:
            side = max(image.size)
            square = Image.new("L", (side, side), background)
            square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
            image = square
        return (image if image.size == cls.image_size else image.resize(cls.image_size, Image.BILINEAR)), notes


def border_median(image: Image.Image) -> int:
    """Median grey (0-255) of the outer ring of an "L" image, one KMNIST pixel (1/28 of the
    shorter side, at least 1 px) wide: the background of a drawn character."""
    pixels = np.asarray(image)
    width = max(1, min(pixels.shape) // 28)
    ring = np.concatenate([pixels[:width].ravel(), pixels[-width:].ravel(),
                           pixels[:, :width].ravel(), pixels[:, -width:].ravel()])
    return int(np.median(ring))
