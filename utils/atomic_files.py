"""Files written atomically: a temporary file beside the target, fsync, then rename over it.

A reader never sees a half-written file, and an interrupted write leaves the old version.
The temporary is `.<name>.<random>.tmp`; it gets the mode a plain `open()` would give (0666
minus the user's umask, not mkstemp's 0600), is removed when writing fails, and leftovers of
writers that were killed (SIGKILL, power loss) are removed by the next write of that name.
OS errors (a full disk, a read-only folder) become one StorageError naming the target and
the reason, also when torch.save hides them behind "unexpected pos ..." errors.
"""
import os
import tempfile
from pathlib import Path

from utils.errors import storage_error
from utils.interrupts import signals_deferred

TEMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(path: Path) -> None:
    """Delete `.<name>.*.tmp` files beside `path` left by writers that never finished."""
    for stale in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


class _ErrorRecorder:
    """A binary file wrapper that remembers the OSError of a failed write: torch.save turns it
    into a RuntimeError without the errno."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        self.file.flush()


def write_atomic(path, write, binary=True) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    Raises StorageError (naming `path`) for an OS error; the temporary is removed on any error.
    SIGINT/SIGTERM arriving meanwhile are raised once the file is in place (utils/interrupts.py).
    """
    with signals_deferred():
        _write_and_rename(Path(path), write, binary)


def _write_and_rename(path: Path, write, binary: bool) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as error:
        raise storage_error(error, "write", path) from None
    recorder = None
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as file:
            recorder = _ErrorRecorder(file) if binary else None
            write(recorder or file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        cause = recorder.error if recorder is not None and recorder.error is not None else error
        if isinstance(cause, OSError):
            raise storage_error(cause, "write", path) from None
        raise


def write_text_atomic(path, text: str) -> None:
    """Write `text` to `path` atomically (see write_atomic)."""
    write_atomic(path, lambda file: file.write(text), binary=False)
