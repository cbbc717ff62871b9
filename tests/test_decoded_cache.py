"""The decoded-image cache: content and padding, capping, prefix, reuse and rebuild, atomic
failure (decode errors, a full disk, an unwritable folder), parallel decoding."""
import errno
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Resize

from datasets.files import decoded_cache
from datasets.files.decoded_cache import load_or_build
from datasets.oxford_pet import decode_rgb
from utils.errors import DataError


def write_images(folder, shapes, seed=0):
    """Random RGB PNGs (lossless) of the given (height, width); returns (paths, uint8 [h, w, 3] arrays)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    paths, arrays = [], []
    for index, (height, width) in enumerate(shapes):
        array = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = folder / f"image_{index}.png"
        Image.fromarray(array).save(path)
        paths.append(path)
        arrays.append(array)
    return paths, arrays


class CountingDecode:
    def __init__(self):
        self.calls = 0

    def __call__(self, path):
        self.calls += 1
        return decode_rgb(path)


def fail_on_third(path):
    if path.name == "image_2.png":
        raise DataError(f"Cannot decode the image {path}.")
    return decode_rgb(path)


def cache_entries(cache_dir):
    """Names in `cache_dir` but the build locks (`.<name>.lock`, which stay by design)."""
    return sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".lock"))


def only_cache(cache_dir):
    (name,) = cache_entries(cache_dir)
    return cache_dir / name


def test_content_sizes_canvas_and_edge_padding(tmp_path):
    shapes = [(20, 30), (25, 18), (12, 12)]
    paths, arrays = write_images(tmp_path / "images", shapes)
    decoded = load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "cache")
    assert decoded.images.dtype == torch.uint8 and decoded.images.shape == (3, 3, 25, 30)
    assert decoded.sizes.dtype == torch.int64 and decoded.sizes.tolist() == [list(s) for s in shapes]
    for image, array, (height, width) in zip(decoded.images.numpy(), arrays, shapes):
        assert np.array_equal(image[:, :height, :width], array.transpose(2, 0, 1))
        assert np.array_equal(image[:, :height, width:], np.repeat(image[:, :height, width - 1:width], 30 - width, 2))
        assert np.array_equal(image[:, height:, :], np.repeat(image[:, height - 1:height, :], 25 - height, 1))
    folder = only_cache(tmp_path / "cache")
    assert folder.name.startswith("train-") and len(folder.name) == len("train-") + 16
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["count"] == 3 and manifest["canvas"] == [25, 30] and manifest["bytes"] == 3 * 3 * 25 * 30
    assert np.load(folder / "sizes.npy").dtype == np.int32


def test_images_above_max_side_are_downscaled_keeping_aspect(tmp_path):
    paths, arrays = write_images(tmp_path / "images", [(80, 100), (20, 30)])
    decoded = load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "cache", max_side=64)
    assert decoded.sizes.tolist() == [[51, 64], [20, 30]]
    expected = np.asarray(Image.fromarray(arrays[0]).resize((64, 51), Image.Resampling.BILINEAR))
    assert np.array_equal(decoded.images[0, :, :51, :64].numpy(), expected.transpose(2, 0, 1))
    assert np.array_equal(decoded.images[1, :, :20, :30].numpy(), arrays[1].transpose(2, 0, 1))


def test_prefix_is_applied_once_before_caching(tmp_path):
    paths, arrays = write_images(tmp_path / "images", [(40, 50), (36, 30)])
    prefix = Compose([Resize(32), CenterCrop(24)])
    decoded = load_or_build(paths, decode_rgb, name="test", cache_dir=tmp_path / "cache", prefix=prefix,
                            prefix_key="Resize(32)+CenterCrop(24)")
    assert decoded.images.shape == (2, 3, 24, 24) and decoded.sizes.tolist() == [[24, 24], [24, 24]]
    for image, array in zip(decoded.images.numpy(), arrays):
        assert np.array_equal(image, np.asarray(prefix(Image.fromarray(array))).transpose(2, 0, 1))
    other = load_or_build(paths, decode_rgb, name="test", cache_dir=tmp_path / "cache")
    assert other.sizes.tolist() == [[40, 50], [36, 30]] and len(cache_entries(tmp_path / "cache")) == 2


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_is_a_bar_on_a_terminal_and_one_line_elsewhere(tmp_path, capsys, monkeypatch, terminal):
    monkeypatch.setattr(decoded_cache.sys.stderr, "isatty", lambda: terminal)
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9), (8, 8)])
    load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "cache")
    printed = capsys.readouterr()
    assert ("Decoding 3 train images into the cache\n" in printed.out) is not terminal
    assert ("\r" in printed.err) is terminal  # tqdm redraws with carriage returns


def test_second_call_loads_and_a_changed_source_rebuilds(tmp_path, capsys):
    paths, arrays = write_images(tmp_path / "images", [(10, 12), (14, 9), (8, 8)])
    decode, cache_dir = CountingDecode(), tmp_path / "cache"
    first = load_or_build(paths, decode, name="train", cache_dir=cache_dir)
    assert decode.calls == 3 and "Built the decoded cache" in capsys.readouterr().out
    again = load_or_build(paths, decode, name="train", cache_dir=cache_dir)
    assert decode.calls == 3 and "Loaded the decoded cache" in capsys.readouterr().out
    assert torch.equal(first.images, again.images) and torch.equal(first.sizes, again.sizes)

    replacement = np.full((16, 6, 3), 77, dtype=np.uint8)
    Image.fromarray(replacement).save(paths[1])
    os.utime(paths[1], ns=(1, 1))
    rebuilt = load_or_build(paths, decode, name="train", cache_dir=cache_dir)
    assert decode.calls == 6 and rebuilt.sizes.tolist() == [[10, 12], [16, 6], [8, 8]]
    assert np.array_equal(rebuilt.images[1, :, :16, :6].numpy(), replacement.transpose(2, 0, 1))
    assert len(cache_entries(cache_dir)) == 1


def truncate_images(folder):
    with open(folder / "images.npy", "r+b") as file:
        file.truncate(200)


def shrink_manifest_canvas(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "canvas": [14, 9]}))


@pytest.mark.parametrize("damage", [truncate_images, shrink_manifest_canvas])
def test_damaged_cache_is_rebuilt(tmp_path, damage):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9)])
    decode, cache_dir = CountingDecode(), tmp_path / "cache"
    first = load_or_build(paths, decode, name="train", cache_dir=cache_dir)
    folder = only_cache(cache_dir)
    damage(folder)
    again = load_or_build(paths, decode, name="train", cache_dir=cache_dir)
    assert decode.calls == 4 and torch.equal(first.images, again.images)


@pytest.mark.parametrize("workers", [0, 2])
def test_decode_error_leaves_the_earlier_cache_intact(tmp_path, monkeypatch, workers):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9), (8, 8), (9, 9)])
    cache_dir = tmp_path / "cache"
    earlier = load_or_build(paths, decode_rgb, name="train", cache_dir=cache_dir)
    folder = only_cache(cache_dir)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    with monkeypatch.context() as patch:  # stale, as if a source changed: the next call rebuilds
        patch.setattr(decoded_cache, "source_fingerprint", lambda resolved: "changed")
        with pytest.raises(DataError, match=r"^Cannot decode the image .*image_2\.png\.$"):
            load_or_build(paths, fail_on_third, name="train", cache_dir=cache_dir, workers=workers)
    assert cache_entries(cache_dir) == [folder.name]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    decode = CountingDecode()
    loaded = load_or_build(paths, decode, name="train", cache_dir=cache_dir)
    assert decode.calls == 0 and torch.equal(loaded.images, earlier.images)


def test_full_disk_becomes_a_data_error_and_writes_nothing(tmp_path, monkeypatch):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9)])
    real_open_memmap = decoded_cache.open_memmap

    def open_memmap_then_fill_disk(filename, *args, **kwargs):
        real_open_memmap(filename, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))

    monkeypatch.setattr(decoded_cache, "open_memmap", open_memmap_then_fill_disk)
    cache_dir = tmp_path / "cache"
    with pytest.raises(DataError, match="No space left on device") as error:
        load_or_build(paths, decode_rgb, name="train", cache_dir=cache_dir)
    assert str(cache_dir) in str(error.value) and "data.cache_dir" in str(error.value)
    assert cache_entries(cache_dir) == []


def test_cache_dir_that_is_a_file_is_a_data_error(tmp_path):
    paths, _ = write_images(tmp_path / "images", [(10, 12)])
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    decode = CountingDecode()
    with pytest.raises(DataError, match="data.cache_dir") as error:
        load_or_build(paths, decode, name="train", cache_dir=not_a_folder)
    assert str(not_a_folder) in str(error.value) and decode.calls == 0


def test_parallel_decoding_gives_the_same_arrays(tmp_path):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9), (8, 8), (9, 13), (11, 7)])
    serial = load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "serial", workers=0)
    parallel = load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "parallel", workers=2)
    assert torch.equal(serial.images, parallel.images) and torch.equal(serial.sizes, parallel.sizes)
