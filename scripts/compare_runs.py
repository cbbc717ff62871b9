"""Compare finished runs under an experiment directory.

Without --report: Markdown tables, one ranking per dataset (best final test accuracy first),
with lr and batch size columns. With --report DIR: DIR/report.md and PNG figures (curves per
epoch and per step with seeds as mean and band, final accuracy with its spread, mean +- std
table over seeds; see executors/reporting/report.py). A config trained again with the same seed counts
once in the report, by its run with the most completed epochs (of equal ones, the newest);
the report names the runs left out, and says so when the runs compared differ in length.

python scripts/compare_runs.py [--exp-dir runs] [--filter GLOB [GLOB ...]] [--dataset NAME]
                              [--report DIR [--baseline CONFIG]]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.paths import RUNS_DIR  # noqa: E402
from executors.reporting.compare import collect_summaries, comparison, filter_runs, select_dataset  # noqa: E402
from executors.reporting.report import write_report  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.errors import UserError  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--exp-dir", type=Path, default=Path(RUNS_DIR))
    parser.add_argument("--filter", metavar="GLOB", nargs="+",
                        help="only runs whose directory name matches one of these globs, e.g. 'mlp_lr*' 'mlp_bs*'")
    parser.add_argument("--dataset", help="only the runs of this data.name (e.g. KMNIST, OxfordIIITPet)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write DIR/report.md and its figures")
    parser.add_argument("--baseline", metavar="CONFIG", help="with --report: the gaps are to this config "
                        "(e.g. mlp_base, a run's exp_name without _seed<k>), not to the best one")
    args = parser.parse_args()
    rows = collect_summaries(args.exp_dir)
    if not rows:
        raise UserError(f"No finished runs (*/summary.json) under {args.exp_dir}: train something first.")
    rows = filter_runs(rows, args.filter) if args.filter else rows
    rows = select_dataset(rows, args.dataset) if args.dataset else rows
    if args.report is None:
        print(comparison(rows))
        return
    source = f"Finished runs under `{args.exp_dir}`" + (f" matching `{' '.join(args.filter)}`" if args.filter else "")
    print(f"Report: {write_report(rows, args.report, source, args.baseline)}")


if __name__ == "__main__":
    run(main)
