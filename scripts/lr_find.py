"""LR range test: train a copy of the config's model for a few steps with an lr rising
geometrically from --start-lr to --end-lr, plot the loss against it and suggest an lr.

python scripts/lr_find.py --cfg NAME [--steps N] [--start-lr LR] [--end-lr LR] [--method minimum|steep]
                          [--out DIR] [--set KEY=VALUE ...]

Writes lr_find.png and lr_find.json into --out (default <exp_dir>/lr_find/<exp_name>/,
replacing those of an earlier test) and prints the suggestion with the --set that trains at
it. How the test runs and what the two methods mean: executors/tools/lr_finder.py.
"""
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.reporting.lr_find_report import summary_lines, write_lr_find  # noqa: E402
from executors.tools.lr_finder import END_LR, METHODS, START_LR, STEPS, find_lr  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.config import load_config  # noqa: E402


def positive(text):
    """A finite number above 0 (argparse type)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_config()
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps, one lr each (default {STEPS})")
    parser.add_argument("--start-lr", type=positive, default=START_LR, help=f"first lr (default {START_LR:g})")
    parser.add_argument("--end-lr", type=positive, default=END_LR, help=f"last lr (default {END_LR:g})")
    parser.add_argument("--method", choices=METHODS, default=METHODS[0],
                        help="which suggestion to print and mark (both are in the JSON): minimum = a tenth of "
                             "the lr of the smoothed loss's minimum (default), steep = its steepest fall")
    parser.add_argument("--out", metavar="DIR", help="folder for lr_find.png and lr_find.json")
    parser.add_overrides()
    args = parser.parse_args()
    if args.steps < 2 or args.start_lr >= args.end_lr:
        parser.error("--steps must be at least 2 and --start-lr below --end-lr")
    cfg = load_config(args.cfg, args.set)
    record = {"config": args.cfg, **find_lr(cfg, args.steps, args.start_lr, args.end_lr, args.method)}
    out_dir = Path(args.out) if args.out else Path(cfg.exp_dir) / "lr_find" / cfg.exp_name
    for path in write_lr_find(record, out_dir):
        print(f"wrote {path}")
    print("\n".join(summary_lines(record)))


if __name__ == "__main__":
    run(main)
