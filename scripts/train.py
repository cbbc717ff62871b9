"""Train a model: python scripts/train.py --cfg NAME [--set KEY=VALUE ...] [--resume auto|PATH],
or continue a run with the config saved in its checkpoint: python scripts/train.py --resume PATH [--set ...].
On several GPUs (or CPU processes): torchrun --nproc_per_node N scripts/train.py ... (same arguments)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.checkpoints.resume import saved_config  # noqa: E402
from executors.launch import train_experiment  # noqa: E402
from executors.run_folders.run_dir import resume_checkpoint  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.config import load_config  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_config(required=False)
    parser.add_argument("--resume", metavar="auto|PATH",
                        help="continue a run in its own directory: 'auto' for this experiment's newest run "
                             "(<exp_dir>/<exp_name>[_N]/last.pt), or a checkpoint file or run directory; "
                             "without --cfg the config saved in the checkpoint is used; --set train.epochs=N "
                             "makes it longer (what else may change: executors/checkpoints/resume.py)")
    parser.add_overrides()
    args = parser.parse_args()
    if args.cfg is None and args.resume in (None, "auto"):
        parser.error("--cfg NAME is needed, except with --resume PATH (which can use the config saved in the run)")
    if args.cfg is None:
        cfg = saved_config(resume_checkpoint(None, None, args.resume), args.set)
    else:
        cfg = load_config(args.cfg, args.set)
    summary = train_experiment(cfg, resume=args.resume)
    if summary is not None:  # None: a torchrun process other than rank 0
        print(f"best test accuracy {summary['best_test_accuracy']:.4f} at epoch {summary['best_epoch']}; "
              f"final {summary['final_test_accuracy']:.4f}")


if __name__ == "__main__":
    run(main)
