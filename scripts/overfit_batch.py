"""Memorise one training batch: exit 0 only if the model reaches 100% accuracy on it.

python scripts/overfit_batch.py --cfg NAME [--steps N] [--set KEY=VALUE ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.launch import overfit_experiment  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402
from utils.config import load_config  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_config()
    parser.add_argument("--steps", type=int, help="most optimisation steps (default: train.overfit_batch_steps)")
    parser.add_overrides()
    args = parser.parse_args()
    result = overfit_experiment(load_config(args.cfg, args.set), args.steps)
    print(f"accuracy on the batch {result['accuracy']:.4f} after {result['steps']} steps "
          f"(loss {result['loss']:.4g})")
    return 0 if result["accuracy"] == 1.0 else 1


if __name__ == "__main__":
    run(main)
