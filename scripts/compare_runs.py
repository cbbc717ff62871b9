"""Print a Markdown table comparing every finished run under an experiment directory.

python scripts/compare_runs.py [--exp-dir runs]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.paths import RUNS_DIR  # noqa: E402
from executors.compare import collect_summaries, markdown_table  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.errors import UserError  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--exp-dir", type=Path, default=Path(RUNS_DIR))
    args = parser.parse_args()
    rows = collect_summaries(args.exp_dir)
    if not rows:
        raise UserError(f"No finished runs (*/summary.json) under {args.exp_dir}: train something first.")
    print(markdown_table(rows))


if __name__ == "__main__":
    run(main)
