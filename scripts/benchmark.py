"""Measure training speed against a per-item PIL DataLoader baseline, in one run:
python scripts/benchmark.py [--quick] [--device auto|cpu|cuda] [--out FILE.json]."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.benchmark.runner import run_benchmark  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer images per workload (under 5 minutes on 2 vCPUs)")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda or cuda:N")
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("--only", nargs="+", metavar="WORKLOAD", help="run only these workloads (names as printed)")
    args = parser.parse_args()
    run_benchmark(args.quick, args.device, args.out, args.only)


if __name__ == "__main__":
    run(main)
