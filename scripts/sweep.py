"""Run configs with several seeds, skipping finished runs and resuming interrupted ones:
python scripts/sweep.py --cfg NAME [NAME ...] --seeds 0,1,2 [--set KEY=VALUE ...]."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.sweep import parse_seeds, sweep  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--cfg", required=True, nargs="+", help="config names: configs/NAME_cfg.py")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_overrides()
    args = parser.parse_args()
    done = sweep(args.cfg, parse_seeds(args.seeds), args.set)
    print(f"{len(done)} runs: {sum(state != 'finished' for _, state in done)} trained now, "
          f"{sum(state == 'finished' for _, state in done)} finished earlier")


if __name__ == "__main__":
    run(main)
