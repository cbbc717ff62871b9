"""Run configs with several seeds, skipping finished runs, resuming interrupted ones and going
on past failed ones: python scripts/sweep.py --cfg NAME [NAME ...] --seeds 0,1,2 [--set KEY=VALUE ...].
Exit status 0 when every run finished; 1 when a run failed in training (e.g. its loss diverged);
2 when every failure was bad input (a config, data, checkpoint or path to fix), or the command itself was."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.run_folders.sweep import exit_status, parse_seeds, report, sweep  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--cfg", required=True, nargs="+", help="config names: configs/NAME_cfg.py")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_overrides()
    args = parser.parse_args()
    outcomes = sweep(args.cfg, parse_seeds(args.seeds), args.set)
    print(report(outcomes))
    return exit_status(outcomes)


if __name__ == "__main__":
    run(main)
