"""The decoded cache under hostile conditions (issue 20, items 6, 7, 21): a build killed with
SIGKILL leaves no decode worker running and its temporary folder is removed by the next
build; a damaged or forged cache is rebuilt with a note; a source replaced keeping its size
and times is noticed; folders and files get the umask's modes."""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.files.decoded_cache import load_or_build
from datasets.oxford_pet import decode_rgb
from datasets.synthetic import write_pets
from tests.test_decoded_cache import CountingDecode, cache_entries, only_cache, write_images
from utils.file_lock import exclusive_lock

REPO = Path(__file__).resolve().parents[1]

SLOW_BUILD = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
import utils.parent_death
from datasets.files.decoded_cache import load_or_build
from datasets.oxford_pet import decode_rgb
if sys.argv[5] == "polling":  # as where prctl does not exist
    utils.parent_death.arm_death_signal = lambda: False
pid_dir, cache_dir = Path(sys.argv[1]), Path(sys.argv[2])
paths = sorted(Path(sys.argv[3]).glob("*.jpg"))

def slow_decode(path):
    (pid_dir / str(os.getpid())).touch()
    time.sleep(0.2)
    return decode_rgb(path)

load_or_build(paths, slow_decode, name="train", cache_dir=cache_dir, workers=2)
"""


def is_running(pid: int) -> bool:
    """The process exists and is not a zombie (a zombie is dead, only not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("guard", ["prctl", "polling"])
def test_sigkill_during_a_build_ends_its_workers_and_the_next_build_removes_its_folder(tmp_path, guard):
    images = write_pets(tmp_path / "pets", train_per_class=12, test_per_class=0, size=(200, 160)) / "images"
    pid_dir, cache_dir = tmp_path / "pids", tmp_path / "cache"
    pid_dir.mkdir()
    build = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(pid_dir), str(cache_dir), str(images), str(REPO),
                              guard], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: len(list(pid_dir.iterdir())) >= 2, 60, "two decode workers")
        time.sleep(0.5)  # both are mid-way through their items, with results queued for the parent
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait()
    workers = [int(path.name) for path in pid_dir.iterdir()]
    assert build.pid not in workers and len(workers) == 2
    wait_for(lambda: not any(is_running(pid) for pid in workers), 3, f"the workers {workers} to end")
    leftovers = [path.name for path in cache_dir.iterdir() if ".tmp-" in path.name]
    assert len(leftovers) == 1 and leftovers[0].startswith(".train-")

    decoded = load_or_build(sorted(images.glob("*.jpg")), decode_rgb, name="train", cache_dir=cache_dir)
    assert not [path.name for path in cache_dir.iterdir() if ".tmp-" in path.name]
    assert decoded.images.shape == (36, 3, 160, 200)
    first = np.asarray(decode_rgb(sorted(images.glob("*.jpg"))[0])).transpose(2, 0, 1)
    assert np.array_equal(decoded.images[0].numpy(), first)


def build_then(tmp_path, damage, shapes=((10, 12), (14, 9), (8, 8))):
    """(paths, arrays, cache folder, decoder): a cache built, then `damage(folder)` done to it."""
    paths, arrays = write_images(tmp_path / "images", shapes)
    load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "cache")
    folder = only_cache(tmp_path / "cache")
    damage(folder)
    return paths, arrays, folder, CountingDecode()


def assert_rebuilt_right(decoded, arrays, decode):
    assert decode.calls == len(arrays) and decoded.sizes.tolist() == [list(array.shape[:2]) for array in arrays]
    for image, array in zip(decoded.images.numpy(), arrays):
        assert np.array_equal(image[:, :array.shape[0], :array.shape[1]], array.transpose(2, 0, 1))


def edit_array(file, edit):
    def damage(folder):
        array = np.load(folder / file)
        np.save(folder / file, edit(array.copy()))
    return damage


def edit_manifest(edit):
    def damage(folder):
        manifest = json.loads((folder / "manifest.json").read_text())
        edit(manifest)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    return damage


def set_rows(rows):
    def edit(sizes):
        for index, row in rows.items():
            sizes[index] = row
        return sizes
    return edit


