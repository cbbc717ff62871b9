"""Errors the CLI reports as one message without a traceback.

UserError (exit status 2): bad input that the user can fix (a config key, a data file, a
checkpoint, a path that cannot be written). TrainingError (exit status 1): a run that
started but could not go on (the loss diverged). Interrupted (exit status 128 + signal
number): stopped by SIGINT or SIGTERM. Any other exception is a bug and keeps its traceback.
"""
import difflib
import errno


class UserError(Exception):
    """Bad usage or bad input. The message names the thing and says what to do."""


class ConfigError(UserError):
    """An unknown config key, a value of the wrong type, a config that does not exist."""


class UnsuitableLoader(ConfigError):
    """A data.loader path that cannot run this config: `problem` says why (auto's note quotes
    it), the message adds what to do: "<problem>; <remedy>."."""

    def __init__(self, problem: str, remedy: str = "use data.loader='workers'"):
        super().__init__(f"{problem}; {remedy}.")
        self.problem = problem


class DataError(UserError):
    """A dataset file that is missing, corrupt or cannot be downloaded or decoded."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or made for another model."""


class StorageError(UserError):
    """A path that cannot be read or written: missing, read-only, not a directory, no
    permission, a full disk. The message names the path and the operating system's reason."""


def os_reason(error: OSError) -> str:
    """The operating system's words for `error` ("no space left on device"), with its errno name."""
    name = errno.errorcode.get(error.errno)
    words = (error.strerror or str(error) or type(error).__name__).rstrip(".")
    words = words[0].lower() + words[1:] if words else words
    return f"{words} ({name})" if name else words


def storage_error(error: OSError, doing: str, path, advice: str = "") -> StorageError:
    """StorageError 'cannot <doing> <path>: <reason>. <advice>' (advice on a full disk by default)."""
    if not advice and error.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "Free some space, or set exp_dir to a disk with room."
    return StorageError(f"cannot {doing} {path}: {os_reason(error)}." + (f" {advice}" if advice else ""))


class TrainingError(Exception):
    """Training had to stop (e.g. the loss stayed NaN/inf). The message says at which step,
    what to try, and which checkpoints still hold good weights."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal: SIGINT (Ctrl-C) or SIGTERM (what schedulers and hosted
    notebooks send). A KeyboardInterrupt, so everything that ends a run on Ctrl-C (the tracker
    marks it KILLED) does the same on SIGTERM; the message says what was saved."""

    def __init__(self, signal_number: int, message: str = ""):
        super().__init__(message)
        self.signal_number, self.message = signal_number, message


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (torch's can run to pages), without its final full
    stop; the exception's class name when the message is empty."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(error).__name__


def did_you_mean(name, choices, n=3) -> str:
    """' Did you mean: a, b?' for the choices closest to `name` (case-insensitive), else ''."""
    by_lower = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(by_lower[c] for c in close)}?" if close else ""
