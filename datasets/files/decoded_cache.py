"""Decode every image of a split once into a uint8 cache on disk, and load it back fast.

Format, in `<cache_dir>/<name>-<key>/` (`cache_dir` defaults to `<repo>/data/cache`, never
inside the dataset root, which may be read-only):
  images.npy     uint8 [N, 3, H, W]: image i at the top-left of its canvas, the rest filled by
                 edge replication (last column copied rightwards, then last row downwards),
                 so bilinear sampling at an image's border behaves like clamping.
  sizes.npy      int32 [N, 2]: (height, width) in pixels of each image's content.
  manifest.json  format_version, name, count, canvas [H, W], max_side, prefix_key, bytes,
                 sizes_sha1, source (datasets/files/cache_manifest.py: a fingerprint of every
                 source file's resolved path, size, mtime, ctime and inode).
H and W are the largest height and width in the split after the optional `prefix` transform
and after capping the longer side at `max_side`. `key` is a sha1 of KEY_VERSION, max_side,
prefix_key and the resolved paths in order, so other settings get other folders (and a new
format rebuilds the same folder instead of leaving the old one behind).

Size on disk and in memory: N * 3 * H * W bytes, e.g. 3,680 images at a 500x500 canvas =
2.76 GB. Building holds the decoded images once in memory (the canvas is known only after
the last one) and writes the canvas image by image through a memory map.

A cache is loaded without decoding anything when everything in it fits its manifest, the
canvas and the split (datasets/files/cache_manifest.py lists the checks: shapes, dtypes, every
size within 1..canvas, counts, the source fingerprint). Otherwise it is rebuilt, with a
one-line note saying why when there was one. Building is atomic and takes turns
(datasets/files/cache_folders.py): one process at a time per cache, under a lock, in a hidden
temporary folder renamed into place only when complete, so an error or an interrupt leaves
an earlier cache intact, and the next call removes what a killed build left. Decoding
workers die with the process that started them (utils/parent_death.py).
"""
import functools
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from configs.paths import DATA_DIR
from datasets.files.cache_folders import build_lock, make_build_dir, move_into_place, remove_leftovers
from datasets.files.cache_manifest import FORMAT_VERSION, Unusable, read, sha1_lines, sizes_sha1, source_fingerprint
from utils.errors import DataError
from utils.parent_death import die_with_parent

KEY_VERSION = 1  # part of the folder names; FORMAT_VERSION is checked in the manifest instead
DEFAULT_MAX_SIDE = 500  # px on the longer side: most of the pets release is at most this (README, "Speed")


@dataclass(frozen=True)
class DecodedImages:
    """A split decoded onto one canvas.

    images: uint8 [N, 3, H, W], every image at the top-left of the canvas, edge-replicated.
    sizes: int64 [N, 2], (height, width) of each image's content in pixels.
    """
    images: torch.Tensor
    sizes: torch.Tensor


def default_cache_dir() -> Path:
    """`<repo root>/data/cache` ("data/" is git-ignored)."""
    return Path(DATA_DIR) / "cache"


def cap_longer_side(image: Image.Image, max_side: int) -> Image.Image:
    """`image` resized (bilinear, antialiased) so its longer side is `max_side` pixels, aspect
    kept, sides rounded and at least 1 px; an image that already fits is returned as is."""
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


class _DecodedSplit(Dataset):
    """Item i: uint8 [h, w, 3] of paths[i] decoded, prefixed and capped, or the DataError
    raised while decoding it (returned, so a worker passes its message on unchanged)."""

    def __init__(self, paths, decode, prefix, max_side):
        self.paths, self.decode, self.prefix, self.max_side = paths, decode, prefix, max_side

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            image = self.decode(self.paths[index])
        except DataError as error:
            return error
        if self.prefix is not None:
            image = self.prefix(image)
        return np.asarray(cap_longer_side(image, self.max_side), dtype=np.uint8)


def _as_is(item):
    """Collate nothing: keep numpy arrays as they are (no shared-memory tensors to hold)."""
    return item


def _load(target: Path, expected: dict):
    """(DecodedImages, None) of the cache in `target`, or (None, why it cannot be used; None
    when there is no such folder)."""
    if not target.exists():
        return None, None
    try:
        images, sizes = read(target, expected)
    except Unusable as why:
        return None, str(why)
    return DecodedImages(torch.from_numpy(images), torch.from_numpy(sizes)), None


def _decode_all(paths, decode, prefix, max_side, name, workers):
    """[uint8 [h, w, 3]] of every path, in order; a decoding DataError propagates. A progress
    bar on a terminal; elsewhere (a log file, a notebook) one line, not a frame per redraw."""
    loader = DataLoader(_DecodedSplit(paths, decode, prefix, max_side), batch_size=None,
                        num_workers=workers, collate_fn=_as_is,
                        worker_init_fn=functools.partial(die_with_parent, os.getpid()) if workers else None)
    interactive = sys.stderr.isatty()
    if not interactive:
        print(f"Decoding {len(paths)} {name} images into the cache", flush=True)
    arrays = []
    for item in tqdm(loader, total=len(paths), desc=f"Decoding {name} into the cache", unit="img",
                     disable=not interactive):
        if isinstance(item, DataError):
            raise item
        arrays.append(item)
    return arrays


def _write(folder: Path, arrays, manifest: dict) -> None:
    """images.npy, sizes.npy and manifest.json of `arrays` (uint8 [h, w, 3] each) in `folder`."""
    sizes = np.array([array.shape[:2] for array in arrays], dtype=np.int32).reshape(-1, 2)
    height, width = (int(side) for side in sizes.max(axis=0, initial=0))
    images = open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(len(arrays), 3, height, width))
    if hasattr(os, "posix_fallocate") and images.nbytes:  # a full disk raises ENOSPC here, not SIGBUS later
        with open(folder / "images.npy", "r+b") as file:
            os.posix_fallocate(file.fileno(), 0, os.fstat(file.fileno()).st_size)
    for index, array in enumerate(arrays):
        padding = ((0, height - array.shape[0]), (0, width - array.shape[1]), (0, 0))
        images[index] = np.pad(array, padding, mode="edge").transpose(2, 0, 1)
    images.flush()
    del images
    np.save(folder / "sizes.npy", sizes)
    manifest.update(count=len(arrays), canvas=[height, width], bytes=len(arrays) * 3 * height * width,
                    sizes_sha1=sizes_sha1(sizes))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))


def load_or_build(paths, decode, *, name, cache_dir, prefix=None, prefix_key="", max_side=DEFAULT_MAX_SIDE,
                  workers=0) -> DecodedImages:
    """The split `paths` decoded onto one canvas, from the cache or built into it.

    Args:
        paths: image file paths; their order is the item order.
        decode: path -> RGB PIL image; its DataError (a broken image) propagates.
        name: the split's name, the start of the cache folder's name.
        cache_dir: folder holding the caches (see `default_cache_dir`), created if needed.
        prefix: optional PIL -> PIL transform applied right after decoding (e.g. Resize +
            CenterCrop for a test split); `prefix_key` describes it and is part of the key.
        max_side: longer side in pixels above which an image is downscaled; never upscaled.
        workers: DataLoader worker processes decoding in parallel; 0 decodes in-process.
    """
    paths = [Path(path) for path in paths]
    resolved = [path.resolve() for path in paths]
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{name}-{sha1_lines([KEY_VERSION, max_side, prefix_key, *resolved])[:16]}"
    expected = {"format_version": FORMAT_VERSION, "name": name, "count": len(paths), "max_side": max_side,
                "prefix_key": prefix_key, "source": source_fingerprint(resolved)}
    remove_leftovers(cache_dir)
    cached, _ = _load(target, expected)
    if cached is None:
        with build_lock(cache_dir, target.name):
            cached, why = _load(target, expected)  # another process may have built it while we waited
            if cached is None:
                if why is not None:
                    print(f"Rebuilding the decoded cache {target}: {why}", flush=True)
                return _build(paths, decode, prefix, max_side, workers, target, expected)
    print(f"Loaded the decoded cache {target}: {_describe(cached)}")
    return cached


def _build(paths, decode, prefix, max_side, workers, target: Path, expected: dict) -> DecodedImages:
    """Decode `paths` into a new cache folder renamed to `target` (see load_or_build), then read it back."""
    temporary = make_build_dir(target.parent, target.name)
    try:
        arrays = _decode_all(paths, decode, prefix, max_side, expected["name"], workers)
        try:
            _write(temporary, arrays, dict(expected))
            del arrays
            move_into_place(temporary, target)
        except OSError as error:
            raise DataError(f"Cannot write the decoded-image cache {target} ({error.strerror or error}): free "
                            f"space there, or set data.cache_dir to another folder.") from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    built, why = _load(target, expected)
    if built is None:
        raise DataError(f"The decoded-image cache {target} cannot be read back after building ({why}): "
                        f"set data.cache_dir to another folder.")
    print(f"Built the decoded cache {target}: {_describe(built)}")
    return built


def _describe(decoded: DecodedImages) -> str:
    """'N images, canvas HxW, S MB' for the log lines."""
    count, _, height, width = decoded.images.shape
    return f"{count} images, canvas {height}x{width}, {decoded.images.numel() / 1e6:.0f} MB"
