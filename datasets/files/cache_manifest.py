"""What a decoded-cache folder must hold to be used (datasets/files/decoded_cache.py writes it),
and the fingerprint of the source files it was decoded from.

A folder is used only when all of this holds; otherwise `read` raises Unusable with the
reason, and the caller rebuilds it:
  manifest.json  readable; format_version, name, count, max_side, prefix_key and source
                 equal to what the caller expects; canvas [H, W] two integers >= 0 (both 0
                 only for an empty split); bytes = count * 3 * H * W.
  sizes.npy      integers [count, 2]; every height within 1..H and width within 1..W; the
                 largest equal to the canvas (it is the largest image); their sha1 (as
                 int32) equal to the manifest's sizes_sha1, so any edit of the file shows.
  images.npy     uint8 [count, 3, H, W], as long as its header says.
The pixels themselves are not hashed: that would read the whole cache twice per load.

The source fingerprint is a sha1 over (resolved path, size in bytes, mtime_ns, ctime_ns,
inode) of every file, from one stat each (about 3 us a file here). ctime cannot be set from
user space: a file replaced keeping its size and mtime (`cp -p`, `rsync -t`, `os.utime`)
or edited in place gets a new ctime, and one renamed over the old (rsync's default) a new
inode. Hashing the first and last 4 KiB of each file instead was measured at 40 us a file
with the files in the page cache and 250 us without (12x and 70x a stat), reads every file
on every load, which the cache exists to avoid, and misses edits in the middle of a file.
The price: a chmod, chown or hard link of a source file, or a filesystem whose inode
numbers change between mounts (some FUSE mounts), also rebuilds the cache: time, never
wrong pixels.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from utils.errors import DataError

FORMAT_VERSION = 2  # 2: sizes_sha1, and ctime and inode in the source fingerprint


class Unusable(Exception):
    """A cache folder that must be rebuilt; the message says why, in a few words."""


def sha1_lines(lines) -> str:
    """Hex sha1 of the lines' text, each ended by a newline."""
    digest = hashlib.sha1()
    for line in lines:
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()


def sizes_sha1(sizes: np.ndarray) -> str:
    """Hex sha1 of int [N, 2] sizes as little-endian int32, row by row."""
    return hashlib.sha1(np.ascontiguousarray(sizes, dtype="<i4").tobytes()).hexdigest()


def source_fingerprint(resolved) -> str:
    """sha1 over (path, size, mtime_ns, ctime_ns, inode) of every resolved source path.
    Raises DataError naming a file that cannot be read."""
    lines = []
    for path in resolved:
        try:
            stat = path.stat()
        except OSError as error:
            raise DataError(f"Cannot read the image {path} ({error.strerror or error}): restore the file "
                            f"or remove it from the split.") from None
        lines.append(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\t{stat.st_ctime_ns}\t{stat.st_ino}")
    return sha1_lines(lines)


def _check_manifest(manifest, expected: dict) -> tuple:
    """(count, height, width) of a manifest that fits `expected`; raises Unusable."""
    if not isinstance(manifest, dict):
        raise Unusable("its manifest.json is not a JSON object")
    if manifest.get("format_version") != expected["format_version"]:
        raise Unusable(f"it is in format {manifest.get('format_version')!r}, this version reads "
                       f"{expected['format_version']}")
    if manifest.get("source") != expected["source"]:
        raise Unusable("a source image changed since it was built (its size, times or inode)")
    for field, value in expected.items():
        if manifest.get(field) != value:
            raise Unusable(f"its manifest says {field}={manifest.get(field)!r}, not {value!r}")
    canvas, count = manifest.get("canvas"), expected["count"]
    if (not isinstance(canvas, list) or len(canvas) != 2 or not all(type(side) is int for side in canvas)
            or (min(canvas) < 1 if count else canvas != [0, 0])):
        raise Unusable(f"its manifest's canvas {canvas!r} is not a height and width in pixels")
    if manifest.get("bytes") != count * 3 * canvas[0] * canvas[1]:
        raise Unusable(f"its manifest's bytes {manifest.get('bytes')!r} do not fit {count} images at {canvas}")
    return count, *canvas


def _check_sizes(sizes: np.ndarray, manifest: dict, count: int, height: int, width: int) -> None:
    """Raises Unusable unless `sizes` are `count` (h, w) pairs within the canvas, reaching it."""
    if sizes.dtype.kind not in "iu" or sizes.shape != (count, 2):
        raise Unusable(f"sizes.npy is {sizes.dtype} {list(sizes.shape)}, not integers [{count}, 2]")
    low, high = sizes.min(axis=0, initial=1), sizes.max(axis=0, initial=0)
    if low.min() < 1 or high[0] > height or high[1] > width:
        bad = int(np.flatnonzero((sizes < 1).any(axis=1) | (sizes[:, 0] > height) | (sizes[:, 1] > width))[0])
        raise Unusable(f"sizes.npy gives image {bad} the size {sizes[bad].tolist()}, outside 1..{[height, width]}")
    if count and high.tolist() != [height, width]:
        raise Unusable(f"the largest sizes in sizes.npy, {high.tolist()}, are not the canvas {[height, width]}")
    if sizes_sha1(sizes) != manifest.get("sizes_sha1"):
        raise Unusable("sizes.npy is not the file its manifest describes")


def read(folder: Path, expected: dict) -> tuple:
    """(images uint8 [N, 3, H, W] in memory, sizes int64 [N, 2]) of the cache in `folder`.

    `expected`: the manifest fields it must have (format_version, name, count, max_side,
    prefix_key, source). Raises Unusable (the reason) for anything missing or that does not fit.
    """
    try:
        text = (folder / "manifest.json").read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise Unusable(f"its manifest.json cannot be read ({error})") from None
    try:
        manifest = json.loads(text)
    except ValueError:
        raise Unusable("its manifest.json is not JSON") from None
    count, height, width = _check_manifest(manifest, expected)
    try:
        sizes = np.load(folder / "sizes.npy")
        images = np.load(folder / "images.npy", mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:
        raise Unusable(f"its arrays cannot be read ({error})") from None
    _check_sizes(sizes, manifest, count, height, width)
    if images.dtype != np.uint8 or images.shape != (count, 3, height, width):
        raise Unusable(f"images.npy is {images.dtype} {list(images.shape)}, not uint8 {[count, 3, height, width]}")
    try:
        return np.array(images), sizes.astype(np.int64)
    except OSError as error:
        raise Unusable(f"images.npy cannot be read ({error})") from None
