"""Print Markdown tables comparing every finished run under an experiment directory: one
ranking per dataset (best final test accuracy first), with lr and batch size columns.

python scripts/compare_runs.py [--exp-dir runs] [--dataset NAME]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.paths import RUNS_DIR  # noqa: E402
from executors.compare import collect_summaries, comparison, select_dataset  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.errors import UserError  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--exp-dir", type=Path, default=Path(RUNS_DIR))
    parser.add_argument("--dataset", help="only the runs of this data.name (e.g. KMNIST, OxfordIIITPet)")
    args = parser.parse_args()
    rows = collect_summaries(args.exp_dir)
    if not rows:
        raise UserError(f"No finished runs (*/summary.json) under {args.exp_dir}: train something first.")
    print(comparison(select_dataset(rows, args.dataset) if args.dataset else rows))


if __name__ == "__main__":
    run(main)
