"""An exclusive lock between processes: fcntl.flock on a lock file, released when the block
ends or the process dies (the kernel drops it, so a killed process never leaves it held).

Where fcntl does not exist (Windows) the lock does nothing. Lock files stay in place:
deleting one while another process waits on it would let a third take a second lock.
"""
import contextlib
import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


@contextlib.contextmanager
def exclusive_lock(path, wait: bool = True):
    """Hold an exclusive lock on the file `path` (created if missing) during the block; yields
    its open file descriptor. wait=False raises BlockingIOError at once if another process
    holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock
