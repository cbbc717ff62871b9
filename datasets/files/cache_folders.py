"""The folders of the decoded cache: who may build one, where it is built, and what is left
of builds that died.

In `cache_dir`, a cache `<name>` (e.g. `train-<key>`) is built by one process at a time,
the holder of the lock file `.<name>.lock` (utils/file_lock.py: the kernel releases it when
its holder dies, even by SIGKILL). The holder builds in a hidden `.<name>.tmp-<random>`
folder and renames it to `<name>` when complete. So a `.<name>.tmp-*` folder whose lock can
be taken at once belongs to a process that died mid-build: `remove_leftovers` deletes it,
without any pid (pids are reused, and differ between containers sharing the folder). Where
locks do nothing (Windows) nothing is removed, as a live build cannot be told from a dead one.

Folders are created 0777 and files 0666, minus the umask (not mkdtemp's 0700), so a cache
shared through its folder's permissions is readable by whoever the umask allows.
"""
import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path

from utils.errors import DataError
from utils.file_lock import exclusive_lock

_LEFTOVER = re.compile(r"\.(?P<name>.+)\.tmp-.*")  # the build folder and its "-old" twin
LOCKS_WORK = os.name == "posix"  # utils/file_lock.py's locks do nothing elsewhere


def _lock_path(cache_dir: Path, name: str) -> Path:
    return cache_dir / f".{name}.lock"


def _unwritable(cache_dir: Path, error: OSError) -> DataError:
    return DataError(f"Cannot write the decoded-image cache folder {cache_dir} ({error.strerror or error}): "
                     f"set data.cache_dir to a writable folder.")


def _leftovers(cache_dir: Path) -> list:
    """[(folder, name of the cache it was building)] of the `.<name>.tmp-*` folders in `cache_dir`."""
    try:
        matches = [(entry, _LEFTOVER.fullmatch(entry.name)) for entry in cache_dir.iterdir()]
    except OSError:
        return []
    return [(entry, match["name"]) for entry, match in matches if match and entry.is_dir()]


def remove_leftovers(cache_dir: Path) -> None:
    """Delete the `.<name>.tmp-*` folders in `cache_dir` of builds that died (no one holds
    `.<name>.lock`); quietly skip whatever cannot be listed, locked or removed."""
    if not LOCKS_WORK:
        return
    for folder, name in _leftovers(cache_dir):
        try:
            with exclusive_lock(_lock_path(cache_dir, name), wait=False):
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # BlockingIOError: a live build; others: a read-only folder
            continue


@contextlib.contextmanager
def build_lock(cache_dir: Path, name: str):
    """Hold the lock on building the cache `name` in `cache_dir` (created if needed), and
    remove the `.<name>.tmp-*` folders, all dead now; says so when it waits for another
    process. Raises DataError when the folder is not writable."""
    lock = _lock_path(cache_dir, name)
    with contextlib.ExitStack() as stack:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            try:
                stack.enter_context(exclusive_lock(lock, wait=False))
            except BlockingIOError:
                print(f"Waiting for another process building the decoded cache {cache_dir / name}", flush=True)
                stack.enter_context(exclusive_lock(lock))
        except OSError as error:
            raise _unwritable(cache_dir, error) from None
        for folder, building in _leftovers(cache_dir) if LOCKS_WORK else []:
            if building == name:  # a dead build's (also one whose dying holder we waited for)
                shutil.rmtree(folder, ignore_errors=True)
        yield


def make_build_dir(cache_dir: Path, name: str) -> Path:
    """A new empty `.<name>.tmp-<random>` folder in `cache_dir`, mode 0777 minus the umask."""
    while True:
        folder = cache_dir / f".{name}.tmp-{secrets.token_hex(6)}"
        try:
            folder.mkdir(mode=0o777)
            return folder
        except FileExistsError:
            continue
        except OSError as error:
            raise _unwritable(cache_dir, error) from None


def move_into_place(temporary: Path, target: Path) -> None:
    """Rename `temporary` to `target`; an old `target` is renamed aside first, then removed."""
    if target.exists():
        old = temporary.with_name(temporary.name + "-old")
        os.replace(target, old)
        try:
            os.replace(temporary, target)
        except OSError:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, target)
