"""Classify images with a trained checkpoint: prints the top-k classes with probabilities.

python scripts/predict.py --checkpoint PATH [--top-k K] IMAGE [IMAGE ...]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from executors.launch import predict_images  # noqa: E402
from utils.cli import ArgumentParser, run  # noqa: E402


def main():
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a best.pt or last.pt")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()
    for path, top in zip(args.images, predict_images(args.checkpoint, args.images, args.top_k)):
        print(f"{path}: " + ", ".join(f"{name} {probability:.3f}" for name, probability in top))


if __name__ == "__main__":
    run(main)
