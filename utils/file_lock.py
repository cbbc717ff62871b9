"""An exclusive lock between processes: fcntl.flock on a lock file, released when the block
ends or the process dies (the kernel drops it, so a killed process never leaves it held).

POSIX only (Linux, macOS), like utils/atomic_files.py. Lock files stay in place:
deleting one while another process waits on it would let a third take a second lock.
A lock file is never reached through a link: it is opened with O_NOFOLLOW and must be a
regular file with one name (checked with fstat on the open file), so a `.lock` planted as a
symbolic or hard link to a file elsewhere is refused before anything is written to it.
"""
import contextlib
import fcntl
import os
import stat

from utils.errors import StorageError

_LINK_REFUSED = ("Files are never written through a link the library did not make (it could overwrite a file "
                 "elsewhere): remove it and run again.")


@contextlib.contextmanager
def exclusive_lock(path, wait: bool = True):
    """Hold an exclusive lock on the file `path` (created if missing) during the block; yields
    its open file descriptor, a regular file of one link that the holder may write to.
    wait=False raises BlockingIOError at once if another process holds it. Raises
    StorageError when `path` is a link (symbolic or hard) or not a regular file; OSError else."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError:
        if os.path.islink(path):
            raise StorageError(f"cannot use {path} as a lock file: it is a symbolic link (to "
                               f"{os.readlink(path)}). {_LINK_REFUSED}") from None
        raise
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink != 1:
            regular = stat.S_ISREG(status.st_mode)
            what = "a hard link (one of several names of a file)" if regular else "not a regular file"
            raise StorageError(f"cannot use {path} as a lock file: it is {what}. {_LINK_REFUSED}")
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock
