"""SIGINT and SIGTERM stop a command, but never in the middle of writing a file.

scripts/ install `stop_on_signal` for both signals (utils.cli.run). It raises Interrupted
at once, except inside `signals_deferred()` (utils/atomic_files.py wraps every file
write in it): there the signal is remembered and raised when the block ends, so a
checkpoint being written is completed and renamed into place first. Raising inside a
writer would otherwise leave a library's own state broken (torch.save turns the interrupt
into a RuntimeError about its zip file).
"""
import signal
from contextlib import contextmanager

from utils.errors import Interrupted

_state = {"depth": 0, "pending": None}  # nesting of signals_deferred blocks; signal number awaiting them


def stop_on_signal(signal_number, frame) -> None:
    """Signal handler: raise Interrupted(signal_number) now, or at the end of the current
    signals_deferred() block."""
    if _state["depth"]:
        _state["pending"] = signal_number
        return
    raise Interrupted(signal_number)


def install() -> None:
    """Make SIGINT and SIGTERM raise Interrupted through stop_on_signal (main thread only)."""
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, stop_on_signal)


@contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM (as installed by install()) until the block ends; a signal that came
    meanwhile is raised then, after the block's own work is done."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        pending = _state["pending"]
        if not _state["depth"] and pending is not None:
            _state["pending"] = None
            raise Interrupted(pending)
