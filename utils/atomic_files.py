"""Files written atomically: a temporary file beside the target, fsync, then rename over it.

A reader never sees a half-written file, and an interrupted write leaves the old version.
The temporary is `.<name>.<random hex>.tmp`; it gets the mode a plain `open()` would give
(0666 minus the user's umask), is removed when writing fails, and leftovers of writers that
were killed (SIGKILL, power loss) are removed by the next write of that name. OS errors (a
full disk, a read-only folder) become one StorageError naming the target and the reason,
also when torch.save hides them behind "unexpected pos ..." errors.

Symbolic links: no write follows a link that the library did not make (POSIX only).
* The target: the temporary is renamed over it, so a link planted at the target's name is
  replaced by the new file; the file it pointed to is left untouched.
* Its folders: `inside` is the folder the caller trusts (a run folder, a tracking store's
  folder; by default the target's own folder). It is created when missing and may itself
  be a link (an exp_dir the user linked to another disk). Every folder between it and the
  target is entered without following links (created when missing): a link there, such as
  `confusion_matrices -> /elsewhere` in a run folder made on another machine, is refused
  with a StorageError naming the link, and nothing is written. The folders stay open from
  that check to the rename (openat, renameat), so what was checked is where the file goes.
"""
import contextlib
import os
import re
import secrets
import shutil
from pathlib import Path

from utils.errors import StorageError, storage_error
from utils.interrupts import signals_deferred

TEMP_SUFFIX = ".tmp"
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _ErrorRecorder:
    """A binary file wrapper that remembers the OSError of a failed write: torch.save turns it
    into a RuntimeError without the errno. Other attributes (seek, tell: the PDF writer's) are the file's."""

    def __init__(self, file):
        self.file, self.error = file, None

    def __getattr__(self, name):
        return getattr(self.file, name)

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise


def write_atomic(path, write, binary=True, inside=None) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    `inside`: a folder holding `path` (default: its folder) below which no link is followed
    (see the module docstring). Raises StorageError (naming `path`) for an OS error or a
    link; the temporary is removed on any error. SIGINT/SIGTERM arriving meanwhile are
    raised once the file is in place (utils/interrupts.py).
    """
    path = Path(path)
    with signals_deferred(), _open_folder(path, Path(path.parent if inside is None else inside)) as folder:
        _write_and_rename(folder, path, write, binary)


def write_text_atomic(path, text: str, inside=None) -> None:
    """Write `text` to `path` atomically (see write_atomic)."""
    write_atomic(path, lambda file: file.write(text), binary=False, inside=inside)


def save_figure_atomic(fig, path, inside=None, **savefig_kwargs) -> None:
    """Save the matplotlib figure `fig` to `path` atomically (see write_atomic), in the format
    its suffix names (.png, .pdf, .svg); `savefig_kwargs` go to `fig.savefig` (dpi, ...)."""
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    write_atomic(path, lambda file: fig.savefig(file, format=fmt, **savefig_kwargs), inside=inside)


def copy_file_atomic(source, path, inside=None) -> None:
    """Copy the file `source` to `path` atomically (see write_atomic). Raises StorageError
    naming `source` when it cannot be read."""
    try:
        reader = open(source, "rb")
    except OSError as error:
        raise storage_error(error, "read", source) from None
    with reader:
        write_atomic(path, lambda file: shutil.copyfileobj(reader, file), inside=inside)


@contextlib.contextmanager
def _open_folder(path: Path, inside: Path):
    """Yield a descriptor of `path`'s folder, reached from `inside` without following links."""
    parts = Path(os.path.abspath(path.parent)).relative_to(os.path.abspath(inside)).parts  # ValueError: a caller's bug
    try:
        inside.mkdir(parents=True, exist_ok=True)
        folder = os.open(inside, _FOLDER)
    except OSError as error:
        raise storage_error(error, "write", path) from None
    try:
        for index, name in enumerate(parts):
            child = _subfolder(folder, name, inside.joinpath(*parts[:index + 1]), path)
            os.close(folder)
            folder = child
        yield folder
    finally:
        os.close(folder)


def _subfolder(parent: int, name: str, shown: Path, path: Path) -> int:
    """A descriptor of the folder `name` in the folder `parent` (made if missing); a link there
    is a StorageError. `shown`: the folder's path, `path`: the target, for messages."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=parent)
        return os.open(name, _FOLDER | os.O_NOFOLLOW, dir_fd=parent)
    except OSError as error:
        if os.path.islink(shown):
            raise StorageError(
                f"cannot write {path}: {shown} is a symbolic link (to {os.readlink(shown)}), and files are "
                f"never written through a link the library did not make (it could overwrite a file elsewhere). "
                f"Remove the link (or put a real folder in its place) and run again.") from None
        raise storage_error(error, "write", path) from None


def _is_temporary_of(entry: str, name: str) -> bool:
    """Whether `entry` is a temporary of the target `name`: `.<name>.<random>.tmp`, random without dots."""
    return re.fullmatch(re.escape(f".{name}.") + r"[^.]+" + re.escape(TEMP_SUFFIX), entry) is not None


def open_temporary(folder: int, name: str):
    """Create a new temporary for the target `name` in the folder `folder`; returns (its name,
    a descriptor open for writing). O_EXCL | O_NOFOLLOW: never an existing file or a link."""
    temporary = f".{name}.{secrets.token_hex(8)}{TEMP_SUFFIX}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return temporary, os.open(temporary, flags, 0o666, dir_fd=folder)  # the umask applies, as for open()


def _write_and_rename(folder: int, path: Path, write, binary: bool) -> None:
    try:
        for stale in filter(lambda entry: _is_temporary_of(entry, path.name), os.listdir(folder)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale, dir_fd=folder)
        temporary, fd = open_temporary(folder, path.name)
    except OSError as error:
        raise storage_error(error, "write", path) from None
    recorder = None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as file:
            recorder = _ErrorRecorder(file) if binary else None
            write(recorder or file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=folder)
        cause = recorder.error if recorder is not None and recorder.error is not None else error
        if isinstance(cause, OSError):
            raise storage_error(cause, "write", path) from None
        raise
