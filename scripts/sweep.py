"""Run configs with several seeds, skipping finished runs, resuming interrupted ones and going
on past failed ones: python scripts/sweep.py --cfg NAME [NAME ...] --seeds 0,1,2 [--kind real|quick|smoke]
[--project] [--set KEY=VALUE ...].
With --project, train nothing: measure a few training steps and an evaluation of each run still
to train, and print how long the sweep will take here (under torchrun, on every GPU it uses).
Exit status 0 when every run finished; 1 when a run failed in training (e.g. its loss diverged);
2 when every failure was bad input (a config, data, checkpoint or path to fix), or the command itself was."""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.benchmark.projection import gpu_memory, project_plan  # noqa: E402
from executors.distributed import from_environment  # noqa: E402
from executors.run_folders.sweep import exit_status, parse_seeds, plan, report, sweep  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--cfg", required=True, nargs="+", help="config names: configs/NAME_cfg.py")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--kind", choices=("real", "quick", "smoke"), default="real",
                        help="quick: the data at a small size for 2 epochs; smoke: a tiny model on the CPU; both in "
                             "their own folder next to exp_dir (default real)")
    parser.add_argument("--project", action="store_true",
                        help="print the projected time of the runs left; train nothing")
    parser.add_overrides()
    args = parser.parse_args()
    processes = from_environment()
    if not processes.is_main:  # under torchrun rank 0 alone reports
        sys.stdout = open(os.devnull, "w")
    if args.project:
        print(project_plan(plan(args.cfg, parse_seeds(args.seeds), args.set, args.kind), processes))
        return 0
    if torch.cuda.is_available():  # this process's GPU: another process's would hold memory there
        print(f"GPU memory for training: {gpu_memory([processes.local_rank])}", flush=True)
    outcomes = sweep(args.cfg, parse_seeds(args.seeds), args.set, args.kind)
    print(report(outcomes))
    return exit_status(outcomes)


if __name__ == "__main__":
    run(main)
