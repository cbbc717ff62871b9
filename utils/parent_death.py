"""Child processes that end when their parent dies, also when it is killed with SIGKILL.

`die_with_parent(parent_pid)` is a worker initializer (e.g. DataLoader's worker_init_fn
through functools.partial, with the parent's os.getpid()), run first thing in the child:

* Linux: prctl(PR_SET_PDEATHSIG, SIGKILL) through ctypes. The kernel kills the child the
  moment the parent thread that started it ends, whatever the child is doing: decoding an
  image, or blocked writing a result into a pipe that nobody reads any more. The latter is
  why torch's own watchdog is not enough: it notices a dead parent only between items, and
  the exiting worker then waits forever for its queue's feeder thread (seen: 2 workers of
  430 MB each left running after a kill -9 of the build).
* Elsewhere, or when prctl fails: a daemon thread compares os.getppid() with `parent_pid`
  every POLL_SECONDS and ends the process with os._exit (which waits for no thread) once it
  changed: a POSIX orphan is re-parented to init or a subreaper. Windows keeps reporting
  the dead parent's pid, so there it adds nothing.

Either way the parent may have died before the child got here; that is checked after arming.
"""
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_SECONDS = 0.5


def arm_death_signal() -> bool:
    """Ask the Linux kernel to SIGKILL this process when its parent ends; False where that is impossible."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _exit_when_orphaned(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    os._exit(1)


def die_with_parent(parent_pid: int, *_ignored) -> None:
    """Make this process end when the process `parent_pid` (its parent) dies; extra
    arguments (a DataLoader passes the worker id) are ignored."""
    if not arm_death_signal():
        threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), name="exit-with-parent", daemon=True).start()
    if os.getppid() != parent_pid:  # died before the guard was armed
        os._exit(1)
