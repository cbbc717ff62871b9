"""Errors that a user can fix: the CLI prints their message and exits with status 2.

Raise one of these for bad input (a config key, a data file, a checkpoint); any other
exception is a bug or a training failure and keeps its traceback.
"""
import difflib


class UserError(Exception):
    """Bad usage or bad input. The message names the thing and says what to do."""


class ConfigError(UserError):
    """An unknown config key, a value of the wrong type, a config that does not exist."""


class DataError(UserError):
    """A dataset file that is missing, corrupt or cannot be downloaded or decoded."""


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or made for another model."""


def did_you_mean(name, choices, n=3) -> str:
    """' Did you mean: a, b?' for the choices closest to `name` (case-insensitive), else ''."""
    by_lower = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(by_lower[c] for c in close)}?" if close else ""
