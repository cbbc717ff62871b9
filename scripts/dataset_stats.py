"""Print dataset statistics (show_statistic) for both splits.

python scripts/dataset_stats.py --cfg NAME [--set KEY=VALUE ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.loading.loaders import dataset_class  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.config import load_config  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--cfg", required=True, help="config name: configs/NAME_cfg.py (or a .py path)")
    parser.add_overrides()
    args = parser.parse_args()
    cfg = load_config(args.cfg, args.set)
    for split in ("train", "test"):
        dataset_class(cfg.data.name)(cfg.data, split).show_statistic()


if __name__ == "__main__":
    run(main)
