"""Shared behaviour of the command-line scripts: exit statuses and error messages.

Exit status 0: success; 1: training or evaluation failed (the target was not reached, a
TrainingError reported as one message, or an unexpected error with its traceback); 2: bad
usage, config, data, checkpoint or storage (a path that cannot be read or written, a
full disk), reported as one paragraph without a traceback;
130 (SIGINT, Ctrl-C) or 143 (SIGTERM): interrupted, with a note on what was saved.
"""
import argparse
import re
import signal
import sys

from utils import interrupts
from utils.config import available_configs
from utils.errors import TrainingError, UserError, os_reason
from utils.urls import redact_url


EXIT_STATUSES = """exit status: 0 success; 1 training failed or the target was not reached;
2 bad usage, config, data, checkpoint or path; 130/143 interrupted (SIGINT/SIGTERM)"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the common --cfg and --set options and the exit statuses in --help;
    usage errors exit with status 2."""

    def __init__(self, **kwargs):
        kwargs.setdefault("epilog", EXIT_STATUSES)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def add_config(self, required=True):
        self.add_argument("--cfg", required=required, metavar="NAME",
                          help=f"experiment config: configs/NAME_cfg.py, one of {', '.join(available_configs())}; "
                               f"or the path of a .py file that defines cfg")

    def add_overrides(self):
        self.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                          help="override config keys (dotted, e.g. train.lr=0.05 data.root=/data/kmnist "
                               "data.md5=None); values are Python literals, else strings; an unknown key or a "
                               "value of the wrong type or range stops with exit status 2 before any work")


_WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_OS_ERROR_TEXT = re.compile(r"\[Errno (\d+)\] ([^:]+)(?:: '(.*)')?$", re.DOTALL)


def original_message(error: BaseException) -> str:
    """The message of `error`; for an exception a DataLoader worker raised (which torch raises
    again in the main process with the worker's whole traceback as its message), the worker's
    own message."""
    text = str(error)
    if not _WORKER_ERROR.match(text):
        return text
    name = re.escape(type(error).__name__)
    last = list(re.finditer(rf"^(?:[\w.]+\.)?{name}: ", text, flags=re.MULTILINE))
    return text[last[-1].end():].strip() if last else text.splitlines()[-1]


def os_error_message(error: OSError) -> str:
    """'cannot use PATH: REASON.' for an OSError, also one raised in a DataLoader worker."""
    text = original_message(error)
    parsed = _OS_ERROR_TEXT.match(text) if error.errno is None else None
    if parsed:
        error = OSError(int(parsed[1]), parsed[2], parsed[3])
    elif error.errno is None:
        return f"{text}."
    return f"cannot use {error.filename or 'a file'}: {os_reason(error)}."


def run(main) -> None:
    """Call `main()` and exit with its status: UserError -> 2, TrainingError -> 1 (no traceback;
    an error raised in a DataLoader worker is shown with the worker's message alone; passwords
    in URLs hidden, utils/urls.py),
    SIGINT/SIGTERM -> 130/143 with what was saved. Both raise Interrupted, a KeyboardInterrupt
    (the tracker run ends KILLED), never in the middle of a file write (utils/interrupts.py)."""
    interrupts.install()
    try:
        status = main()
    except UserError as error:
        print(f"error: {redact_url(original_message(error))}", file=sys.stderr)
        status = 2
    except OSError as error:  # a path the library did not name itself: data files, images, ...
        print(f"error: {redact_url(os_error_message(error))}", file=sys.stderr)
        status = 2
    except TrainingError as error:
        print(f"error: {redact_url(original_message(error))}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt as error:
        number = getattr(error, "signal_number", signal.SIGINT)
        note = getattr(error, "message", "") or "nothing was saved by this command"
        print(f"interrupted by {signal.Signals(number).name}: {note}", file=sys.stderr)
        status = 128 + number
    sys.exit(status or 0)