DAMAGES = {  # damage: the note's reason
    "zero sizes": (edit_array("sizes.npy", np.zeros_like),
                   r"sizes\.npy gives image 0 the size \[0, 0\], outside 1\.\.\[14, 12\]"),
    "negative size": (edit_array("sizes.npy", set_rows({1: [-3, 5]})),
                      r"sizes\.npy gives image 1 the size \[-3, 5\], outside 1\.\.\[14, 12\]"),
    "size beyond the canvas": (edit_array("sizes.npy", set_rows({2: [8, 13]})),
                               r"sizes\.npy gives image 2 the size \[8, 13\], outside 1\.\.\[14, 12\]"),
    "sizes not reaching the canvas": (edit_array("sizes.npy", set_rows({0: [10, 11]})),
                                      r"the largest sizes in sizes\.npy, \[14, 11\], are not the canvas \[14, 12\]"),
    "sizes swapped within the canvas": (edit_array("sizes.npy", set_rows({0: [8, 8], 2: [10, 12]})),
                                        r"sizes\.npy is not the file its manifest describes"),
    "float sizes": (edit_array("sizes.npy", lambda sizes: sizes.astype(np.float64)),
                    r"sizes\.npy is float64 \[3, 2\], not integers \[3, 2\]"),
    "a row of sizes missing": (edit_array("sizes.npy", lambda sizes: sizes[:2]),
                               r"sizes\.npy is int32 \[2, 2\], not integers \[3, 2\]"),
    "int16 images": (edit_array("images.npy", lambda images: images.astype(np.int16)),
                     r"images\.npy is int16 \[3, 3, 14, 12\], not uint8 \[3, 3, 14, 12\]"),
    "an image missing": (edit_array("images.npy", lambda images: images[:2]),
                         r"images\.npy is uint8 \[2, 3, 14, 12\], not uint8 \[3, 3, 14, 12\]"),
    "count": (edit_manifest(lambda manifest: manifest.update(count=2)), r"its manifest says count=2, not 3"),
    "canvas": (edit_manifest(lambda manifest: manifest.update(canvas=[-14, 12])),
               r"its manifest's canvas \[-14, 12\] is not a height and width in pixels"),
    "bytes": (edit_manifest(lambda manifest: manifest.update(bytes=1)),
              r"its manifest's bytes 1 do not fit 3 images at \[14, 12\]"),
    "an older format": (edit_manifest(lambda manifest: manifest.update(format_version=1)),
                        r"it is in format 1, this version reads 2"),
    "manifest not JSON": (lambda folder: (folder / "manifest.json").write_text("{"), r"its manifest\.json is not JSON"),
    "sizes.npy missing": (lambda folder: (folder / "sizes.npy").unlink(),
                          r"its arrays cannot be read \(\[Errno 2\] No such file or directory: .*sizes\.npy'\)"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_cache_that_does_not_fit_its_manifest_is_rebuilt_with_a_note(tmp_path, capsys, damage):
    paths, arrays, folder, decode = build_then(tmp_path, DAMAGES[damage][0])
    capsys.readouterr()
    decoded = load_or_build(paths, decode, name="train", cache_dir=tmp_path / "cache")
    assert_rebuilt_right(decoded, arrays, decode)
    assert re.fullmatch(f"Rebuilding the decoded cache {re.escape(str(folder))}: {DAMAGES[damage][1]}",
                        capsys.readouterr().out.splitlines()[0])
    again = CountingDecode()
    assert torch.equal(load_or_build(paths, again, name="train", cache_dir=tmp_path / "cache").images, decoded.images)
    assert again.calls == 0


def write_bmp(path, array):
    Image.fromarray(array).save(path, format="BMP")


def replace_in_place(path, array):
    """Overwrite the file's bytes, as `cp -p new old` does (same inode)."""
    scratch = path.with_suffix(".scratch")
    write_bmp(scratch, array)
    with open(path, "r+b") as file:
        file.write(scratch.read_bytes())
    scratch.unlink()


def replace_by_rename(path, array):
    """Write a new file beside it and rename it over, as `rsync -t` does (a new inode)."""
    scratch = path.with_suffix(".scratch")
    write_bmp(scratch, array)
    os.replace(scratch, path)


@pytest.mark.parametrize("replace", [replace_in_place, replace_by_rename])
def test_a_source_replaced_keeping_its_size_and_times_gives_its_new_pixels(tmp_path, capsys, replace):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (10, 12, 3), dtype=np.uint8) for _ in range(3)]
    (tmp_path / "images").mkdir()
    paths = [tmp_path / "images" / f"image_{index}.bmp" for index in range(3)]
    for path, array in zip(paths, arrays):
        write_bmp(path, array)
    first = load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "cache")
    assert np.array_equal(first.images[1].numpy(), arrays[1].transpose(2, 0, 1))
    before = paths[1].stat()
    arrays[1] = 255 - arrays[1]
    replace(paths[1], arrays[1])
    os.utime(paths[1], ns=(before.st_atime_ns, before.st_mtime_ns))
    after = paths[1].stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    capsys.readouterr()
    decode = CountingDecode()
    decoded = load_or_build(paths, decode, name="train", cache_dir=tmp_path / "cache")
    assert_rebuilt_right(decoded, arrays, decode)
    assert capsys.readouterr().out.splitlines()[0].endswith(
        ": a source image changed since it was built (its size, times or inode)")


