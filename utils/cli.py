"""Shared behaviour of the command-line scripts: exit statuses and error messages.

Exit status 0: success; 1: training or evaluation failed (the target was not reached, a
TrainingError reported as one message, or an unexpected error with its traceback); 2: bad
usage, config, data or checkpoint, reported as one paragraph without a traceback;
130: interrupted.
"""
import argparse
import sys

from utils.errors import TrainingError, UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the common --set option; usage errors exit with status 2."""

    def add_overrides(self):
        self.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                          help="override config keys, e.g. --set train.lr=0.05 data.root=/data/kmnist")


def run(main) -> None:
    """Call `main()` and exit with its status: UserError -> 2, TrainingError -> 1 (no traceback)."""
    try:
        status = main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 2
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch is in last.pt; continue with --resume auto",
              file=sys.stderr)
        status = 130
    sys.exit(status or 0)