def test_folders_and_files_get_the_umasks_modes(tmp_path):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9)])
    cache_dir = tmp_path / "shared" / "cache"
    previous = os.umask(0o022)
    try:
        load_or_build(paths, decode_rgb, name="train", cache_dir=cache_dir, workers=0)
    finally:
        os.umask(previous)
    folder = only_cache(cache_dir)
    modes = {path.relative_to(tmp_path).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in [cache_dir.parent, cache_dir, folder, *cache_dir.iterdir(), *folder.iterdir()]}
    assert modes == {"shared": 0o755, "shared/cache": 0o755, f"shared/cache/{folder.name}": 0o755,
                     f"shared/cache/.{folder.name}.lock": 0o644, f"shared/cache/{folder.name}/images.npy": 0o644,
                     f"shared/cache/{folder.name}/sizes.npy": 0o644, f"shared/cache/{folder.name}/manifest.json": 0o644}


@pytest.mark.skipif(os.name != "posix", reason="leftovers are removed only where file locks work")
def test_leftovers_of_a_live_build_stay_and_those_of_a_dead_one_go(tmp_path):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9)])
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    live, dead = cache_dir / ".test-0123.tmp-abc", cache_dir / ".test-4567.tmp-def-old"
    for leftover in (live, dead):
        leftover.mkdir()
        (leftover / "images.npy").write_bytes(b"partial")
    with exclusive_lock(cache_dir / ".test-0123.lock"):  # as another process building test-0123
        load_or_build(paths, decode_rgb, name="train", cache_dir=cache_dir)
        assert live.is_dir() and not dead.exists()
    load_or_build(paths, decode_rgb, name="train", cache_dir=cache_dir)
    assert not live.exists() and cache_entries(cache_dir) == [only_cache(cache_dir).name]


def test_a_second_build_of_the_same_cache_waits_and_loads_what_the_first_built(tmp_path, capsys):
    paths, _ = write_images(tmp_path / "images", [(10, 12), (14, 9)])
    load_or_build(paths, decode_rgb, name="train", cache_dir=tmp_path / "elsewhere")
    elsewhere = only_cache(tmp_path / "elsewhere")  # the folder's name depends on the images, not on cache_dir
    cache_dir, decode, results = tmp_path / "cache", CountingDecode(), []
    cache_dir.mkdir()
    capsys.readouterr()
    with exclusive_lock(cache_dir / f".{elsewhere.name}.lock"):  # as another process building it
        second = threading.Thread(target=lambda: results.append(
            load_or_build(paths, decode, name="train", cache_dir=cache_dir)))
        second.start()
        wait_for(lambda: "Waiting for another process building" in capsys.readouterr().out, 10, "the note")
        shutil.copytree(elsewhere, cache_dir / elsewhere.name)  # what the other process built
    second.join(10)
    assert decode.calls == 0 and len(results) == 1 and results[0].sizes.tolist() == [[10, 12], [14, 9]]
    assert f"Loaded the decoded cache {cache_dir / elsewhere.name}" in capsys.readouterr().out
